//! JSON → [`Node`]. serde_json is the judge of what is JSON (its messages are the ones people
//! know); jsonc-parser, with every extension turned off, supplies the tree with positions.

use super::model::Location;
use super::node::{Diagnostics, Entry, LineIndex, MAX_DEPTH, Node, NodeValue};
use jsonc_parser::ast::{ObjectPropName, Value};
use jsonc_parser::common::Ranged;
use jsonc_parser::{CollectOptions, ParseOptions};

/// The document as a tree, or `None` after a syntax error (already reported).
pub(crate) fn read(text: &str, diag: &mut Diagnostics) -> Option<Node> {
    let lines = LineIndex::new(text);
    if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(text) {
        diag.at(syntax_location(&e, text, &lines), "", strip_position(&e));
        return None;
    }
    let strict = ParseOptions {
        allow_comments: false,
        allow_loose_object_property_names: false,
        allow_trailing_commas: false,
        allow_missing_commas: false,
        allow_single_quoted_strings: false,
        allow_hexadecimal_numbers: false,
        allow_unary_plus_numbers: false,
        allow_bare_decimal_point_numbers: false,
        allow_non_finite_numbers: false,
        allow_extended_string_escapes: false,
    };
    let parsed = match jsonc_parser::parse_to_ast(text, &CollectOptions::default(), &strict) {
        Ok(p) => p,
        Err(e) => {
            diag.at(lines.location(e.range().start), "", e.kind().to_string());
            return None;
        }
    };
    let Some(value) = parsed.value else {
        diag.at(Location { line: 1, column: 1 }, "", "the document is empty");
        return None;
    };
    Some(convert(&value, &lines, 0, diag))
}

/// serde_json counts columns in bytes; reports count characters.
fn syntax_location(e: &serde_json::Error, text: &str, lines: &LineIndex<'_>) -> Location {
    let line_start: usize =
        text.split_inclusive('\n').take(e.line().saturating_sub(1)).map(str::len).sum();
    lines.location(line_start + e.column().saturating_sub(1))
}

/// serde_json appends " at line L column C"; the report puts the position in front instead.
fn strip_position(e: &serde_json::Error) -> String {
    let message = e.to_string();
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message,
    }
}

fn convert(value: &Value<'_>, lines: &LineIndex<'_>, depth: usize, diag: &mut Diagnostics) -> Node {
    let loc = lines.location(value.range().start);
    if depth > MAX_DEPTH {
        diag.at(loc, "", format!("nested more than {MAX_DEPTH} levels deep"));
        return Node::new(loc, NodeValue::Null);
    }
    let v = match value {
        Value::NullKeyword(_) => NodeValue::Null,
        Value::BooleanLit(b) => NodeValue::Bool(b.value),
        Value::StringLit(s) => NodeValue::Str(s.value.to_string()),
        Value::NumberLit(n) => number(n.value, loc, diag),
        Value::Array(a) => {
            NodeValue::List(a.elements.iter().map(|e| convert(e, lines, depth + 1, diag)).collect())
        }
        Value::Object(o) => {
            let mut entries: Vec<Entry> = Vec::with_capacity(o.properties.len());
            for prop in &o.properties {
                let (key, key_range) = match &prop.name {
                    ObjectPropName::String(s) => (s.value.to_string(), s.range),
                    ObjectPropName::Word(w) => (w.value.to_owned(), w.range),
                };
                let key_loc = lines.location(key_range.start);
                // serde_json keeps the last of duplicate keys without a word; say so instead.
                if let Some(first) = entries.iter().find(|e| e.key == key) {
                    diag.at(
                        key_loc,
                        "",
                        format!(
                            "duplicate key `{key}` (first at line {}, column {})",
                            first.key_loc.line, first.key_loc.column
                        ),
                    );
                    continue;
                }
                let value = convert(&prop.value, lines, depth + 1, diag);
                entries.push(Entry { key, key_loc, value });
            }
            NodeValue::Map(entries)
        }
    };
    Node::new(loc, v)
}

/// Integers stay integers (64-bit signed, as in TOML and YAML); anything with a fraction or
/// exponent is a float.
fn number(text: &str, loc: Location, diag: &mut Diagnostics) -> NodeValue {
    if text.contains(['.', 'e', 'E']) {
        match text.parse::<f64>() {
            Ok(f) if f.is_finite() => NodeValue::Float(f),
            _ => {
                diag.at(loc, "", format!("number `{text}` is out of range"));
                NodeValue::Null
            }
        }
    } else {
        match text.parse::<i64>() {
            Ok(i) => NodeValue::Int(i),
            Err(_) => {
                diag.at(loc, "", format!("integer `{text}` is out of range (64-bit signed)"));
                NodeValue::Null
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Node, String> {
        let mut diag = Diagnostics::new("t.json");
        let node = read(text, &mut diag);
        match node {
            Some(n) if diag.is_empty() => Ok(n),
            _ => Err(diag.into_errors().to_string()),
        }
    }

    #[test]
    fn keeps_order_positions_and_types() {
        let node = parse("{\"z\": [1, 2.0, 1e3],\n \"a\": {\"é\": null}}").unwrap();
        let entries = node.as_map().unwrap();
        assert_eq!(entries[0].key, "z");
        assert_eq!(entries[1].key_loc, Location { line: 2, column: 2 });
        let z = entries[0].value.as_list().unwrap();
        assert_eq!(z[0].value, NodeValue::Int(1));
        assert_eq!(z[1].value, NodeValue::Float(2.0));
        assert_eq!(z[2].value, NodeValue::Float(1000.0));
    }

    #[test]
    fn errors_are_located_in_characters() {
        assert_eq!(parse("{\"é\": [1,]}").unwrap_err(), "t.json:1:10: expected value");
        assert_eq!(
            parse("{\"a\": 1, \"a\": 2}").unwrap_err(),
            "t.json:1:10: duplicate key `a` (first at line 1, column 2)"
        );
        assert!(parse("").unwrap_err().starts_with("t.json:1:1: "));
        assert!(parse("{\"a\": 18446744073709551615}").unwrap_err().contains("out of range"));
        assert!(parse(&"[".repeat(100_000)).is_err());
    }
}
