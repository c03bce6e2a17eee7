//! Canonical JSON and content hashes.
//!
//! A stage's id is the SHA-256 of the canonical JSON of its identity. Canonical means: object
//! keys sorted (byte order) at every level, no whitespace, numbers as serde_json prints them
//! (shortest round-trip form). The ordering is done here rather than left to `serde_json::Map`,
//! whose order depends on a crate feature that any dependency may switch on.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Writes `value` as canonical JSON.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// Lower-case hex SHA-256 of `value`'s canonical JSON.
pub fn content_hash(value: &Value) -> String {
    hex::encode(Sha256::digest(canonical_json(value).as_bytes()))
}

/// `overlay` merged onto `base`: objects merge key by key (recursively); anything else in
/// `overlay` replaces what `base` has.
pub fn deep_merge(base: &Value, overlay: &Value) -> Value {
    match (base, overlay) {
        (Value::Object(b), Value::Object(o)) => {
            let mut merged = b.clone();
            for (k, v) in o {
                let next = match b.get(k) {
                    Some(existing) => deep_merge(existing, v),
                    None => v.clone(),
                };
                merged.insert(k.clone(), next);
            }
            Value::Object(merged)
        }
        (_, o) => o.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_form_sorts_keys_at_every_level() {
        let a = json!({"b": 1, "a": {"y": [2, {"d": 1, "c": 0}], "x": "s"}});
        assert_eq!(canonical_json(&a), r#"{"a":{"x":"s","y":[2,{"c":0,"d":1}]},"b":1}"#);
        let b: Value =
            serde_json::from_str(r#"{"a":{"y":[2,{"c":0,"d":1}],"x":"s"},"b":1}"#).unwrap();
        assert_eq!(content_hash(&a), content_hash(&b));
        assert_ne!(content_hash(&json!({"a": 1})), content_hash(&json!({"a": 1.0})));
        assert_eq!(canonical_json(&json!({"k": "é\"\n"})), r#"{"k":"é\"\n"}"#);
    }

    #[test]
    fn hash_matches_an_independent_sha256() {
        // sha256 of the 2 bytes "{}" (as printed by `printf '{}' | sha256sum`).
        assert_eq!(
            content_hash(&json!({})),
            "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
    }

    #[test]
    fn deep_merge_overrides_leaves_and_keeps_siblings() {
        let base = json!({"rl": {"lr": 1, "lora": {"rank": 32, "alpha": 64}}, "seed": 0});
        let over = json!({"rl": {"lora": {"rank": 8}}, "seed": 3, "new": [1]});
        assert_eq!(
            deep_merge(&base, &over),
            json!({"rl": {"lr": 1, "lora": {"rank": 8, "alpha": 64}}, "seed": 3, "new": [1]})
        );
        assert_eq!(deep_merge(&json!([1, 2]), &json!([3])), json!([3]));
    }
}
