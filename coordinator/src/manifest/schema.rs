//! The JSON Schema of the manifest as users write it. Written out by hand rather than derived:
//! the written form (aliases, `seeds` shorthand, sizes with units, equal-length zip lists)
//! differs from the validated [`Manifest`](super::Manifest), and the constraints are the point.
//! Keys, enums and bounds come from the same constants the validator uses.

use super::model::ALIASES;
use super::units::SIZE_PATTERN;
use super::validate::{DEFAULT_MAX_TRIALS, MAX_SEEDS, PIPELINES};
use serde_json::{Value, json};

/// A JSON Schema (draft 2020-12) of a sweep manifest document (TOML, YAML or JSON alike).
/// Some rules need more than a schema can say and are checked only by [`parse`](super::parse):
/// equal lengths within a zip group, a path varied in one place only, exclude entries that can
/// match, and the trial count.
pub fn json_schema() -> Value {
    let kinds: Vec<&str> = wax_proto::catalog::STAGE_KINDS.iter().map(|k| k.kind).collect();
    let aliases: Vec<String> = ALIASES.iter().map(|(a, p)| format!("`{a}` = `{p}`")).collect();
    let path_doc = format!(
        "A dotted path into the trial config (`rl.learning_rate`) or an alias: {}.",
        aliases.join(", ")
    );
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "wax sweep manifest",
        "description": "A base experiment plus the axes it is swept over.",
        "type": "object",
        "additionalProperties": false,
        "required": ["sweep"],
        "properties": {
            "sweep": {
                "type": "object",
                "additionalProperties": false,
                "required": ["name"],
                "properties": {
                    "name": { "type": "string", "minLength": 1, "pattern": "\\S" },
                    "description": { "type": "string", "default": "" },
                    "cache_version": {
                        "description": "Part of every stage id: bump it to recompute everything.",
                        "type": "integer", "minimum": 1, "maximum": u32::MAX, "default": 1
                    },
                    "priority": {
                        "description": "Higher-priority sweeps' stages are leased first.",
                        "type": "integer", "minimum": i32::MIN, "maximum": i32::MAX, "default": 0
                    },
                    "pipeline": { "enum": PIPELINES, "default": "paper" },
                    "seeds": {
                        "description": "The axis `seed`: N means seeds 0..N, or list the seeds.",
                        "oneOf": [
                            { "type": "integer", "minimum": 1, "maximum": MAX_SEEDS },
                            {
                                "type": "array", "minItems": 1, "uniqueItems": true,
                                "items": { "type": "integer", "minimum": 0 }
                            }
                        ]
                    }
                }
            },
            "limits": {
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "max_trials": {
                        "type": "integer", "minimum": 1, "maximum": u32::MAX,
                        "default": DEFAULT_MAX_TRIALS
                    },
                    "max_concurrent": {
                        "description": "Most stages of this sweep leased at once; 0 = unlimited.",
                        "type": "integer", "minimum": 0, "maximum": u32::MAX, "default": 0
                    }
                }
            },
            "resources": {
                "description": "Resource overrides per stage kind.",
                "type": "object",
                "propertyNames": { "enum": kinds },
                "additionalProperties": { "$ref": "#/$defs/resources" }
            },
            "base": {
                "description": "The base trial: sections per stage kind, free-form.",
                "type": "object",
                "propertyNames": { "$ref": "#/$defs/base_key" },
                "additionalProperties": { "$ref": "#/$defs/base_value" }
            },
            "axes": {
                "description": "Cartesian axes in declaration order (the last varies fastest).",
                "type": "object",
                "propertyNames": { "$ref": "#/$defs/path" },
                "additionalProperties": {
                    "type": "array", "minItems": 1, "uniqueItems": true
                }
            },
            "zip": {
                "description": "Groups of lists that vary together; within a group all lists \
                                have the same length.",
                "type": "array",
                "items": {
                    "type": "object",
                    "minProperties": 1,
                    "propertyNames": { "$ref": "#/$defs/path" },
                    "additionalProperties": { "type": "array", "minItems": 1 }
                }
            },
            "include": {
                "description": "Extra trials: each entry's overrides on top of base.",
                "type": "array",
                "items": {
                    "type": "object",
                    "propertyNames": { "$ref": "#/$defs/path" }
                }
            },
            "exclude": {
                "description": "Trials whose parameters equal every path → value of an entry \
                                are dropped. Paths must be varied by axes or zip.",
                "type": "array",
                "items": {
                    "type": "object",
                    "minProperties": 1,
                    "propertyNames": { "$ref": "#/$defs/path" }
                }
            }
        },
        "$defs": {
            "path": {
                "description": path_doc,
                "type": "string",
                "pattern": "^[^.]+(\\.[^.]+)*$"
            },
            "base_key": { "type": "string", "pattern": "^[^.]+$" },
            "base_value": {
                "if": { "type": "object" },
                "then": {
                    "propertyNames": { "$ref": "#/$defs/base_key" },
                    "additionalProperties": { "$ref": "#/$defs/base_value" }
                }
            },
            "size": {
                "description": "Bytes, or a string with a unit: \"40GiB\", \"512 MB\".",
                "oneOf": [
                    { "type": "integer", "minimum": 0 },
                    { "type": "string", "pattern": SIZE_PATTERN }
                ]
            },
            "resources": {
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "gpus": { "type": "integer", "minimum": 0, "maximum": u32::MAX },
                    "gpu_memory": { "$ref": "#/$defs/size" },
                    "memory": { "$ref": "#/$defs/size" },
                    "cpu": {
                        "description": "Cores; fractions allowed, to a thousandth.",
                        "type": "number", "minimum": 0.001
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::validate::{LIMIT_FIELDS, RESOURCE_FIELDS, SECTIONS, SWEEP_FIELDS};

    fn keys(v: &Value) -> Vec<&str> {
        let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        k.sort_unstable();
        k
    }

    fn sorted<'a>(s: &[&'a str]) -> Vec<&'a str> {
        let mut v = s.to_vec();
        v.sort_unstable();
        v
    }

    #[test]
    fn schema_names_exactly_the_fields_the_validator_accepts() {
        let s = json_schema();
        let p = &s["properties"];
        assert_eq!(keys(p), sorted(SECTIONS));
        assert_eq!(keys(&p["sweep"]["properties"]), sorted(SWEEP_FIELDS));
        assert_eq!(keys(&p["limits"]["properties"]), sorted(LIMIT_FIELDS));
        assert_eq!(keys(&s["$defs"]["resources"]["properties"]), sorted(RESOURCE_FIELDS));
        assert_eq!(s["$schema"], "https://json-schema.org/draft/2020-12/schema");
    }

    #[test]
    fn every_reference_resolves() {
        fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
            match v {
                Value::Object(m) => {
                    if let Some(Value::String(r)) = m.get("$ref") {
                        out.push(r);
                    }
                    m.values().for_each(|v| refs(v, out));
                }
                Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
                _ => {}
            }
        }
        let s = json_schema();
        let mut out = Vec::new();
        refs(&s, &mut out);
        assert!(!out.is_empty());
        for r in out {
            let pointer = r.strip_prefix('#').unwrap();
            assert!(s.pointer(pointer).is_some(), "{r} does not resolve");
        }
    }
}
