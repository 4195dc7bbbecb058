//! Kind `synth`: a synthetic click log with structure a recall model can learn.
//!
//! Items belong to topics and have Zipf popularity and publish times; users have a
//! few interest topics (tied to their age and gender), very uneven activity, and
//! click in sessions, often continuing with an item close to the previous one, while
//! their interests drift. Popularity alone therefore explains only part of the clicks.

use std::sync::Arc;

use datafusion::arrow::array::Int64Array;
use serde::{Deserialize, Serialize};

use crate::rng::{Alias, Rng};
use crate::schema::clicks::{CLICKS_OUTPUT, USERS_OUTPUT, write_clicks, write_users};
use dagrun_kind::{KindSpec, OutputSpec, Params, Report, StageCtx, StageError, params};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SynthParams {
    pub users: u32,
    pub items: u32,
    /// Clicks in total (approximately: every user gets at least one).
    pub clicks: u64,
    pub topics: u32,
    pub seed: u64,
}

impl Default for SynthParams {
    fn default() -> Self {
        SynthParams { users: 2000, items: 1000, clicks: 100_000, topics: 24, seed: 0 }
    }
}

const CLICKS: OutputSpec = CLICKS_OUTPUT;
const USERS: OutputSpec = USERS_OUTPUT;

pub const SPEC: KindSpec = KindSpec {
    name: "synth",
    summary: "generates a click log with user interests, item topics, Zipf popularity and sessions",
    inputs: &[],
    optional_inputs: &[],
    outputs: &[CLICKS, USERS],
    fingerprint: crate::fingerprints::SYNTH,
    params: params::check::<SynthParams>,
    needs: dagrun_kind::needs_nothing,
    run,
};

/// 2024-01-01T00:00:00Z: the log spans the 180 days after it.
const START: i64 = 1_704_067_200;
const SPAN: i64 = 180 * 86_400;
const CITIES: usize = 40;
const AGES: [&str; 7] = ["under18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+"];

struct Catalog {
    /// Items of each topic, most popular first, with alias tables over their popularity.
    by_topic: Vec<Vec<u32>>,
    alias: Vec<Alias>,
    publish: Vec<i64>,
    topic_of: Vec<u32>,
    /// Position of each item in its topic's list.
    rank: Vec<u32>,
}

/// The most users or items synth makes.
const MAX_ENTITIES: u64 = 100_000_000;

impl Params for SynthParams {
    fn validate(&self) -> Result<(), params::ParamError> {
        params::positive_int("users", self.users.into())?;
        params::positive_int("items", self.items.into())?;
        // Per-user and per-item tables are made whole before any click: a mistyped
        // count is an error here, not an out-of-memory abort.
        params::at_most("users", self.users.into(), MAX_ENTITIES)?;
        params::at_most("items", self.items.into(), MAX_ENTITIES)?;
        params::positive_int("topics", self.topics.into())?;
        // Each topic has a popularity table of its own; more topics than items would
        // be mostly empty ones.
        let (topics, items) = (self.topics, self.items);
        params::ensure(topics <= items, "topics", || format!("must be at most items ({items}), not {topics}"))
    }
}

fn run(ctx: &StageCtx) -> Result<Report, StageError> {
    let p: SynthParams = params::typed(ctx.params)?;
    let mut rng = Rng::new(p.seed);
    let catalog = make_catalog(&p, &mut rng);

    // Users: features, interests and activity (log-normal: a long tail of heavy users).
    let topics = p.topics as usize;
    let (mut cities, mut ages, mut genders) = (Vec::new(), Vec::new(), Vec::new());
    let city_alias = Alias::new(&(1..=CITIES).map(|r| 1.0 / r as f64).collect::<Vec<_>>());
    let mut interests: Vec<Vec<u32>> = Vec::with_capacity(p.users as usize);
    let mut activity = Vec::with_capacity(p.users as usize);
    for _ in 0..p.users {
        let age = rng.below(AGES.len() as u64) as usize;
        let gender = rng.below(2) as usize;
        cities.push(format!("city{}", city_alias.sample(&mut rng)));
        ages.push(AGES[age].to_string());
        genders.push(if gender == 0 { "F" } else { "M" }.to_string());
        // The first interest follows the demographic group, so features carry signal.
        let group_topic = ((age * 2 + gender) * 7 % topics) as u32;
        let k = 1 + rng.below(3) as usize;
        let mut mine = vec![group_topic];
        while mine.len() < k {
            mine.push(rng.below(topics as u64) as u32);
        }
        interests.push(mine);
        activity.push((rng.normal() * 1.3).exp());
    }
    let total_activity: f64 = activity.iter().sum();

    let mut events: Vec<(i64, u32, u32)> = Vec::new();
    let wanted = (p.clicks as usize).saturating_add(p.users as usize);
    events.try_reserve_exact(wanted).map_err(|_| {
        StageError::Failed(format!("not enough memory for {wanted} clicks (16 bytes each); lower `clicks`"))
    })?;
    ctx.progress.set_length(p.users as u64);
    for u in 0..p.users as usize {
        let n = ((p.clicks as f64 * activity[u] / total_activity).round() as u64).max(1);
        let mut r = Rng::fork(p.seed, u as u64 + 1);
        user_clicks(&catalog, &mut interests[u], n, topics, &mut r, |ts, item| events.push((ts, u as u32, item)));
        if u % 1024 == 0 {
            ctx.progress.set_position(u as u64);
        }
    }
    // A log is written in time order; equal timestamps keep generation order.
    events.sort_by_key(|&(ts, _, _)| ts);
    // Ids are the user and item numbers: integers, as most logs at scale have them.
    let users = Int64Array::from_iter_values(events.iter().map(|e| e.1 as i64));
    let items = Int64Array::from_iter_values(events.iter().map(|e| e.2 as i64));
    let timestamps = events.iter().map(|e| e.0).collect();
    let mut report = Report::default();
    report
        .rows
        .insert("clicks".into(), write_clicks(&ctx.output(&CLICKS), Arc::new(users), Arc::new(items), timestamps)?);
    let ids = Arc::new(Int64Array::from_iter_values(0..p.users as i64));
    let features = vec![("city".into(), cities), ("age".into(), ages), ("gender".into(), genders)];
    report.rows.insert("users".into(), write_users(&ctx.output(&USERS), ids, features)?);
    report.metrics.insert("mean_clicks_per_user".into(), report.rows["clicks"] as f64 / p.users as f64);
    Ok(report)
}

