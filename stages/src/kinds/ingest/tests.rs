//! Tests of kind `ingest`.

use super::*;

/// An id column as text, whatever its type.
fn text(a: &ArrayRef) -> Vec<String> {
    let a = cast(a, &DataType::Utf8).unwrap();
    let a = a.as_any().downcast_ref::<StringArray>().unwrap();
    (0..a.len()).map(|i| a.value(i).to_string()).collect()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn recbole_layout_with_user_features() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "x.inter",
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t10\t5\t100\n2\t11\t3\t99.0\n",
    );
    write(d.path(), "x.user", "user_id:token\tage:token\tzip_code:token\n1\t20\tA1\n2\t30\t02139\n");
    let got = read(d.path(), &IngestParams::default()).unwrap();
    assert_eq!(text(&got.users), ["1", "2"]);
    assert_eq!(got.timestamps, [100, 99]);
    assert_eq!(got.features[1].0, "zip_code");
    assert_eq!(got.features[1].1, ["A1", "02139"], "zip codes stay strings");
}

#[test]
fn grouplens_100k_layout() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n");
    write(d.path(), "u.user", "196|24|M|technician|85711\n");
    let got = read(d.path(), &IngestParams::default()).unwrap();
    assert_eq!(text(&got.items), ["242", "302"]);
    assert_eq!(got.features.len(), 4);
    assert_eq!(got.features[2].1, ["technician"]);
}

#[test]
fn movielens_1m_layout() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "ratings.dat", "1::1193::5::978300760\n");
    write(d.path(), "users.dat", "1::F::1::10::48067\n");
    let got = read(d.path(), &IngestParams::default()).unwrap();
    assert_eq!(got.timestamps, [978300760]);
    assert_eq!(got.features[0], ("gender".to_string(), vec!["F".to_string()]));
}

/// Params for a log whose columns are `uid`, `iid`, `ts` and the user feature `city`.
fn uid_iid_ts_city() -> IngestParams {
    IngestParams {
        user: "uid".into(),
        item: "iid".into(),
        timestamp: "ts".into(),
        user_features: vec!["city".into()],
        ..Default::default()
    }
}

/// Regression: fields were split on every separator and stripped of quotes, so a
/// quoted field holding the separator was cut in two and the rest of the line shifted.
#[test]
fn quoted_separators_doubled_quotes_and_crlf_keep_every_field_whole() {
    let d = tempfile::tempdir().unwrap();
    let body = "uid,iid,ts,city\r\n\"a,1\",x,5,\"paris, \"\"la ville\"\"\"\r\nb,\"y\ny\",6,rome\r\n";
    let f = write(d.path(), "log.csv", body);
    let p = uid_iid_ts_city();
    let got = read(&f, &p).unwrap();
    assert_eq!(text(&got.users), ["a,1", "b"]);
    assert_eq!(text(&got.items), ["x", "y\ny"], "a quoted line break stays in its field");
    assert_eq!(got.timestamps, [5, 6]);
    assert_eq!(got.features[0].1, ["paris, \"la ville\"", "rome"]);
}

#[test]
fn an_unclosed_quote_or_a_bad_number_names_the_line() {
    let d = tempfile::tempdir().unwrap();
    let p = IngestParams { user: "u".into(), item: "i".into(), timestamp: "t".into(), ..Default::default() };
    let f = write(d.path(), "bad.csv", "u,i,t\na,x,1\nb,y,soon\n");
    let e = read(&f, &p).unwrap_err().to_string();
    assert!(e.contains("bad.csv:3:5: timestamp `soon` is not a number"), "{e}");
}

#[test]
fn csv_with_mapping() {
    let d = tempfile::tempdir().unwrap();
    let f = write(d.path(), "log.csv", "uid,iid,ts,city\na,x,5,paris\nb,y,6,rome\na,z,7,oslo\n");
    let p = uid_iid_ts_city();
    let got = read(&f, &p).unwrap();
    assert_eq!(text(&got.items), ["x", "y", "z"]);
    assert_eq!(text(&got.user_ids), ["a", "b"]);
    assert_eq!(got.features[0].1, ["paris", "rome"], "first value per user");
}

