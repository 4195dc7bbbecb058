//! The tables kinds hand each other: their column names, and the readers that check
//! what the kinds below rely on. A kind names another kind's table only through
//! here, never through that kind's module.
//!
//! | module | tables | written by | read by |
//! |---|---|---|---|
//! | `clicks` | `clicks`, `users` (raw ids) | synth, ingest | split_last_click, encode |
//! | `encoded` | `train`, `test`, `users`, `vocab` (indices) | encode | sample, youtube_dnn, export, evaluate, popularity |
//! | `examples` | `train`, `test` (histories) | sample | youtube_dnn, export |
//! | `vectors` | `users`, `items` (normalised vectors) | export, ensemble | ensemble, evaluate |

pub mod clicks;
pub mod encoded;
pub mod examples;
pub mod vectors;
