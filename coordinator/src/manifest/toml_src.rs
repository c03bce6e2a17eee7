//! TOML → [`Node`], through `toml_edit`'s parse tree, which keeps the span of every key and
//! value and the order they were written in.

use super::model::Location;
use super::node::{Diagnostics, Entry, LineIndex, MAX_DEPTH, Node, NodeValue};
use toml_edit::{Item, Key, Table, Value};

/// The document as a tree, or `None` after a syntax error (already reported).
pub(crate) fn read(text: &str, diag: &mut Diagnostics) -> Option<Node> {
    let lines = LineIndex::new(text);
    let doc = match toml_edit::Document::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            let loc = e.span().map_or(Location { line: 1, column: 1 }, |s| lines.location(s.start));
            // toml_edit's messages can run over several lines; keep the report one per line.
            let message = e
                .message()
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join("; ");
            diag.at(loc, "", message);
            return None;
        }
    };
    let reader = Reader { lines: &lines };
    let root = Location { line: 1, column: 1 };
    Some(reader.table(doc.as_table(), root, 0, diag))
}

struct Reader<'l, 't> {
    lines: &'l LineIndex<'t>,
}

impl Reader<'_, '_> {
    fn loc(&self, span: Option<std::ops::Range<usize>>, fallback: Location) -> Location {
        span.map_or(fallback, |s| self.lines.location(s.start))
    }

    fn key_loc(&self, key: &Key, fallback: Location) -> Location {
        self.loc(key.span(), fallback)
    }

    fn too_deep(&self, loc: Location, depth: usize, diag: &mut Diagnostics) -> bool {
        if depth > MAX_DEPTH {
            diag.at(loc, "", format!("nested more than {MAX_DEPTH} levels deep"));
            return true;
        }
        false
    }

    /// `loc` is where the table was introduced: its header, or (for implicit tables, which
    /// have no span of their own) the key that named it.
    fn table(&self, table: &Table, loc: Location, depth: usize, diag: &mut Diagnostics) -> Node {
        let loc = self.loc(table.span(), loc);
        if self.too_deep(loc, depth, diag) {
            return Node::new(loc, NodeValue::Null);
        }
        let mut entries = Vec::new();
        for (name, _) in table.iter() {
            let Some((key, item)) = table.get_key_value(name) else {
                continue;
            };
            let key_loc = self.key_loc(key, loc);
            if let Some(value) = self.item(item, key_loc, depth + 1, diag) {
                entries.push(Entry { key: name.to_owned(), key_loc, value });
            }
        }
        Node::new(loc, NodeValue::Map(entries))
    }

    fn item(
        &self,
        item: &Item,
        at: Location,
        depth: usize,
        diag: &mut Diagnostics,
    ) -> Option<Node> {
        match item {
            Item::None => None,
            Item::Value(v) => Some(self.value(v, at, depth, diag)),
            Item::Table(t) => Some(self.table(t, at, depth, diag)),
            Item::ArrayOfTables(a) => {
                let loc = self.loc(a.span(), at);
                let items = a.iter().map(|t| self.table(t, loc, depth + 1, diag)).collect();
                Some(Node::new(loc, NodeValue::List(items)))
            }
        }
    }

    fn value(&self, value: &Value, at: Location, depth: usize, diag: &mut Diagnostics) -> Node {
        let loc = self.loc(value.span(), at);
        if self.too_deep(loc, depth, diag) {
            return Node::new(loc, NodeValue::Null);
        }
        let v = match value {
            Value::String(s) => NodeValue::Str(s.value().clone()),
            Value::Integer(i) => NodeValue::Int(*i.value()),
            Value::Float(f) => {
                let f = *f.value();
                if f.is_finite() {
                    NodeValue::Float(f)
                } else {
                    diag.at(
                        loc,
                        "",
                        "infinite and NaN floats are not allowed (JSON has no such values)",
                    );
                    NodeValue::Null
                }
            }
            Value::Boolean(b) => NodeValue::Bool(*b.value()),
            // JSON has no datetime: keep TOML's own text of it.
            Value::Datetime(d) => NodeValue::Str(d.value().to_string()),
            Value::Array(a) => {
                NodeValue::List(a.iter().map(|v| self.value(v, loc, depth + 1, diag)).collect())
            }
            Value::InlineTable(t) => {
                let mut entries = Vec::new();
                for (name, _) in t.iter() {
                    let Some((key, item)) = t.get_key_value(name) else {
                        continue;
                    };
                    let key_loc = self.key_loc(key, loc);
                    if let Some(value) = self.item(item, key_loc, depth + 1, diag) {
                        entries.push(Entry { key: name.to_owned(), key_loc, value });
                    }
                }
                NodeValue::Map(entries)
            }
        };
        Node::new(loc, v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Node, String> {
        let mut diag = Diagnostics::new("t.toml");
        read(text, &mut diag).ok_or_else(|| diag.into_errors().to_string())
    }

    #[test]
    fn keeps_order_positions_and_types() {
        let node = parse("[axes]\nz = [1, 2.5]\na.b = \"x\"\nd = 1979-05-27\n").unwrap();
        let axes = &node.as_map().unwrap()[0];
        assert_eq!(axes.key, "axes");
        assert_eq!(axes.value.loc, Location { line: 1, column: 1 });
        let entries = axes.value.as_map().unwrap();
        let keys: Vec<_> = entries.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["z", "a", "d"]);
        let z = entries[0].value.as_list().unwrap();
        assert_eq!(z[0].value, NodeValue::Int(1));
        assert_eq!(z[1].value, NodeValue::Float(2.5));
        assert_eq!(z[1].loc, Location { line: 2, column: 9 });
        // A dotted key's implicit table is located at its key.
        assert_eq!(entries[1].value.loc, Location { line: 3, column: 1 });
        assert_eq!(entries[2].value.value, NodeValue::Str("1979-05-27".into()));
    }

    #[test]
    fn syntax_errors_are_located() {
        let err = parse("[sweep]\nname = \n").unwrap_err();
        assert!(err.starts_with("t.toml:2:"), "{err}");
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let text = format!("a = {}{}", "[".repeat(5000), "]".repeat(5000));
        let mut diag = Diagnostics::new("t.toml");
        let _ = read(&text, &mut diag);
        assert!(!diag.is_empty());
    }
}