/// Regression: integer ids of a Parquet log were turned into text, which made split
/// and encode on real data several times slower than on synth's integers.
#[test]
fn integer_ids_of_a_parquet_log_stay_integers() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("log.parquet");
    table::write(
        &f,
        vec![
            ("user_id", Arc::new(Int64Array::from(vec![7, 3, 7])) as ArrayRef),
            ("item_id", Arc::new(datafusion::arrow::array::Int32Array::from(vec![10, 11, 12]))),
            ("timestamp", Arc::new(Int64Array::from(vec![1, 2, 3]))),
            ("city", Arc::new(StringArray::from(vec!["a", "b", "c"]))),
        ],
    )
    .unwrap();
    let p = IngestParams { user_features: vec!["city".into()], ..Default::default() };
    let got = read(&f, &p).unwrap();
    assert_eq!(got.users.data_type(), &DataType::Int64);
    assert_eq!(got.items.data_type(), &DataType::Int64, "int32 ids widen to int64");
    assert_eq!(text(&got.user_ids), ["7", "3"], "users in the order they first appear");
    assert_eq!(got.features[0].1, ["a", "b"], "their first value");
    assert_eq!(got.timestamps, [1, 2, 3]);
}

/// Regression, three of a Parquet log's columns that ingest took wrongly: uint64 ids
/// past i64::MAX (hashed ids) were "null", a timestamp column's nanoseconds were
/// taken as seconds, and a timestamp that is not a number was "null".
#[test]
fn parquet_hashed_ids_time_columns_and_bad_timestamps() {
    use datafusion::arrow::array::{TimestampMillisecondArray, UInt64Array};
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("log.parquet");
    let (big, small) = (u64::MAX - 1, 5u64);
    table::write(
        &f,
        vec![
            ("user_id", Arc::new(UInt64Array::from(vec![big, small])) as ArrayRef),
            ("item_id", Arc::new(UInt64Array::from(vec![1, 2]))),
            ("timestamp", Arc::new(TimestampMillisecondArray::from(vec![1_500, 62_000]).with_timezone("+02:00"))),
        ],
    )
    .unwrap();
    let got = read(&f, &IngestParams::default()).unwrap();
    assert_eq!(text(&got.user_ids), [big.to_string(), "5".into()], "text, every digit kept");
    assert_eq!(got.items.data_type(), &DataType::Int64, "uint64 ids that fit stay integers");
    assert_eq!(got.timestamps, [1, 62], "milliseconds since 1970 as seconds, whatever the zone");
    let f = d.path().join("text_times.parquet");
    let ids: ArrayRef = Arc::new(Int64Array::from(vec![1, 2]));
    let times: ArrayRef = Arc::new(StringArray::from(vec!["7", "soon"]));
    table::write(&f, vec![("user_id", ids.clone()), ("item_id", ids), ("timestamp", times)]).unwrap();
    let e = read(&f, &IngestParams::default()).unwrap_err().to_string();
    assert!(
        e.contains("text_times.parquet: column `timestamp`, row 1: `soon` is not a whole number of seconds"),
        "{e}"
    );
}

#[test]
fn integer_ids_of_a_csv_become_integers_and_others_stay_text() {
    let d = tempfile::tempdir().unwrap();
    let p = IngestParams::default();
    let f = write(d.path(), "ints.csv", "user_id,item_id,timestamp\n12,5,1\n-3,6,2\n12,7,3\n");
    let got = read(&f, &p).unwrap();
    assert_eq!(got.users.data_type(), &DataType::Int64);
    assert_eq!(got.user_ids.data_type(), &DataType::Int64, "the users table matches the clicks");
    assert_eq!(text(&got.user_ids), ["12", "-3"]);
    let f = write(d.path(), "mixed.csv", "user_id,item_id,timestamp\n007,5,1\n7,x,2\n");
    let got = read(&f, &p).unwrap();
    assert_eq!(got.users.data_type(), &DataType::Utf8, "`007` and `7` are two users");
    assert_eq!(text(&got.users), ["007", "7"]);
    assert_eq!(got.items.data_type(), &DataType::Utf8);
}

