//! `wax train` end to end: a two-step run with a checkpoint, its files and summary, resuming from
//! the checkpoint, and located errors for bad configuration files.

use std::process::Output;

use wax_tests::wax_builtin;

fn run(args: &[&str]) -> Output {
    wax_builtin(args)
}

const TINY: &str = r#"
model = "builtin:1m"
algorithm = "dr-grpo"
steps = 2
mazes_per_step = 1
group_size = 2
checkpoint_at = [1]
[env]
turns = 2
[eval]
mazes = 2
"#;

#[test]
fn trains_checkpoints_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("run.toml");
    std::fs::write(&cfg, TINY).unwrap();
    let out = dir.path().join("out");
    let (c, o) = (cfg.to_str().unwrap(), out.to_str().unwrap());
    let r = run(&["train", c, "--out", o, "--quiet"]);
    let stdout = String::from_utf8_lossy(&r.stdout);
    assert!(r.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&r.stderr));
    assert!(stdout.contains("mean return before"), "{stdout}");
    let lines = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 2);
    for f in ["summary.json", "eval-before.json", "config.toml"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let ck = out.join("step-1");
    for f in [
        "model/config.json",
        "model/model.safetensors",
        "model/tokenizer.json",
        "adapter/adapter_config.json",
        "optimizer.safetensors",
        "state.json",
        "eval-before.json",
        "metrics.jsonl",
    ] {
        assert!(ck.join(f).is_file(), "step-1/{f} missing");
    }
    let again = dir.path().join("again");
    let r = run(&[
        "train",
        c,
        "--out",
        again.to_str().unwrap(),
        "--resume",
        ck.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    // The checkpoint carries step 1's metrics; step 2 is recomputed.
    let lines = std::fs::read_to_string(again.join("metrics.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 2, "resumed at step 1 of 2: {lines}");
    let original = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert_eq!(lines.lines().next(), original.lines().next(), "step 1 is carried verbatim");
    assert!(lines.lines().nth(1).unwrap().contains("\"step\":2"), "{lines}");
    // The resumed run compares against the original run's untrained evaluation.
    let before = |d: &std::path::Path| std::fs::read_to_string(d.join("eval-before.json")).unwrap();
    assert_eq!(before(&again), before(&out));
}

#[test]
fn bad_configurations_name_the_place() {
    let dir = tempfile::tempdir().unwrap();
    for (text, want) in [
        ("steps = 2\nlearning_rate = 0.1\n", "run.toml:2:1"),
        ("algorithm = \"dpo\"\n", "run.toml:1:"),
        ("[env]\nturns = 0\n", "turns"),
        ("clip_eps = 1.5\n", "clip_eps"),
    ] {
        let cfg = dir.path().join("run.toml");
        std::fs::write(&cfg, text).unwrap();
        let r =
            run(&["train", cfg.to_str().unwrap(), "--out", dir.path().join("o").to_str().unwrap()]);
        assert!(!r.status.success());
        let stderr = String::from_utf8_lossy(&r.stderr);
        assert!(stderr.contains(want), "{text:?}: {stderr}");
    }
    let r = run(&["train", "/nonexistent/run.toml"]);
    assert!(String::from_utf8_lossy(&r.stderr).contains("/nonexistent/run.toml"));
}
