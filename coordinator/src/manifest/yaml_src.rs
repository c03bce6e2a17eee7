//! YAML → [`Node`], built straight from `saphyr-parser`'s events so that every node keeps its
//! span, keys keep the text the user wrote, nesting depth and alias expansion stay bounded,
//! and duplicate keys are reported like any other located error. Scalars are resolved with
//! saphyr's YAML 1.2 core schema.

use super::model::Location;
use super::node::{Diagnostics, Entry, MAX_DEPTH, Node, NodeValue};
use saphyr::Scalar;
use saphyr_parser::{Event, Parser, ScalarStyle, Span, Tag};
use std::borrow::Cow;
use std::collections::HashMap;

/// Most nodes that aliases may copy in, so `&a [*b, *b, …]` chains cannot blow up memory.
const ALIAS_BUDGET: usize = 10_000;

/// The document as a tree, or `None` after a syntax error (already reported).
pub(crate) fn read(text: &str, diag: &mut Diagnostics) -> Option<Node> {
    let mut b = Builder {
        stack: Vec::new(),
        anchors: HashMap::new(),
        alias_budget: ALIAS_BUDGET,
        root: None,
    };
    for event in Parser::new_from_str(text) {
        match event {
            Ok((event, span)) => {
                if let Err((loc, message)) = b.event(event, span, diag) {
                    diag.at(loc, "", message);
                    return None;
                }
            }
            Err(e) => {
                let loc = Location { line: e.marker().line().max(1), column: e.marker().col() + 1 };
                diag.at(loc, "", e.info());
                return None;
            }
        }
    }
    // An empty document (or one of comments only) is an empty manifest.
    Some(
        b.root
            .unwrap_or_else(|| Node::new(Location { line: 1, column: 1 }, NodeValue::Map(vec![]))),
    )
}

fn location(span: Span) -> Location {
    Location { line: span.start.line().max(1), column: span.start.col() + 1 }
}

enum Frame {
    List {
        loc: Location,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        loc: Location,
        anchor: usize,
        entries: Vec<Entry>,
        /// The key read, waiting for its value; `None` in the key as well means the key was
        /// unusable (already reported) and its value is dropped.
        key: Option<Option<(String, Location)>>,
    },
}

struct Builder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    alias_budget: usize,
    root: Option<Node>,
}

type Fatal = (Location, String);

impl Builder {
    fn event(&mut self, event: Event<'_>, span: Span, diag: &mut Diagnostics) -> Result<(), Fatal> {
        let loc = location(span);
        match event {
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart(_)
            | Event::DocumentEnd => Ok(()),
            Event::SequenceStart(anchor, _) => {
                self.open(Frame::List { loc, anchor, items: Vec::new() }, loc)
            }
            Event::MappingStart(anchor, _) => {
                self.open(Frame::Map { loc, anchor, entries: Vec::new(), key: None }, loc)
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(frame) = self.stack.pop() else {
                    return Err((loc, "unbalanced end of collection".into()));
                };
                let (node, anchor) = match frame {
                    Frame::List { loc, anchor, items } => {
                        (Node::new(loc, NodeValue::List(items)), anchor)
                    }
                    Frame::Map { loc, anchor, entries, .. } => {
                        (Node::new(loc, NodeValue::Map(entries)), anchor)
                    }
                };
                self.finish(node, anchor, None, diag)
            }
            Event::Scalar(text, style, anchor, tag) => {
                // A key is its text; resolving it would only raise false alarms (`1e999:`).
                let is_key = matches!(self.stack.last(), Some(Frame::Map { key: None, .. }));
                let value = if is_key {
                    NodeValue::Str(text.to_string())
                } else {
                    scalar(text.clone(), style, tag.as_ref(), loc, diag)
                };
                let node = Node::new(loc, value);
                self.finish(node, anchor, Some(text.into_owned()), diag)
            }
            Event::Alias(id) => {
                let Some(node) = self.anchors.get(&id) else {
                    return Err((loc, "alias to an unknown anchor".into()));
                };
                let size = count(node);
                if size > self.alias_budget {
                    return Err((loc, "aliases expand to too many nodes".into()));
                }
                self.alias_budget -= size;
                let mut node = node.clone();
                node.loc = loc;
                let text = match &node.value {
                    NodeValue::Str(s) => Some(s.clone()),
                    _ => None,
                };
                self.finish(node, 0, text, diag)
            }
        }
    }

    fn open(&mut self, frame: Frame, loc: Location) -> Result<(), Fatal> {
        if self.stack.len() >= MAX_DEPTH {
            return Err((loc, format!("nested more than {MAX_DEPTH} levels deep")));
        }
        self.stack.push(frame);
        Ok(())
    }