#[test]
fn bad_inputs_name_file_line_and_column() {
    let d = tempfile::tempdir().unwrap();
    let p = IngestParams::default();
    let f = write(d.path(), "a.csv", "user_id,item_id,timestamp\nu,i,12\nu,i,noon\n");
    let e = read(&f, &p).unwrap_err().to_string();
    assert!(e.ends_with("a.csv:3:5: timestamp `noon` is not a number (seconds since 1970)"), "{e}");
    let f = write(d.path(), "b.csv", "user_id,item\nu,i\n");
    let e = read(&f, &p).unwrap_err().to_string();
    assert!(e.contains("b.csv:1:1: no column `item_id` (columns: user_id, item); set param `item` to the column's name in this file"), "{e}");
    let f = write(d.path(), "c.csv", "");
    assert!(read(&f, &p).unwrap_err().to_string().contains("c.csv: the file is empty"));
    let f = write(d.path(), "d.csv", "user_id,item_id,user_id,timestamp\n");
    let e = read(&f, &p).unwrap_err().to_string();
    assert!(e.contains("d.csv:1:17: column `user_id` appears twice in the header"), "{e}");
    let f = write(d.path(), "e.csv", "user_id,item_id,timestamp\nu,i\n");
    let e = read(&f, &p).unwrap_err().to_string();
    assert!(e.contains("e.csv:2:4: missing field 3 (timestamp)"), "{e}");
    assert!(matches!(read(&f, &p).unwrap_err(), StageError::BadInput(_)));
}

/// (item, genre) pairs of what ingest read.
fn pairs(genres: &ItemGenres) -> Vec<(&str, &str)> {
    genres.items.iter().map(String::as_str).zip(genres.genres.iter().map(String::as_str)).collect()
}

#[test]
fn genres_of_a_recbole_item_file() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "x.inter", "user_id:token\titem_id:token\ttimestamp:float\n1\t10\t100\n");
    let item = "item_id:token\tmovie_title:token_seq\tclass:token_seq\n10\tToy Story\tAnimation Children's\n11\tX\t\n";
    write(d.path(), "x.item", item);
    let got = read(d.path(), &IngestParams::default()).unwrap();
    assert_eq!(pairs(&got.genres), [("10", "Animation"), ("10", "Children's")], "item 11 has none");
    let p = IngestParams { genres: Some("movie_title".into()), ..Default::default() };
    assert_eq!(pairs(&read(d.path(), &p).unwrap().genres), [("10", "Toy"), ("10", "Story"), ("11", "X")]);
    let p = IngestParams { genres: Some("kind".into()), ..Default::default() };
    let e = read(d.path(), &p).unwrap_err().to_string();
    assert!(e.contains("x.item:1:1: no column `kind` (columns: "), "{e}");
}

/// u.item is ISO-8859-1, not UTF-8: a title's `é` is the single byte 0xE9.
#[test]
fn genres_of_grouplens_100k_flags_in_latin1() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "u.data", "196\t242\t3\t881250949\n");
    let mut item = b"242|Les Mis".to_vec();
    item.push(0xE9);
    // A trailing `|` (an empty field past the flags) names no genre.
    item.extend_from_slice(b"rables (1995)|01-Jan-1995||http://x|0|1|0|0|0|1|0|0|0|0|0|0|0|0|0|0|0|0|1|\n");
    std::fs::write(d.path().join("u.item"), &item).unwrap();
    let got = read(d.path(), &IngestParams::default()).unwrap();
    assert_eq!(pairs(&got.genres), [("242", "Action"), ("242", "Comedy"), ("242", "Western")]);
    write(d.path(), "u.genre", "none|0\nloud|1\n");
    let e = read(d.path(), &IngestParams::default()).unwrap_err().to_string();
    assert!(e.contains("u.item:1: field 11 is past the 2 genre flags"), "Comedy is set, and unnamed: {e}");
    write(d.path(), "u.genre", "unknown|0\nAction|2\n");
    let e = read(d.path(), &IngestParams::default()).unwrap_err().to_string();
    assert!(e.contains("u.genre:2: expected `name|1`, found `Action|2`"), "{e}");
}

