//! TaskMonk's output files (CSV or Excel) and how their rows become envelopes: which columns are the key,
//! the input and the output, and what the per-level date columns say of a row's status.

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::super::model::*;
use super::VENDOR;
use crate::engine::{Error, ErrorKind, Result};

/// A downloaded output file: the header and the rows, every cell a string.
#[derive(Debug, Default, PartialEq)]
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

fn bad_file(message: String) -> Error {
    Error::new(ErrorKind::Vendor, message)
        .vendor(VENDOR)
        .code("bad_output_file")
}

/// Parses an output file: Excel when it is a zip (`.xlsx`), else CSV (UTF-8, BOM stripped, else latin-1).
pub fn parse_file(bytes: &[u8]) -> Result<Table> {
    if bytes.starts_with(b"PK\x03\x04") {
        return parse_excel(bytes);
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let text: std::borrow::Cow<str> = match std::str::from_utf8(bytes) {
        Ok(s) => s.into(),
        Err(_) => bytes.iter().map(|&b| b as char).collect::<String>().into(),
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(text.as_bytes());
    let header = reader
        .headers()
        .map_err(|e| bad_file(format!("the output file is not valid CSV: {e}")))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    let mut rows = Vec::new();
    for row in reader.records() {
        let row = row.map_err(|e| bad_file(format!("the output file is not valid CSV: {e}")))?;
        if row.iter().all(str::is_empty) {
            continue;
        }
        rows.push(row.iter().map(str::to_string).collect());
    }
    Ok(Table { header, rows })
}

fn parse_excel(bytes: &[u8]) -> Result<Table> {
    use calamine::{Data, Reader};
    let mut book = calamine::Xlsx::new(std::io::Cursor::new(bytes.to_vec()))
        .map_err(|e| bad_file(format!("the output file is not a valid Excel file: {e}")))?;
    let range = book
        .worksheet_range_at(0)
        .ok_or_else(|| bad_file("the Excel output file has no sheet".into()))?
        .map_err(|e| bad_file(format!("the output file is not a valid Excel file: {e}")))?;
    let text = |c: &Data| match c {
        Data::Empty => String::new(),
        Data::String(s) | Data::DateTimeIso(s) | Data::DurationIso(s) => s.clone(),
        Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", *f as i64),
        Data::Bool(b) => b.to_string(),
        other => other.to_string(),
    };
    let mut rows = range.rows();
    let header = match rows.next() {
        Some(r) => r.iter().map(|c| text(c).trim().to_string()).collect(),
        None => return Ok(Table::default()),
    };
    let rows = rows
        .map(|r| r.iter().map(text).collect::<Vec<_>>())
        .filter(|r| r.iter().any(|c| !c.is_empty()))
        .collect();
    Ok(Table { header, rows })
}

/// What a per-level column of an output file says of a task.
#[derive(Clone, Copy, Debug, PartialEq)]
enum LevelColumn {
    Start,
    Completion,
    /// Another per-level, per-user column (`L1_U1_User`): neither input nor output.
    Other,
}

/// A column name as compared: lower case, spaces and hyphens as underscores.
fn normalized(name: &str) -> String {
    name.trim()
        .to_ascii_lowercase()
        .split([' ', '_', '-'])
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("_")
}

fn date_attribute(attribute: &str) -> Option<LevelColumn> {
    match attribute {
        "start_date" | "started_at" | "start_time" | "started_on" => Some(LevelColumn::Start),
        "completion_date" | "completed_at" | "completion_time" | "completed_on"
        | "completed_date" => Some(LevelColumn::Completion),
        _ => None,
    }
}

/// `L{level}_U{user}_{attribute}`, the per-level, per-user columns of a "batch and user" output file, in
/// any case and with spaces or underscores (`L1 U1 Completion Date`, `l1_u1_completion_date`): the only
/// name seen is `L1_U1_Completion_Date` (docs/vendors/taskmonk.md, finding 4).
fn level_user_column(name: &str) -> Option<(u32, LevelColumn)> {
    let name = normalized(name);
    let rest = name.strip_prefix('l')?;
    let (level, rest) = rest.split_once('_')?;
    let level: u32 = level.parse().ok()?;
    let rest = rest.strip_prefix('u')?;
    let (user, attribute) = rest.split_once('_')?;
    user.parse::<u32>().ok()?;
    Some((
        level,
        date_attribute(attribute).unwrap_or(LevelColumn::Other),
    ))
}

/// A date column without a level prefix (`Completion Date`, `completed_at`, `Start Date`): a file of one
/// level. Read only where the file has no per-level date column.
fn plain_date_column(name: &str) -> Option<LevelColumn> {
    date_attribute(&normalized(name))
}

/// A timestamp of an output file as microseconds: RFC 3339, else a date-time without offset (UTC).
pub fn parse_timestamp_us(s: &str) -> Option<i64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Some(us) = parse_rfc3339_us(s) {
        return Some(us);
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%d-%m-%Y %H:%M:%S",
        "%d/%m/%Y %H:%M:%S",
    ] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, fmt) {
            return Some(t.and_utc().timestamp_micros());
        }
    }
    None
}

