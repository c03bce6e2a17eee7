//! `wax model …` end to end on the smallest builtin model: inspect, seeded generation,
//! steering, and clear errors for bad `--steer` arguments.
//!
//! The builtin tokenizer and model are cached in `target/wax-builtin-cache/` (shared with the
//! worker's builtin model tests); the first run trains the tokenizer.

use std::path::Path;
use std::process::Output;

use wax_tests::wax_builtin;

fn run(args: &[&str]) -> Output {
    wax_builtin(args)
}

fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "wax {args:?} failed\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

fn err(args: &[&str]) -> String {
    let out = run(args);
    assert!(!out.status.success(), "wax {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A safetensors file of float32 vectors (written by hand: this crate has no libtorch).
fn write_vectors(path: &Path, vectors: &[(&str, Vec<f32>)]) {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (name, v) in vectors {
        let start = data.len();
        for x in v {
            data.extend_from_slice(&x.to_le_bytes());
        }
        header.insert(
            (*name).to_string(),
            serde_json::json!({"dtype": "F32", "shape": [v.len()], "data_offsets": [start, data.len()]}),
        );
    }
    let mut h = serde_json::Value::Object(header).to_string().into_bytes();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut bytes = (h.len() as u64).to_le_bytes().to_vec();
    bytes.extend(h);
    bytes.extend(data);
    std::fs::write(path, bytes).unwrap();
}

fn generate(extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "model",
        "generate",
        "builtin:1m",
        "--prompt",
        "Where do you move?",
        "--max-new-tokens",
        "12",
        "--output",
        "json",
    ];
    args.extend_from_slice(extra);
    serde_json::from_str(&ok(&args)).expect("JSON output")
}

#[test]
fn inspect_prints_family_and_parameter_count() {
    let text = ok(&["model", "inspect", "builtin:1m"]);
    assert!(text.contains("qwen3"), "{text}");
    assert!(text.contains("1115520"), "{text}");
    assert!(text.contains("<|im_start|>assistant"), "chat preview missing:\n{text}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["model", "inspect", "builtin:1m", "--output", "json"])).unwrap();
    assert_eq!(json["parameters"], 1_115_520);
    assert_eq!(json["layers"], 4);
    assert_eq!(json["tied_embeddings"], true);
    let e = err(&["model", "inspect", "builtin:7m"]);
    assert!(e.contains("1m, 6m, 25m, 100m"), "{e}");
}

#[test]
fn generation_is_deterministic_for_a_seed() {
    let a = generate(&["--seed", "3"]);
    let b = generate(&["--seed", "3"]);
    let c = generate(&["--seed", "4"]);
    assert_eq!(a, b);
    assert!(!a["tokens"].as_array().unwrap().is_empty());
    assert_ne!(a["tokens"], c["tokens"]);
    let text = ok(&[
        "model",
        "generate",
        "builtin:1m",
        "--prompt",
        "Hello",
        "--seed",
        "3",
        "--max-new-tokens",
        "5",
    ]);
    assert!(!text.trim().is_empty());
}

#[test]
fn steering_with_zero_alpha_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let one = dir.path().join("one.safetensors");
    let v: Vec<f32> = (0..128).map(|i| if i % 2 == 0 { 1.0 } else { -1.0 }).collect();
    write_vectors(&one, &[("welfare", v.clone())]);
    let plain = generate(&["--chat", "--seed", "7"]);
    let zero = generate(&["--chat", "--seed", "7", "--steer", &format!("{}:2:0", one.display())]);
    assert_eq!(plain["tokens"], zero["tokens"]);
    let strong =
        generate(&["--chat", "--seed", "7", "--steer", &format!("{}:2:50", one.display())]);
    assert_ne!(plain["tokens"], strong["tokens"]);
    // Several vectors: --steer-key picks one, and without it the error lists them.
    let two = dir.path().join("two.safetensors");
    write_vectors(&two, &[("a", v.clone()), ("b", v)]);
    let spec = format!("{}:1:0", two.display());
    let keyed = generate(&["--chat", "--seed", "7", "--steer", &spec, "--steer-key", "b"]);
    assert_eq!(plain["tokens"], keyed["tokens"]);
    let e = err(&["model", "generate", "builtin:1m", "--prompt", "x", "--steer", &spec]);
    assert!(e.contains("--steer-key") && e.contains("a, b"), "{e}");
}

#[test]
fn bad_steer_arguments_are_clear_errors() {
    let base = ["model", "generate", "builtin:1m", "--prompt", "x", "--steer"];
    let with = |spec: &str| {
        let mut a = base.to_vec();
        a.push(spec);
        err(&a)
    };
    let e = with("vectors.safetensors:2");
    assert!(e.contains("<vectors.safetensors>:<layer>:<alpha>"), "{e}");
    let e = with("vectors.safetensors:two:1");
    assert!(e.contains("layer `two`"), "{e}");
    let e = with("/nonexistent/v.safetensors:1:1");
    assert!(e.contains("/nonexistent/v.safetensors") && e.contains("no such file"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("v.safetensors");
    write_vectors(&f, &[("v", vec![0.5; 128])]);
    let e = with(&format!("{}:9:1", f.display()));
    assert!(e.contains("layer 9") && e.contains("4 layers"), "{e}");
    write_vectors(&f, &[("v", vec![0.5; 64])]);
    let e = with(&format!("{}:1:1", f.display()));
    assert!(e.contains("[64]") && e.contains("[128]"), "{e}");
}

/// `wax model forward` keeps what transformers computes on the same snapshot and tokens:
/// logits, the embeddings, every block output and the final norm (≤ 1e-4, float32).
#[test]
fn forward_saves_the_activations_transformers_computes() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cache.safetensors");
    let file_s = file.display().to_string();
    let json: serde_json::Value = serde_json::from_str(&ok(&[
        "model",
        "forward",
        "builtin:1m",
        "--prompt",
        "You stand in a maze. Where do you move?",
        "--chat",
        "--sites",
        "resid_post,mlp_out",
        "--out",
        &file_s,
        "--output",
        "json",
    ]))
    .unwrap();
    let names: Vec<&str> =
        json["tensors"].as_array().unwrap().iter().map(|t| t[0].as_str().unwrap()).collect();
    assert_eq!(names.len(), 2 + 2 * 4 + 1, "{names:?}");
    assert!(names.contains(&"mlp_out.3") && names.contains(&"resid_post.0"), "{names:?}");
    assert_eq!(json["next"].as_array().unwrap().len(), 5);
    let info: serde_json::Value =
        serde_json::from_str(&ok(&["model", "inspect", "builtin:1m", "--output", "json"])).unwrap();
    let snapshot = info["dir"].as_str().unwrap();
    let out = std::process::Command::new(wax_tests::python())
        .arg(wax_tests::workspace_root().join("scripts/fixtures/forward_reference.py"))
        .args([snapshot, &file_s])
        .output()
        .expect("run the project's Python (make bootstrap)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let diffs = r["max_abs_diff"].as_object().unwrap();
    assert_eq!(diffs.len(), 2 + 3 + 1, "{r}");
    for (name, d) in diffs {
        assert!(d.as_f64().unwrap() <= 1e-4, "{name}: max |wax − transformers| = {d}");
    }
    // Bad layers and sites are clear errors.
    let e = err(&[
        "model",
        "forward",
        "builtin:1m",
        "--prompt",
        "x",
        "--layers",
        "9",
        "--out",
        &file_s,
    ]);
    assert!(e.contains("layer 9 is out of range") && e.contains("4 layers"), "{e}");
    let e =
        err(&["model", "forward", "builtin:1m", "--prompt", "x", "--sites", "q", "--out", &file_s]);
    assert!(e.contains("unknown site `q`") && e.contains("resid_post"), "{e}");
}
