//! The delimited text files `ingest` reads, record by record, with the line and
//! column of what is wrong in them.

use std::path::{Path, PathBuf};

use dagrun_kind::StageError;

/// A delimited text file read record by record, with line numbers. One-byte
/// separators go through the `csv` crate (RFC 4180: quoted fields may hold the
/// separator, doubled quotes, line breaks; CRLF or LF), streamed so memory holds one
/// record at a time; MovieLens-1M's `::` keeps a plain split, its fields are never
/// quoted.
pub(super) struct Text {
    path: PathBuf,
    sep: &'static str,
}

/// The records of a `Text`, blank lines left out.
pub(super) type Records<'a> = Box<dyn Iterator<Item = Result<(usize, csv::StringRecord), StageError>> + 'a>;

impl Text {
    pub(super) fn open(path: &Path, sep: &'static str) -> Text {
        Text { path: path.to_path_buf(), sep }
    }

    fn empty(&self) -> StageError {
        StageError::BadInput(format!("{}: the file is empty", self.path.display()))
    }

    fn unreadable(&self, e: &dyn std::fmt::Display) -> StageError {
        StageError::BadInput(format!("{}: cannot read ({e})", self.path.display()))
    }

    /// (line number, fields) of every non-blank record, from the start of the file; a
    /// file without one is an error.
    pub(super) fn rows(&self) -> Result<Records<'_>, StageError> {
        let mut rows = self.records()?.peekable();
        if rows.peek().is_none() {
            return Err(self.empty());
        }
        Ok(Box::new(rows))
    }

    fn records(&self) -> Result<Records<'_>, StageError> {
        let blank = |r: &csv::StringRecord| r.len() <= 1 && r.get(0).is_none_or(|f| f.trim().is_empty());
        if let [byte] = self.sep.as_bytes() {
            let reader = csv::ReaderBuilder::new()
                .delimiter(*byte)
                .has_headers(false)
                .flexible(true)
                .from_path(&self.path)
                .map_err(|e| self.unreadable(&e))?;
            return Ok(Box::new(reader.into_records().filter_map(move |r| match r {
                Ok(r) if blank(&r) => None,
                Ok(r) => Some(Ok((r.position().map_or(0, |p| p.line() as usize), r))),
                Err(e) => Some(Err(csv_error(&self.path, &e))),
            })));
        }
        let body = std::fs::read_to_string(&self.path).map_err(|e| self.unreadable(&e))?;
        let records: Vec<_> = body
            .lines()
            .enumerate()
            .map(|(i, l)| {
                (i + 1, csv::StringRecord::from(l.strip_suffix('\r').unwrap_or(l).split(self.sep).collect::<Vec<_>>()))
            })
            .filter(|(_, r)| !blank(r))
            .map(Ok)
            .collect();
        Ok(Box::new(records.into_iter()))
    }

    /// The first record (the header of a file that has one) and the rest.
    pub(super) fn header_and_rows(&self) -> Result<(csv::StringRecord, Records<'_>), StageError> {
        let mut rows = self.rows()?;
        let (_, header) = rows.next().ok_or_else(|| self.empty())??;
        Ok((header, rows))
    }

    pub(super) fn at(&self, line: usize, fields: &[&str], field: usize, message: String) -> StageError {
        // Column: 1-based character position where the field starts; for a missing
        // field, just past the end of the line.
        let before: usize = fields[..field.min(fields.len())].iter().map(|f| f.chars().count() + self.sep.len()).sum();
        let column = if field >= fields.len() { before + 1 - self.sep.len().min(before) } else { before + 1 };
        StageError::BadInput(format!("{}:{line}:{column}: {message}", self.path.display()))
    }

    pub(super) fn field<'a>(
        &self,
        line: usize,
        fields: &[&'a str],
        i: usize,
        what: &str,
    ) -> Result<&'a str, StageError> {
        fields.get(i).copied().ok_or_else(|| {
            self.at(
                line,
                fields,
                fields.len(),
                format!("missing field {} ({what}); the line has {} field(s)", i + 1, fields.len()),
            )
        })
    }

    pub(super) fn timestamp(&self, line: usize, fields: &[&str], i: usize) -> Result<i64, StageError> {
        let raw = self.field(line, fields, i, "timestamp")?;
        raw.parse::<i64>()
            .ok()
            .or_else(|| raw.parse::<f64>().ok().filter(|f| f.is_finite()).map(|f| f as i64))
            .ok_or_else(|| self.at(line, fields, i, format!("timestamp `{raw}` is not a number (seconds since 1970)")))
    }
}

/// A record the csv reader could not parse, at its line.
fn csv_error(path: &Path, e: &csv::Error) -> StageError {
    let line = e.position().map(|p| format!(":{}", p.line())).unwrap_or_default();
    let what = match e.kind() {
        csv::ErrorKind::Utf8 { .. } => "a field is not UTF-8 text".to_string(),
        _ => e.to_string(),
    };
    StageError::BadInput(format!("{}{line}: {what}", path.display()))
}

/// A column a param names: (the column, the param), so that a file without it is an
/// error that says which param to set.
pub(super) type Named<'a> = (&'a str, &'static str);

/// The error for a file whose columns (`have`) lack `column`, named by param `param`.
pub(super) fn no_column(column: &str, param: &str, have: &[&str]) -> String {
    format!(
        "no column `{column}` (columns: {}); set param `{param}` to the column's name in this file",
        have.join(", ")
    )
}

/// Finds named columns in a header; duplicate and missing names are errors.
pub(super) fn header_index(text: &Text, header: &[&str], wanted: &[Named]) -> Result<Vec<usize>, StageError> {
    for (i, h) in header.iter().enumerate() {
        if header[..i].contains(h) {
            return Err(text.at(1, header, i, format!("column `{h}` appears twice in the header")));
        }
    }
    wanted
        .iter()
        .map(|&(column, param)| {
            let at = header.iter().position(|h| *h == column);
            at.ok_or_else(|| text.at(1, header, 0, no_column(column, param, header)))
        })
        .collect()
}