fn make_catalog(p: &SynthParams, rng: &mut Rng) -> Catalog {
    let topics = p.topics as usize;
    let n = p.items as usize;
    let mut by_topic: Vec<Vec<u32>> = vec![Vec::new(); topics];
    let mut topic_of = Vec::with_capacity(n);
    let mut publish = Vec::with_capacity(n);
    for i in 0..n {
        let t = rng.below(topics as u64) as u32;
        topic_of.push(t);
        by_topic[t as usize].push(i as u32);
        // Most items exist before the log starts; a fifth are published during it.
        let ts = if rng.f64() < 0.8 {
            START - rng.below(365 * 86_400) as i64
        } else {
            START + rng.below(SPAN as u64) as i64
        };
        publish.push(ts);
    }
    // Zipf popularity within each topic, over a random order of its items.
    let mut alias = Vec::with_capacity(topics);
    for items in &mut by_topic {
        for i in (1..items.len()).rev() {
            items.swap(i, rng.below(i as u64 + 1) as usize);
        }
        if items.is_empty() {
            items.push(rng.below(n as u64) as u32);
        }
        alias.push(Alias::new(&(1..=items.len()).map(|r| 1.0 / (r as f64).powf(1.05)).collect::<Vec<_>>()));
    }
    let mut rank = vec![0u32; n];
    for items in &by_topic {
        for (pos, &i) in items.iter().enumerate() {
            rank[i as usize] = pos as u32;
        }
    }
    Catalog { by_topic, alias, publish, topic_of, rank }
}

/// Generates one user's `n` clicks in sessions; `emit(timestamp, item)`.
fn user_clicks(c: &Catalog, interests: &mut [u32], n: u64, topics: usize, r: &mut Rng, mut emit: impl FnMut(i64, u32)) {
    let mut ts = START + r.below((SPAN / 2) as u64) as i64;
    let mut prev: Option<u32> = None;
    let mut left = n;
    while left > 0 {
        let session = (1 + r.below(8)).min(left);
        for _ in 0..session {
            let item = next_item(c, interests, prev, topics, ts, r);
            emit(ts, item);
            prev = Some(item);
            ts += 30 + r.below(600) as i64;
        }
        left -= session;
        // Days between sessions; sometimes one interest drifts to a neighbouring topic.
        ts += 3_600 + r.below(4 * 86_400) as i64;
        if r.f64() < 0.15 {
            let k = r.below(interests.len() as u64) as usize;
            interests[k] = (interests[k] + 1) % topics as u32;
        }
        prev = None;
    }
}

fn next_item(c: &Catalog, interests: &[u32], prev: Option<u32>, topics: usize, ts: i64, r: &mut Rng) -> u32 {
    // Continue near the previous item (same topic, neighbouring popularity rank).
    if let Some(p) = prev
        && r.f64() < 0.35
    {
        let items = &c.by_topic[c.topic_of[p as usize] as usize];
        let pos = c.rank[p as usize] as usize;
        let step = r.below(5) as usize + 1;
        return items[(pos + step) % items.len()];
    }
    let topic = if r.f64() < 0.1 {
        r.below(topics as u64) as usize
    } else {
        interests[r.below(interests.len() as u64) as usize] as usize
    };
    // Prefer items already published; give up after a few draws.
    let mut item = c.by_topic[topic][c.alias[topic].sample(r)];
    for _ in 0..3 {
        if c.publish[item as usize] <= ts {
            break;
        }
        item = c.by_topic[topic][c.alias[topic].sample(r)];
    }
    item
}