/// Where things are in an output file.
#[derive(Debug)]
struct Layout {
    key: Option<usize>,
    id: Option<usize>,
    input: Vec<usize>,
    output: Vec<usize>,
    /// (level, column) of `..._Start_Date` and `..._Completion_Date`.
    starts: Vec<(u32, usize)>,
    completions: Vec<(u32, usize)>,
}

impl Layout {
    fn new(header: &[String], key_column: &str, output_fields: Option<&[String]>) -> Layout {
        let key = header.iter().position(|h| h == key_column);
        let id = header
            .iter()
            .position(|h| matches!(h.as_str(), "task_id" | "taskId" | "Task Id"));
        let mut layout = Layout {
            key,
            id,
            input: vec![],
            output: vec![],
            starts: vec![],
            completions: vec![],
        };
        let levelled = header
            .iter()
            .any(|h| level_user_column(h).is_some_and(|(_, c)| c != LevelColumn::Other));
        for (i, name) in header.iter().enumerate() {
            if Some(i) == key || Some(i) == id || name.is_empty() {
                continue;
            }
            let date = match level_user_column(name) {
                Some((level, column)) => Some((level, column)),
                None if !levelled => plain_date_column(name).map(|c| (1, c)),
                None => None,
            };
            if let Some((level, column)) = date {
                match column {
                    LevelColumn::Start => layout.starts.push((level, i)),
                    LevelColumn::Completion => layout.completions.push((level, i)),
                    LevelColumn::Other => {}
                }
                continue;
            }
            let is_output = match output_fields {
                Some(fields) => fields.iter().any(|f| f == name),
                // labelport writes the key column last: what follows it is taken as the project's
                // output. No source gives the column order (finding 3): `output_fields=` settles it.
                None => {
                    warn_positional_output();
                    key.is_some_and(|k| i > k)
                }
            };
            if is_output {
                layout.output.push(i);
            } else {
                layout.input.push(i);
            }
        }
        layout
    }

    /// The status of a row and its completion time, from the per-level dates where the file has them.
    fn status(
        &self,
        row: &[String],
        completed_only: bool,
    ) -> (Status, Option<i64>, Option<String>) {
        let get = |i: usize| row.get(i).map(String::as_str).unwrap_or("");
        if self.completions.is_empty() && self.starts.is_empty() {
            let labelled = self.output.iter().any(|&i| !get(i).is_empty());
            let status = if completed_only || labelled {
                Status::Completed
            } else {
                Status::Pending
            };
            return (status, None, None);
        }
        let last = self.completions.iter().map(|(l, _)| *l).max().unwrap_or(0);
        let filled: Vec<&str> = self
            .completions
            .iter()
            .filter(|(l, _)| *l == last)
            .map(|&(_, i)| get(i))
            .filter(|s| !s.trim().is_empty())
            .collect();
        if let Some(us) = filled.iter().filter_map(|s| parse_timestamp_us(s)).max() {
            return (Status::Completed, Some(us), Some(format_rfc3339_us(us)));
        }
        // A completion date in a format labelport does not read still says the task is done.
        if completed_only || !filled.is_empty() {
            return (Status::Completed, None, None);
        }
        let started = self
            .starts
            .iter()
            .chain(self.completions.iter())
            .any(|&(_, i)| !get(i).is_empty());
        let status = if started {
            Status::InProgress
        } else {
            Status::Pending
        };
        (status, None, None)
    }
}