#[test]
fn genres_of_movielens_1m_movies() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "ratings.dat", "1::1193::5::978300760\n");
    write(
        d.path(),
        "movies.dat",
        "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n1::Toy Story (1995)::Animation|Comedy\n",
    );
    let got = read(d.path(), &IngestParams::default()).unwrap();
    assert_eq!(pairs(&got.genres), [("1193", "Drama"), ("1", "Animation"), ("1", "Comedy")]);
    write(d.path(), "movies.dat", "1::Toy Story\n");
    let e = read(d.path(), &IngestParams::default()).unwrap_err().to_string();
    assert!(e.contains("movies.dat:1: expected `id::title::genres`, found 2 field(s)"), "{e}");
}

/// A CSV/TSV log's genres column counts at an item's first click: a later click
/// saying otherwise changes nothing, and an empty value names no genre.
#[test]
fn genres_of_a_csv_log_column_at_each_items_first_click() {
    let d = tempfile::tempdir().unwrap();
    let body = "uid,iid,ts,city,tags\na,x,5,paris,Drama| War\nb,y,6,rome,\na,y,7,oslo,Comedy\nb,x,8,rome,Horror\n";
    let f = write(d.path(), "log.csv", body);
    let p = IngestParams { genres: Some("tags".into()), ..uid_iid_ts_city() };
    let got = read(&f, &p).unwrap();
    assert_eq!(pairs(&got.genres), [("x", "Drama"), ("x", "War")], "y's first click names none");
    assert_eq!(got.features[0].1, ["paris", "rome"], "the user features are read as before");
    let tsv = write(d.path(), "log.tsv", "user_id\titem_id\ttimestamp\tg\n1\t7\t5\tA|B\n");
    let got = read(&tsv, &IngestParams { genres: Some("g".into()), ..Default::default() }).unwrap();
    assert_eq!(got.items.data_type(), &DataType::Int64);
    assert_eq!(pairs(&got.genres), [("7", "A"), ("7", "B")]);
    let e = read(&f, &IngestParams { genres: Some("genre".into()), ..uid_iid_ts_city() }).unwrap_err().to_string();
    assert!(e.contains("log.csv:1:1: no column `genre` (columns: "), "{e}");
    assert!(pairs(&read(&f, &uid_iid_ts_city()).unwrap().genres).is_empty(), "no param, no genres");
}

/// A Parquet log's genres are `|`-separated text or a list of names; integer item
/// ids keep their type.
#[test]
fn genres_of_a_parquet_log_as_text_or_list() {
    use datafusion::arrow::array::ListBuilder;
    use datafusion::arrow::array::StringBuilder;
    let d = tempfile::tempdir().unwrap();
    let mut lists = ListBuilder::new(StringBuilder::new());
    for row in [vec![Some("Drama"), Some("War")], vec![], vec![None, Some("Comedy")]] {
        lists.append_value(row);
    }
    let f = d.path().join("log.parquet");
    table::write(
        &f,
        vec![
            ("user_id", Arc::new(Int64Array::from(vec![1, 2, 3])) as ArrayRef),
            ("item_id", Arc::new(Int64Array::from(vec![10, 10, 11]))),
            ("timestamp", Arc::new(Int64Array::from(vec![1, 2, 3]))),
            ("text", Arc::new(StringArray::from(vec![Some("Drama|War"), Some("Horror"), None]))),
            ("list", Arc::new(lists.finish())),
        ],
    )
    .unwrap();
    let text_genres = read(&f, &IngestParams { genres: Some("text".into()), ..Default::default() }).unwrap();
    assert_eq!(pairs(&text_genres.genres), [("10", "Drama"), ("10", "War")], "a null names none");
    let list_genres = read(&f, &IngestParams { genres: Some("list".into()), ..Default::default() }).unwrap();
    assert_eq!(pairs(&list_genres.genres), [("10", "Drama"), ("10", "War"), ("11", "Comedy")]);
    assert_eq!(list_genres.items.data_type(), &DataType::Int64);
    let e = read(&f, &IngestParams { genres: Some("tags".into()), ..Default::default() }).unwrap_err().to_string();
    // Regression: the columns listed were only those read (user_id, item_id,
    // timestamp), so the file's `text` and `list` did not show.
    let said = "no column `tags` (columns: user_id, item_id, timestamp, text, list); set param `genres`";
    assert!(e.contains(said), "{e}");
}

