//! The one error type of the dataset loaders, and the JSONL helpers they share.
//!
//! Every error names the file and, where it is about one record, the 1-based line on which that
//! record starts (and the field or column), so that a bad line in a 10,000-line file can be found
//! at once, e.g. `data/gsm8k.jsonl:17: field "answer": missing "####" final answer`.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// What went wrong while reading a dataset.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file or directory could not be read (missing, unreadable, not UTF-8).
    #[error("{}: {source}", .path.display())]
    Io {
        /// The path that was being read.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A JSONL line is not valid JSON, or not a JSON object.
    #[error("{}:{line}:{column}: invalid JSON: {message}", .path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column within the line.
        column: usize,
        /// What the parser said.
        message: String,
    },
    /// A CSV file breaks the RFC-4180 syntax (e.g. an unterminated quoted field).
    #[error("{}:{line}:{column}: CSV syntax: {message}", .path.display())]
    Csv {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column (in characters) within the line.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// One field of a record is missing or has an unusable value.
    #[error("{}:{line}: field \"{field}\": {message}", .path.display())]
    Field {
        /// The file.
        path: PathBuf,
        /// 1-based line on which the record starts.
        line: usize,
        /// The field (JSON key or CSV column name).
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// A whole record is unusable (e.g. a CSV row with the wrong number of fields, a header
    /// without a required column).
    #[error("{}:{line}: {message}", .path.display())]
    Record {
        /// The file.
        path: PathBuf,
        /// 1-based line on which the record starts.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The file as a whole is unusable (no records, unsupported extension, ...).
    #[error("{}: {message}", .path.display())]
    File {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An emotion stimulus corpus fails [`crate::evals::data::EmotionCorpus::validate`].
    #[error("emotion corpus: {0}")]
    Corpus(String),
}

impl DataError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        DataError::Io { path: path.to_path_buf(), source }
    }

    pub(crate) fn field(path: &Path, line: usize, field: &str, message: impl Into<String>) -> Self {
        DataError::Field {
            path: path.to_path_buf(),
            line,
            field: field.to_string(),
            message: message.into(),
        }
    }

    pub(crate) fn record(path: &Path, line: usize, message: impl Into<String>) -> Self {
        DataError::Record { path: path.to_path_buf(), line, message: message.into() }
    }

    pub(crate) fn file(path: &Path, message: impl Into<String>) -> Self {
        DataError::File { path: path.to_path_buf(), message: message.into() }
    }
}

/// Reads a file to a string, stripping a leading UTF-8 byte-order mark.
pub(crate) fn read_text(path: &Path) -> Result<String, DataError> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    Ok(match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_string(),
        None => text,
    })
}

/// One JSON object of a JSONL file and the 1-based line it sits on.
#[derive(Debug)]
pub(crate) struct JsonLine {
    pub line: usize,
    pub object: Map<String, Value>,
}

/// Parses JSONL text: one JSON object per line; blank lines (and a trailing `\r`) are ignored.
/// `path` only labels errors.
pub(crate) fn parse_jsonl(text: &str, path: &Path) -> Result<Vec<JsonLine>, DataError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Vec::new();
    for (i, raw) in text.split('\n').enumerate() {
        let line = i + 1;
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if raw.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(raw).map_err(|e| {
            let full = e.to_string();
            let message = match full.rfind(" at line ") {
                Some(cut) => full[..cut].to_string(),
                None => full,
            };
            DataError::Json { path: path.to_path_buf(), line, column: e.column().max(1), message }
        })?;
        match value {
            Value::Object(object) => out.push(JsonLine { line, object }),
            other => {
                return Err(DataError::Json {
                    path: path.to_path_buf(),
                    line,
                    column: 1,
                    message: format!("expected a JSON object, found {}", json_kind(&other)),
                });
            }
        }
    }
    Ok(out)
}

/// The JSON type of a value, for error messages.
pub(crate) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl JsonLine {
    /// A required string field.
    pub fn string(&self, path: &Path, field: &str) -> Result<String, DataError> {
        match self.object.get(field) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(other) => Err(DataError::field(
                path,
                self.line,
                field,
                format!("expected a string, found {}", json_kind(other)),
            )),
            None => Err(DataError::field(path, self.line, field, "missing")),
        }
    }

    /// A required string field that must not be blank.
    pub fn non_empty(&self, path: &Path, field: &str) -> Result<String, DataError> {
        let s = self.string(path, field)?;
        if s.trim().is_empty() {
            return Err(DataError::field(path, self.line, field, "empty"));
        }
        Ok(s)
    }

    /// An optional identifier: a string or an integer, rendered as a string.
    pub fn optional_id(&self, path: &Path, field: &str) -> Result<Option<String>, DataError> {
        match self.object.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.trim().to_string())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(other) => Err(DataError::field(
                path,
                self.line,
                field,
                format!("expected a non-empty string or a number, found {}", json_kind(other)),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_skips_blank_lines_and_reports_bad_lines() {
        let p = Path::new("x.jsonl");
        let ok = parse_jsonl("{\"a\":1}\r\n\n  \n{\"b\":2}\n", p).unwrap();
        assert_eq!(ok.iter().map(|j| j.line).collect::<Vec<_>>(), vec![1, 4]);

        let err = parse_jsonl("{\"a\":1}\n{\"a\": }\n", p).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("x.jsonl:2:7: invalid JSON: "), "{msg}");
        assert!(!msg.contains("at line"), "{msg}");

        let err = parse_jsonl("[1, 2]\n", p).unwrap_err();
        assert_eq!(
            err.to_string(),
            "x.jsonl:1:1: invalid JSON: expected a JSON object, found an array"
        );
    }

    #[test]
    fn field_helpers_name_the_field() {
        let p = Path::new("d/f.jsonl");
        let lines = parse_jsonl("\n{\"q\": 3, \"e\": \" \", \"id\": 17}", p).unwrap();
        let j = &lines[0];
        assert_eq!(
            j.string(p, "q").unwrap_err().to_string(),
            "d/f.jsonl:2: field \"q\": expected a string, found a number"
        );
        assert_eq!(j.string(p, "z").unwrap_err().to_string(), "d/f.jsonl:2: field \"z\": missing");
        assert_eq!(j.non_empty(p, "e").unwrap_err().to_string(), "d/f.jsonl:2: field \"e\": empty");
        assert_eq!(j.optional_id(p, "id").unwrap(), Some("17".to_string()));
        assert_eq!(j.optional_id(p, "nope").unwrap(), None);
    }

    #[test]
    fn read_text_strips_bom_and_reports_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("bom.txt");
        std::fs::write(&f, "\u{feff}hello").unwrap();
        assert_eq!(read_text(&f).unwrap(), "hello");
        let missing = dir.path().join("missing.txt");
        let err = read_text(&missing).unwrap_err();
        assert!(err.to_string().starts_with(&missing.display().to_string()), "{err}");
    }
}