/// Says once per process that output columns were told from input columns by position.
fn warn_positional_output() {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| {
        log::warn!(
            target: "labelport::vendors::taskmonk",
            "output_fields= not given: the columns after the key column are taken as the project's output; no \
             TaskMonk source gives the column order of an output file, so pass output_fields= (the project's \
             output field names) on a real account"
        );
    });
}

fn raw_of(map: &Map<String, Value>) -> Option<Box<RawValue>> {
    RawValue::from_string(Value::Object(map.clone()).to_string()).ok()
}

/// Rows of an output file as envelopes.
pub fn envelopes(
    table: &Table,
    batch_id: &str,
    key_column: &str,
    output_fields: Option<&[String]>,
    completed_only: bool,
    include_raw: bool,
) -> Vec<Envelope> {
    let layout = Layout::new(&table.header, key_column, output_fields);
    log::debug!(
        target: "labelport::vendors::taskmonk",
        "output file of batch {batch_id}: columns {:?}; key {:?}, output {:?}, start dates {:?}, completion dates {:?}",
        table.header,
        layout.key,
        layout.output,
        layout.starts,
        layout.completions
    );
    let name = |i: usize| table.header[i].clone();
    table
        .rows
        .iter()
        .enumerate()
        .map(|(n, row)| {
            let get = |i: usize| row.get(i).cloned().unwrap_or_default();
            let pick = |cols: &[usize]| -> Map<String, Value> {
                cols.iter()
                    .map(|&i| (name(i), Value::String(get(i))))
                    .collect()
            };
            let key = layout.key.map(get).unwrap_or_else(|| (n + 1).to_string());
            let (status, completed_us, completed_at) = layout.status(row, completed_only);
            let output = (status == Status::Completed).then(|| pick(&layout.output));
            let raw = include_raw
                .then(|| {
                    let all: Map<String, Value> = table
                        .header
                        .iter()
                        .enumerate()
                        .map(|(i, h)| (h.clone(), Value::String(get(i))))
                        .collect();
                    raw_of(&all)
                })
                .flatten();
            Envelope {
                id: layout.id.map(get).unwrap_or_else(|| key.clone()),
                batch_id: batch_id.to_string(),
                key,
                status,
                input: raw_of(&pick(&layout.input)),
                output: output.as_ref().and_then(raw_of),
                created_at: None,
                completed_at,
                vendor: VENDOR,
                raw,
                completed_us,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Table {
        let csv =
            "url,external_id,label,confidence,L1_U1_User,L1_U1_Start_Date,L1_U1_Completion_Date\n\
                   u1,k1,car,0.9,L1_U1,2026-11-24T08:00:00.000Z,2026-11-24T08:00:02.500Z\n\
                   u2,k2,,,L1_U1,2026-11-24T08:00:01.000Z,\n\
                   u3,k3,,,,,\n";
        parse_file(csv.as_bytes()).unwrap()
    }

    #[test]
    fn output_rows_become_envelopes() {
        let t = table();
        let all = envelopes(&t, "331", "external_id", None, false, true);
        assert_eq!(all.len(), 3);
        let e = &all[0];
        assert_eq!((e.id.as_str(), e.key.as_str()), ("k1", "k1"));
        assert_eq!(e.status, Status::Completed);
        assert_eq!(e.input.as_ref().unwrap().get(), r#"{"url":"u1"}"#);
        assert_eq!(
            e.output.as_ref().unwrap().get(),
            r#"{"label":"car","confidence":"0.9"}"#
        );
        assert_eq!(e.completed_at.as_deref(), Some("2026-11-24T08:00:02.500Z"));
        assert!(e.raw.as_ref().unwrap().get().contains("L1_U1_User"));
        assert_eq!(all[1].status, Status::InProgress);
        assert!(all[1].output.is_none());
        assert_eq!(all[2].status, Status::Pending);

        // Declared output fields win over the position of the key column.
        let fields = vec!["label".to_string()];
        let e = &envelopes(&t, "331", "external_id", Some(&fields), false, false)[0];
        assert_eq!(
            e.input.as_ref().unwrap().get(),
            r#"{"url":"u1","confidence":"0.9"}"#
        );
        assert!(e.raw.is_none());
    }

    #[test]
    fn level_columns_and_timestamps() {
        let completion = Some((1, LevelColumn::Completion));
        assert_eq!(level_user_column("L1_U1_Completion_Date"), completion);
        assert_eq!(level_user_column("L1 U1 Completion Date"), completion);
        assert_eq!(level_user_column("l1_u1_completion_date"), completion);
        assert_eq!(level_user_column("L1_U2_Completed_At"), completion);
        assert_eq!(
            level_user_column("L2-U1-Start Date"),
            Some((2, LevelColumn::Start))
        );
        assert_eq!(
            level_user_column("L12_U3_User"),
            Some((12, LevelColumn::Other))
        );
        assert_eq!(level_user_column("L1_label"), None);
        assert_eq!(level_user_column("Label"), None);
        assert_eq!(
            plain_date_column("Completion Date"),
            Some(LevelColumn::Completion)
        );
        assert_eq!(plain_date_column("label"), None);
        let us = parse_timestamp_us("2026-11-24T08:00:02.500Z").unwrap();
        assert_eq!(parse_timestamp_us("2026-11-24 08:00:02.5"), Some(us));
        assert_eq!(parse_timestamp_us(""), None);
        assert_eq!(parse_timestamp_us("soon"), None);
    }

    #[test]
    fn date_columns_under_other_spellings() {
        for (start, done) in [
            ("L1 U1 Start Date", "L1 U1 Completion Date"),
            ("l1_u1_start_date", "l1_u1_completion_date"),
            ("Start Date", "Completion Date"),
            ("started_at", "completed_at"),
        ] {
            let csv = format!(
                "url,external_id,label,{start},{done}\n\
                 u1,k1,car,2026-11-24T08:00:00Z,2026-11-24T08:00:02Z\n\
                 u2,k2,,2026-11-24T08:00:01Z,\n\
                 u3,k3,,,\n\
                 u4,k4,bus,2026-11-24T08:00:01Z,around noon\n"
            );
            let t = parse_file(csv.as_bytes()).unwrap();
            let e = envelopes(&t, "331", "external_id", None, false, false);
            let statuses: Vec<Status> = e.iter().map(|e| e.status).collect();
            assert_eq!(
                statuses,
                [
                    Status::Completed,
                    Status::InProgress,
                    Status::Pending,
                    Status::Completed
                ],
                "{done}"
            );
            assert_eq!(
                e[0].completed_at.as_deref(),
                Some("2026-11-24T08:00:02.000Z")
            );
            // An unreadable date: completed, without a time; no date column leaks into the input.
            assert_eq!(e[3].completed_at, None);
            assert_eq!(
                e[0].input.as_ref().unwrap().get(),
                r#"{"url":"u1"}"#,
                "{done}"
            );
        }
    }

    #[test]
    fn latin1_csv() {
        let t = parse_file(b"name,external_id\ncaf\xe9,k\n").unwrap();
        assert_eq!(t.rows[0][0], "café");
    }
}