/// Input `items`: every row of a CSV, TSV or Parquet table adds its genres, so one
/// row a genre and one row with all of them both work; ids must match the log's type.
#[test]
fn genres_of_an_items_table_of_their_own() {
    let d = tempfile::tempdir().unwrap();
    let p = IngestParams::default();
    let f = write(d.path(), "items.csv", "item_id,genre,title\n10,Drama,a\n10,War,a\n11,Comedy|Horror,b\n12,,c\n");
    assert_eq!(
        pairs(&genres::item_file(&f, &p, true).unwrap()),
        [("10", "Drama"), ("10", "War"), ("11", "Comedy"), ("11", "Horror")]
    );
    let f = write(d.path(), "items.tsv", "iid\tkinds\nx\tA\n");
    let named = IngestParams { item: "iid".into(), genres: Some("kinds".into()), ..Default::default() };
    assert_eq!(genres::item_file(&f, &named, false).unwrap().genres, ["A"]);
    let e = genres::item_file(&f, &named, true).unwrap_err().to_string();
    assert!(e.contains("items.tsv:2:1: item id `x` is not an integer, as the click log's ids are"), "{e}");
    let f = d.path().join("items.parquet");
    let ids: ArrayRef = Arc::new(Int64Array::from(vec![7, 8]));
    table::write(&f, vec![("item_id", ids), ("genre", Arc::new(StringArray::from(vec!["A|B", "C"])))]).unwrap();
    assert_eq!(genres::item_file(&f, &p, true).unwrap().items, ["7", "7", "8"]);
    let f = d.path().join("text_ids.parquet");
    let ids: ArrayRef = Arc::new(StringArray::from(vec!["7", "07"]));
    table::write(&f, vec![("item_id", ids), ("genre", Arc::new(StringArray::from(vec!["A", "B"])))]).unwrap();
    let e = genres::item_file(&f, &p, true).unwrap_err().to_string();
    assert!(e.contains("text_ids.parquet: column `item_id`, row 1: item id `07` is not an integer"), "{e}");
    assert_eq!(genres::item_file(&f, &p, false).unwrap().items, ["7", "07"], "text ids for a text log");
    let e = genres::item_file(&write(d.path(), "items.json", "{}"), &p, true).unwrap_err().to_string();
    assert!(e.contains("items.json: input `items` must be a .csv, .tsv or .parquet file"), "{e}");
    let e = genres::item_file(&write(d.path(), "g.csv", "item_id,kind\n1,A\n"), &p, true).unwrap_err().to_string();
    assert!(e.contains("g.csv:1:1: no column `genre` (columns: item_id, kind); set param `genres`"), "{e}");
}

/// Regression: with input `items`, a RecBole folder's own `.item` file was still
/// read, so a broken one failed the stage though its genres were to be replaced.
#[test]
fn an_items_table_replaces_the_layouts_genres_without_reading_them() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "x.inter", "user_id:token\titem_id:token\ttimestamp:float\n1\t10\t100\n");
    write(d.path(), "x.item", "item_id:token\tclass:token_seq\n\"10\tDrama\n");
    assert!(read(d.path(), &IngestParams::default()).is_err(), "the .item file is broken");
    let items = write(d.path(), "genres.csv", "item_id,genre\n10,War\n");
    let got = read_with(d.path(), &IngestParams::default(), Some(&items)).unwrap();
    assert_eq!(pairs(&got.genres), [("10", "War")]);
    assert_eq!(got.timestamps, [100], "the log is read as before");
}
