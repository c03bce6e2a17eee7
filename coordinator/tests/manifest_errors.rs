//! Located error messages, exactly as users see them, for each format, from the fixtures in
//! tests/fixtures/manifests/.

use std::path::Path;
use wax_coordinator::manifest::{Manifest, ManifestFormat, expand, parse};

fn fixture(name: &str) -> (String, ManifestFormat) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/manifests").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (text, ManifestFormat::guess(name))
}

fn parsed(name: &str) -> Manifest {
    let (text, format) = fixture(name);
    parse(&text, format, name).unwrap_or_else(|e| panic!("{e}"))
}

/// Parse errors, or else expansion errors, one string per error.
fn errors(name: &str) -> Vec<String> {
    let (text, format) = fixture(name);
    match parse(&text, format, name).and_then(|m| expand(&m).map(|_| ())) {
        Ok(()) => Vec::new(),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

fn check(name: &str, expected: &[&str]) {
    assert_eq!(errors(name), expected, "{name}");
}

/// The wording is the same in every format; only the positions differ.
const INVALID: &[&str] = &[
    "axis: unknown key `axis`; did you mean `axes`?",
    "include: expected a list, found a string",
    "sweep.name: missing; every sweep needs a name",
    "sweep.priority: expected an integer, found a string",
    "sweep.pipeline: unknown pipeline `single_stage`; did you mean `single-stage`?",
    "sweep.seeds: must be at least 1, found 0",
    "limits.max_concurrent: must be at least 0, found -1",
    "limits.max_trails: unknown key `max_trails`; did you mean `max_trials`?",
    "resources.rll: unknown stage kind `rll`; did you mean `rl`?",
    "resources.rll.gpus: must be at least 0, found -1",
    "resources.rl.memory: expected a size like \"40GiB\" or \"512 MB\" (units: B, KB, MB, GB, \
     KiB, MiB, GiB, TiB), found \"12 gb\"",
    "resources.rl.cpu: expected a number of cores > 0, found 0",
    "base.rl.steps: keys in base must be non-empty and contain no `.`; nest tables instead",
    "axes.env.mapping[1]: repeats the value \"office\" of axes.env.mapping[0]",
    "axes.env.mapping: `env.mapping` is already varied by axes.env.mapping (as `mapping`, {L})\
     ; a path may vary in one place only",
    "axes.rl.learning_rate: must list at least one value",
    "zip[0].rl.entropy_coef: has 1 values but zip[0].rl.algorithm has 2; the lists of a zip \
     group must have equal lengths",
    "zip[1].rl.learning_rate: `rl.learning_rate` is already varied by axes.rl.learning_rate \
     ({L}); a path may vary in one place only",
    "exclude[0].steps: `steps` is not varied by axes or zip, so this entry could never match",
];

/// `INVALID` with each error's position in `file`, and the position each `{L}` refers to.
fn invalid(file: &str, at: &[(u32, u32)], refs: &[(u32, u32)]) -> Vec<String> {
    assert_eq!(at.len(), INVALID.len());
    let mut refs = refs.iter();
    INVALID
        .iter()
        .zip(at)
        .map(|(message, (line, column))| {
            let message = if message.contains("{L}") {
                let (l, c) = refs.next().expect("a position for each {L}");
                message.replace("{L}", &format!("line {l}, column {c}"))
            } else {
                (*message).to_owned()
            };
            format!("{file}:{line}:{column}: {message}")
        })
        .collect()
}

#[test]
fn every_validation_error_in_toml() {
    let at = [
        (2, 1),
        (3, 11),
        (5, 1),
        (7, 12),
        (8, 12),
        (9, 9),
        (12, 18),
        (13, 1),
        (15, 12),
        (16, 8),
        (19, 10),
        (20, 7),
        (23, 1),
        (26, 22),
        (27, 1),
        (28, 22),
        (32, 21),
        (35, 1),
        (38, 9),
    ];
    let want = invalid("invalid.toml", &at, &[(26, 1), (28, 1)]);
    check("invalid.toml", &want.iter().map(String::as_str).collect::<Vec<_>>());
}

#[test]
fn every_validation_error_in_yaml() {
    let at = [
        (2, 1),
        (3, 10),
        (6, 3),
        (7, 13),
        (8, 13),
        (9, 10),
        (12, 19),
        (13, 3),
        (16, 3),
        (17, 11),
        (19, 13),
        (20, 10),
        (23, 3),
        (26, 21),
        (27, 3),
        (28, 21),
        (32, 22),
        (33, 5),
        (36, 12),
    ];
    let want = invalid("invalid.yaml", &at, &[(26, 3), (28, 3)]);
    check("invalid.yaml", &want.iter().map(String::as_str).collect::<Vec<_>>());
}

#[test]
fn every_validation_error_in_json() {
    let at = [
        (2, 3),
        (3, 14),
        (4, 12),
        (6, 17),
        (7, 17),
        (8, 14),
        (11, 23),
        (12, 5),
        (15, 5),
        (15, 22),
        (16, 23),
        (16, 39),
        (18, 13),
        (20, 27),
        (21, 5),
        (22, 25),
        (25, 59),
        (26, 7),
        (28, 26),
    ];
    let want = invalid("invalid.json", &at, &[(20, 5), (22, 5)]);
    check("invalid.json", &want.iter().map(String::as_str).collect::<Vec<_>>());
}

#[test]
fn syntax_errors_carry_the_parsers_position() {
    check("syntax.toml", &["syntax.toml:2:21: invalid basic string, expected `\"`"]);
    check("syntax.yaml", &["syntax.yaml:3:1: while parsing a flow sequence, expected ',' or ']'"]);
    check("syntax.json", &["syntax.json:2:27: key must be a string"]);
}

#[test]
fn includes_that_repeat_a_trial() {
    let repeat = "this include is identical to trial 3, rl.learning_rate = 0.00003, seed = 1";
    let again = "this include is identical to include[0]";
    check(
        "expand.toml",
        &[
            &format!("expand.toml:11:1: include[1]: {repeat}"),
            &format!("expand.toml:15:1: include[2]: {again}"),
        ],
    );
    check(
        "expand.yaml",
        &[
            &format!("expand.yaml:8:5: include[1]: {repeat}"),
            &format!("expand.yaml:10:5: include[2]: {again}"),
        ],
    );
    check(
        "expand.json",
        &[
            &format!("expand.json:4:30: include[1]: {repeat}"),
            &format!("expand.json:4:71: include[2]: {again}"),
        ],
    );
}

#[test]
fn paths_through_non_tables_of_base() {
    let rl = |at: &str| {
        format!(
            "axes.rl.learning_rate: cannot set `rl.learning_rate`: base.rl ({at}) is a string, \
             not a table"
        )
    };
    let lora = |at: &str| {
        format!(
            "include[0].model.lora.rank: cannot set `model.lora.rank`: base.model.lora ({at}) is \
             a list, not a table"
        )
    };
    check(
        "conflict.toml",
        &[
            &format!("conflict.toml:9:22: {}", rl("line 5, column 6")),
            &format!("conflict.toml:12:21: {}", lora("line 6, column 40")),
        ],
    );
    check(
        "conflict.yaml",
        &[
            &format!("conflict.yaml:7:21: {}", rl("line 4, column 7")),
            &format!("conflict.yaml:9:22: {}", lora("line 5, column 39")),
        ],
    );
    check(
        "conflict.json",
        &[
            &format!("conflict.json:4:33: {}", rl("line 3, column 19")),
            &format!("conflict.json:5:36: {}", lora("line 3, column 72")),
        ],
    );
}

#[test]
fn too_many_trials_points_at_the_limit() {
    let m =
        "limits.max_trials: the manifest expands to 12 trials, more than limits.max_trials = 10";
    check("too_many.toml", &[&format!("too_many.toml:6:14: {m}")]);
    check("too_many.yaml", &[&format!("too_many.yaml:2:23: {m}")]);
    check("too_many.json", &[&format!("too_many.json:3:29: {m}")]);
}

#[test]
fn the_valid_fixture_means_the_same_in_every_format() {
    let toml = parsed("valid.toml");
    assert_eq!(toml.sweep.pipeline, wax_coordinator::manifest::Pipeline::SingleStage);
    assert_eq!(toml.base["started"], "1979-05-27T07:32:00Z");
    assert_eq!(toml.resources["sleep"].memory_bytes, Some(512 << 20));
    for name in ["valid.yaml", "valid.json"] {
        let mut other = parsed(name);
        assert_eq!(other.locations.source, name);
        other.locations = toml.locations.clone();
        assert_eq!(other, toml, "{name}");
    }
    let trials = expand(&toml).unwrap();
    // 2 mappings × 2 ranks × 2 seeds × 2 zipped, less 4 excluded, plus 1 included.
    assert_eq!(trials.len(), 13);
    assert_eq!(trials[0].config["rl"]["lora"], serde_json::json!({ "rank": 8, "alpha": 64 }));
    assert_eq!(trials[12].config["sleep"], serde_json::json!({ "ms": 1, "files": 1 }));
}
