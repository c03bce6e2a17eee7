//! `wax manifest check` (and `wax submit`, `wax run`, which check the same way before anything
//! runs) reads every stage config with the worker's own types: an unknown model, algorithm or
//! field is a located error `file:line:column: field: message`, at check time.

use wax_tests::{wax, wax_timeout};

/// Writes `body` (after a `[sweep]` header) to a file and checks it; returns stderr, asserting
/// the check failed.
fn rejected(body: &str) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, format!("[sweep]\nname = \"bad\"\n{body}")).unwrap();
    let out = wax(&["manifest", "check", path.to_str().unwrap()]);
    assert!(!out.status.success(), "accepted:\n{body}\n{}", String::from_utf8_lossy(&out.stdout));
    (String::from_utf8_lossy(&out.stderr).into_owned(), path.display().to_string())
}

#[test]
fn an_unknown_model_reference_is_located() {
    let (e, file) = rejected("[base]\nmodel = { ref = \"builtin:tiny\" }\n");
    assert!(e.contains(&format!("{file}:4:17: base.model.ref: ")), "{e}");
    assert!(
        e.contains("unknown builtin model size `tiny`") && e.contains("1m, 6m, 25m, 100m"),
        "{e}"
    );
    let (e, file) = rejected("[base]\nmodel = { ref = \"/models/Qwen3-4B\" }\n");
    assert!(e.contains(&format!("{file}:4:17: base.model.ref: ")), "{e}");
    assert!(e.contains("unknown model reference") && e.contains("hf-dir:"), "{e}");
    let (e, file) = rejected("[axes]\nmodel = [\"builtin:1m\", \"builtin:2m\"]\n");
    assert!(
        e.contains(&format!("{file}:4:")) && e.contains("axes.model.ref") && e.contains("trial 1"),
        "{e}"
    );
}

#[test]
fn an_unknown_algorithm_is_located() {
    let (e, file) = rejected("[base]\nrl = { algorithm = \"dpo\" }\n");
    assert!(e.contains(&format!("{file}:4:")) && e.contains("base.rl.algorithm"), "{e}");
    assert!(e.contains("unknown variant `dpo`") && e.contains("dr-grpo"), "{e}");
    let (e, file) = rejected("[axes]\nalgorithm = [\"dr-grpo\", \"ppo2\"]\n");
    assert!(e.contains(&format!("{file}:4:")) && e.contains("axes.rl.algorithm"), "{e}");
    assert!(e.contains("trial 1") && e.contains("`ppo2`"), "{e}");
}

#[test]
fn an_unknown_or_bad_field_is_located() {
    let (e, file) = rejected("[base]\nrl = { steps = 10, learning_rate = 1e-3 }\n");
    assert!(e.contains(&format!("{file}:4:36: base.rl.learning_rate: ")), "{e}");
    assert!(e.contains("unknown field `learning_rate`") && e.contains("`lr`"), "{e}");
    assert!(!e.contains("`device`"), "refused fields are not offered: {e}");
    let (e, file) = rejected("[base]\nextract = { per_class = 10 }\n");
    assert!(
        e.contains(&format!("{file}:4:"))
            && e.contains("base.extract.per_class")
            && e.contains("`synthetic`"),
        "{e}"
    );
    let (e, _) = rejected("[base]\nrl = { temperature = 0.0 }\n");
    assert!(e.contains("base.rl.temperature") && e.contains("must be > 0"), "{e}");
    let (e, _) = rejected("[base]\nrl = { device = \"cuda\" }\n");
    assert!(e.contains("base.rl.device") && e.contains("chosen by the worker"), "{e}");
    let (e, _) = rejected("[base]\nenv = { wind_probability = 2.0 }\n");
    assert!(e.contains("base.env.wind_probability") && e.contains("[0, 1]"), "{e}");
    let (e, _) = rejected("[base]\nevaluate = { suites = [\"geometry\", \"vibes\"] }\n");
    assert!(e.contains("base.evaluate.suites") && e.contains("unknown suite"), "{e}");
    // A pretraining step that the pretrain stage never saves.
    let (e, _) = rejected("[base]\npretrain = { steps = 20, save_at = [10] }\ncheckpoint = 15\n");
    assert!(e.contains("checkpoint") && e.contains("save_at"), "{e}");
}

#[test]
fn the_examples_pass_and_submit_checks_before_connecting() {
    for example in ["quickstart.toml", "paper-grid.toml", "scheduler-test.toml"] {
        let path = wax_tests::workspace_root().join("examples").join(example);
        let out = wax(&["manifest", "check", path.to_str().unwrap()]);
        assert!(out.status.success(), "{example}: {}", String::from_utf8_lossy(&out.stderr));
    }
    // The error is the manifest's, found here: no coordinator is contacted.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[sweep]\nname = \"x\"\n[base]\nrl = { lr = \"fast\" }\n").unwrap();
    let out = wax_timeout(
        &["submit", path.to_str().unwrap(), "--coordinator", "http://127.0.0.1:1"],
        &[("WAX_TOKEN", "t")],
        std::time::Duration::from_secs(30),
    );
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && e.contains("base.rl.lr") && !e.contains("127.0.0.1:1"), "{e}");
    // `wax run` also requires local snapshots to exist here.
    std::fs::write(
        &path,
        "[sweep]\nname = \"x\"\n[base]\nmodel = { ref = \"hf-dir:/nonexistent/snapshot\" }\n",
    )
    .unwrap();
    let out = wax_timeout(
        &["run", path.to_str().unwrap(), "--state", dir.path().join("s").to_str().unwrap()],
        &[],
        std::time::Duration::from_secs(60),
    );
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && e.contains("base.model.ref") && e.contains("no such directory"),
        "{e}"
    );
}