    /// Places a complete node: as the document, a list item, a key, or a key's value.
    /// `key_text` is the scalar's source text, which is what a key means to the user (`1e-5:`
    /// names the key "1e-5", not a float).
    fn finish(
        &mut self,
        node: Node,
        anchor: usize,
        key_text: Option<String>,
        diag: &mut Diagnostics,
    ) -> Result<(), Fatal> {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => {
                if self.root.is_some() {
                    return Err((
                        node.loc,
                        "a manifest is a single YAML document; found a second one".into(),
                    ));
                }
                self.root = Some(node);
            }
            Some(Frame::List { items, .. }) => items.push(node),
            Some(Frame::Map { entries, key, .. }) => match key.take() {
                None => {
                    let k = match key_text {
                        Some(text) => {
                            if let Some(first) = entries.iter().find(|e| e.key == text) {
                                diag.at(
                                    node.loc,
                                    "",
                                    format!(
                                        "duplicate key `{text}` (first at line {}, column {})",
                                        first.key_loc.line, first.key_loc.column
                                    ),
                                );
                                None
                            } else {
                                Some((text, node.loc))
                            }
                        }
                        None => {
                            diag.at(node.loc, "", "mapping keys must be scalars");
                            None
                        }
                    };
                    *key = Some(k);
                }
                Some(Some((k, key_loc))) => entries.push(Entry { key: k, key_loc, value: node }),
                Some(None) => {}
            },
        }
        Ok(())
    }
}

fn count(node: &Node) -> usize {
    1 + match &node.value {
        NodeValue::List(items) => items.iter().map(count).sum(),
        NodeValue::Map(entries) => entries.iter().map(|e| count(&e.value)).sum(),
        _ => 0,
    }
}

fn scalar(
    text: Cow<'_, str>,
    style: ScalarStyle,
    tag: Option<&Cow<'_, Tag>>,
    loc: Location,
    diag: &mut Diagnostics,
) -> NodeValue {
    let plain = style == ScalarStyle::Plain;
    match Scalar::parse_from_cow_and_metadata(text.clone(), style, tag) {
        None => {
            diag.at(loc, "", format!("`{text}` does not match its tag"));
            NodeValue::Null
        }
        Some(Scalar::Null) => NodeValue::Null,
        Some(Scalar::Boolean(b)) => NodeValue::Bool(b),
        Some(Scalar::Integer(i)) => NodeValue::Int(i),
        Some(Scalar::FloatingPoint(f)) => {
            let f = f.into_inner();
            if plain && looks_integral(&text) {
                // The core schema falls back to float for integers past i64; TOML and JSON
                // refuse those, and silently losing digits would be worse.
                diag.at(loc, "", format!("integer `{text}` is out of range (64-bit signed)"));
                NodeValue::Null
            } else if f.is_finite() {
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
        Some(Scalar::String(s)) => NodeValue::Str(s.into_owned()),
    }
}

fn looks_integral(text: &str) -> bool {
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Node, String> {
        let mut diag = Diagnostics::new("t.yaml");
        let node = read(text, &mut diag);
        match node {
            Some(n) if diag.is_empty() => Ok(n),
            _ => Err(diag.into_errors().to_string()),
        }
    }

    #[test]
    fn keeps_order_positions_and_types() {
        let node = parse("axes:\n  z: [1, 2.5, \"3\", ~]\n  1e-5: yes\n").unwrap();
        let axes = &node.as_map().unwrap()[0].value;
        assert_eq!(axes.loc, Location { line: 2, column: 3 });
        let entries = axes.as_map().unwrap();
        assert_eq!(entries[0].key, "z");
        assert_eq!(entries[1].key, "1e-5");
        // YAML 1.2: `yes` is a string.
        assert_eq!(entries[1].value.value, NodeValue::Str("yes".into()));
        let z = entries[0].value.as_list().unwrap();
        let values: Vec<_> = z.iter().map(|n| n.value.clone()).collect();
        assert_eq!(
            values,
            [NodeValue::Int(1), NodeValue::Float(2.5), NodeValue::Str("3".into()), NodeValue::Null]
        );
        assert_eq!(z[1].loc, Location { line: 2, column: 10 });
    }

    #[test]
    fn anchors_expand_and_duplicates_are_errors() {
        let node = parse("a: &x [1, 2]\nb: *x\n").unwrap();
        let entries = node.as_map().unwrap();
        assert_eq!(entries[0].value.value, entries[1].value.value);
        let err = parse("a: 1\n\"a\": 2\n").unwrap_err();
        assert_eq!(err, "t.yaml:2:1: duplicate key `a` (first at line 1, column 1)");
    }

    #[test]
    fn hostile_input_is_refused() {
        assert!(parse(&format!("{}{}", "[".repeat(10_000), "]".repeat(10_000))).is_err());
        let laughs = "a: &a [1,1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\n\
                      c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\n\
                      e: [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\n";
        assert!(parse(laughs).unwrap_err().contains("too many nodes"));
        assert!(parse("a: 99999999999999999999\n").unwrap_err().contains("out of range"));
        assert!(parse("a: .nan\n").is_err());
        assert!(parse("a: 1\n---\nb: 2\n").unwrap_err().contains("single YAML document"));
    }
}
