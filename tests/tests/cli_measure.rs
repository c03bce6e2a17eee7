//! `wax extract` and `wax eval` end to end through the binary: a builtin model's vectors, the
//! printed summary, a geometry and a small steering run, and located errors for bad settings.

use wax_tests::wax_builtin;

const EXTRACT: &str = r#"
heldout_fraction = 0.25
chunk = 32
blocks = 3
[synthetic]
per_class = 12
max_len = 4
"#;

const EVAL: &str = r#"
device = "cpu"
resamples = 20
null_draws = 20
[steering]
alphas = [-2.0, 2.0]
evals = ["sentiment"]
conditions = ["naive-v", "naive-u"]
sentiment_prompts = 2
sentiment_samples = 1
max_new_tokens = 6
resamples = 20
[judge]
kind = "offline"
"#;

#[test]
fn extracts_and_evaluates_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let ecfg = dir.path().join("extract.toml");
    std::fs::write(&ecfg, EXTRACT).unwrap();
    let out = dir.path().join("x");
    let o = out.to_str().unwrap();
    let r = wax_builtin(&[
        "extract",
        "--model",
        "builtin:1m",
        "--naive",
        "builtin:1m",
        "--config",
        ecfg.to_str().unwrap(),
        "--out",
        o,
        "--device",
        "cpu",
        "--resamples",
        "20",
        "--quiet",
    ]);
    let stdout = String::from_utf8_lossy(&r.stdout);
    assert!(r.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&r.stderr));
    assert!(
        stdout.contains("cos min") && stdout.contains("trained") && stdout.contains("naive"),
        "{stdout}"
    );
    for f in [
        "trained/vectors.safetensors",
        "trained/layers.jsonl",
        "trained/geometry.json",
        "naive/extraction.json",
        "summary.json",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let vcfg = dir.path().join("eval.toml");
    std::fs::write(&vcfg, EVAL).unwrap();
    let r = wax_builtin(&[
        "eval",
        "steering",
        "--vectors",
        o,
        "--config",
        vcfg.to_str().unwrap(),
        "--quiet",
    ]);
    let stdout = String::from_utf8_lossy(&r.stdout);
    assert!(r.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&r.stderr));
    let samples = std::fs::read_to_string(out.join("eval/steering/samples.jsonl")).unwrap();
    // 2 conditions × 2 concepts × 2 α × 2 prompts × 1 sample.
    assert_eq!(samples.lines().count(), 16);
    let r = wax_builtin(&["eval", "geometry", "--vectors", o, "--quiet"]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(out.join("eval/geometry_layers.jsonl").is_file());
}

#[test]
fn bad_settings_and_suites_are_located_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[steering]\nalphas = [1.0]\nsampels = 3\n").unwrap();
    let r = wax_builtin(&[
        "eval",
        "steering",
        "--vectors",
        dir.path().to_str().unwrap(),
        "--config",
        bad.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success());
    assert!(err.contains("bad.toml:3:1") && err.contains("sampels"), "{err}");
    let r = wax_builtin(&["eval", "vibes", "--vectors", dir.path().to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&r.stderr).contains("unknown suite `vibes`"));
    let r = wax_builtin(&[
        "eval",
        "geometry",
        "--vectors",
        dir.path().join("nowhere").to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("extraction.json") && err.contains("not an extraction folder"), "{err}");
    let ecfg = dir.path().join("e.toml");
    std::fs::write(&ecfg, "heldout_fraction = 1.5\n").unwrap();
    let r = wax_builtin(&[
        "extract",
        "--model",
        "builtin:1m",
        "--config",
        ecfg.to_str().unwrap(),
        "--naive",
        "none",
        "--out",
        dir.path().join("o").to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("heldout_fraction"), "{err}");
}
