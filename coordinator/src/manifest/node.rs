//! The format-neutral, position-carrying value tree that every reader produces and the one
//! validator consumes, plus the error collector they share.

use super::error::{ManifestError, ManifestErrors};
use super::model::Location;
use serde_json::{Number, Value};

/// Deeper documents are refused: the readers and the validator recurse, and no sensible
/// manifest comes near this.
pub(crate) const MAX_DEPTH: usize = 64;

/// A value and where it was written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub loc: Location,
    pub value: NodeValue,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum NodeValue {
    Null,
    Bool(bool),
    Int(i64),
    /// Always finite: the readers refuse NaN and infinities, which JSON cannot carry.
    Float(f64),
    Str(String),
    List(Vec<Node>),
    /// Entries in source order; keys are unique (the readers report duplicates).
    Map(Vec<Entry>),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    pub key: String,
    pub key_loc: Location,
    pub value: Node,
}

impl Node {
    pub fn new(loc: Location, value: NodeValue) -> Self {
        Self { loc, value }
    }

    /// What the value is, for "expected X, found Y" messages. The words are format-neutral:
    /// a TOML table, a YAML mapping and a JSON object are all "a table".
    pub fn kind(&self) -> &'static str {
        match self.value {
            NodeValue::Null => "null",
            NodeValue::Bool(_) => "a boolean",
            NodeValue::Int(_) => "an integer",
            NodeValue::Float(_) => "a float",
            NodeValue::Str(_) => "a string",
            NodeValue::List(_) => "a list",
            NodeValue::Map(_) => "a table",
        }
    }

    pub fn as_map(&self) -> Option<&[Entry]> {
        match &self.value {
            NodeValue::Map(entries) => Some(entries),
            _ => None,
        }
    }

    pub fn as_list(&self) -> Option<&[Node]> {
        match &self.value {
            NodeValue::List(items) => Some(items),
            _ => None,
        }
    }

    /// The JSON value, recording the location of this node and of everything under it as
    /// `path`, `path.key`, `path[i]`.
    pub fn to_json(&self, path: &str, locs: &mut dyn FnMut(String, Location)) -> Value {
        locs(path.to_owned(), self.loc);
        match &self.value {
            NodeValue::Null => Value::Null,
            NodeValue::Bool(b) => Value::Bool(*b),
            NodeValue::Int(i) => Value::Number((*i).into()),
            NodeValue::Float(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
            NodeValue::Str(s) => Value::String(s.clone()),
            NodeValue::List(items) => Value::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| item.to_json(&format!("{path}[{i}]"), locs))
                    .collect(),
            ),
            NodeValue::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|e| (e.key.clone(), e.value.to_json(&join(path, &e.key), locs)))
                    .collect(),
            ),
        }
    }
}

/// A text that is equal for equal JSON values whatever the order of object keys: a hash key
/// for "have we seen this value / config before" (the planner's canonical form).
pub(crate) use crate::plan::canonical_json;

/// `prefix.key`, or `key` at the top.
pub(crate) fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() { key.to_owned() } else { format!("{prefix}.{key}") }
}

/// Turns byte offsets into 1-based line and character columns.
pub(crate) struct LineIndex<'a> {
    text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub fn new(text: &'a str) -> Self {
        let line_starts =
            std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect();
        Self { text, line_starts }
    }

    pub fn location(&self, offset: usize) -> Location {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset).max(1);
        let start = self.line_starts[line - 1];
        // Parsers report byte offsets; a column that splits a character would be a parser
        // bug, so fall back to bytes rather than fail.
        let column = self.text.get(start..offset).map_or(offset - start, |s| s.chars().count());
        Location { line, column: column + 1 }
    }
}

/// Collects every problem found, each located and with its field path.
pub(crate) struct Diagnostics {
    source: String,
    errors: Vec<ManifestError>,
}

impl Diagnostics {
    pub fn new(source: &str) -> Self {
        Self { source: source.to_owned(), errors: Vec::new() }
    }

    pub fn error(&mut self, loc: Option<Location>, path: &str, message: impl Into<String>) {
        self.errors.push(ManifestError {
            source: self.source.clone(),
            location: loc,
            path: path.to_owned(),
            message: message.into(),
        });
    }

    pub fn at(&mut self, loc: Location, path: &str, message: impl Into<String>) {
        self.error(Some(loc), path, message);
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// Errors sorted by position (unlocated last), so the report reads top to bottom.
    pub fn into_errors(mut self) -> ManifestErrors {
        self.errors
            .sort_by_key(|e| e.location.map_or((usize::MAX, usize::MAX), |l| (l.line, l.column)));
        ManifestErrors(self.errors)
    }
}

/// The closest of `candidates` to a misspelt `word`, if it is close enough to be a typo.
pub(crate) fn suggest<'c>(word: &str, candidates: &[&'c str]) -> Option<&'c str> {
    let limit = (word.chars().count() / 3).max(1);
    // Ties go to the candidate sharing more of the word's start (`cpus` → `cpu`, not `gpus`).
    candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), strsim::jaro_winkler(word, c), *c))
        .filter(|(d, _, _)| *d <= limit)
        .min_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)))
        .map(|(_, _, c)| c)
}

/// "unknown key" with a suggestion or the list of keys allowed there.
pub(crate) fn unknown_key_message(key: &str, allowed: &[&str]) -> String {
    match suggest(key, allowed) {
        Some(s) => format!("unknown key `{key}`; did you mean `{s}`?"),
        None => format!("unknown key `{key}`; expected one of: {}", allowed.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_index_counts_characters() {
        let idx = LineIndex::new("ab\nçé=1\n");
        assert_eq!(idx.location(0), Location { line: 1, column: 1 });
        assert_eq!(idx.location(3), Location { line: 2, column: 1 });
        // "çé" is four bytes, two characters.
        assert_eq!(idx.location(7), Location { line: 2, column: 3 });
        assert_eq!(idx.location(999), Location { line: 3, column: 1 });
    }

    #[test]
    fn suggestions_are_for_typos_only() {
        assert_eq!(suggest("sweeep", &["sweep", "axes"]), Some("sweep"));
        assert_eq!(suggest("axis", &["sweep", "axes"]), Some("axes"));
        assert_eq!(suggest("frobnicate", &["sweep", "axes"]), None);
        assert_eq!(suggest("cpus", &["gpus", "cpu"]), Some("cpu"));
    }
}
