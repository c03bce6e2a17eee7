//! `wax maze …` and `wax doctor` as a user runs them.

use wax_tests::{wax, wax_ok, workspace_root};

fn golden() -> String {
    std::fs::read_to_string(workspace_root().join("worker/tests/golden/maze12_planner.chatml"))
        .unwrap()
}

#[test]
fn sample_prints_exactly_the_pinned_episode() {
    assert_eq!(wax_ok(&["maze", "sample", "--seed", "12"]), golden());
}

#[test]
fn the_swap_config_exchanges_symbols_only() {
    let config = workspace_root().join("examples/maze/office-swapped.toml");
    let swapped = wax_ok(&["maze", "sample", "--seed", "12", "--config", config.to_str().unwrap()]);
    let expect = golden().replace("🗂", "\0").replace("📐", "🗂").replace('\0', "📐");
    assert_eq!(swapped, expect);
    let by_flag = wax_ok(&["maze", "sample", "--seed", "12", "--mapping", "office-swapped"]);
    assert_eq!(by_flag, expect);
}

#[test]
fn table_and_json_formats_agree_on_the_return() {
    let table = wax_ok(&["maze", "sample", "--seed", "3", "--format", "table"]);
    let json: serde_json::Value =
        serde_json::from_str(&wax_ok(&["maze", "sample", "--seed", "3", "--format", "json"]))
            .unwrap();
    let turns = json.as_array().unwrap();
    assert_eq!(turns.len(), 15);
    let cum = turns[14]["cumulative"].as_f64().unwrap();
    let last = table.lines().last().unwrap();
    assert!(last.trim_end().ends_with(&format!("{cum:+.1}")), "{last} vs {cum}");
}

#[test]
fn stats_reports_the_generation_invariants() {
    let out = wax_ok(&["maze", "stats", "--n", "40", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["mazes"], 40);
    assert!(v["mold_fraction"]["max"].as_f64().unwrap() < 0.5);
    assert_eq!(v["gold_count"]["min"].as_f64().unwrap(), 960.0);
    // Without wind the environment is deterministic, so replanning every turn must achieve the
    // exact optimum in every maze: the planner policy's returns equal the best returns.
    let calm: serde_json::Value = serde_json::from_str(&wax_ok(&[
        "maze",
        "stats",
        "--n",
        "40",
        "--json",
        "--no-wind",
        "--policies",
        "planner",
    ]))
    .unwrap();
    let planner = &calm["policy_returns"][0];
    assert_eq!(planner[0], "planner");
    for stat in ["mean", "min", "p50", "max"] {
        let (a, b) =
            (planner[1][stat].as_f64().unwrap(), calm["best_return"][stat].as_f64().unwrap());
        assert!((a - b).abs() < 1e-9, "{stat}: planner {a} vs best {b}");
    }
    let text = wax_ok(&["maze", "stats", "--n", "10", "--policies", "random"]);
    assert!(
        text.contains("best windless return (exact)") && text.contains("random policy"),
        "{text}"
    );
}

#[test]
fn synthetic_writes_balanced_jsonl() {
    let out = wax_ok(&["maze", "synthetic", "--per-class", "8"]);
    let lines: Vec<serde_json::Value> =
        out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 24);
    for class in ["mold", "gold", "path"] {
        let n = lines.iter().filter(|l| l["class"] == class).count();
        assert_eq!(n, 8, "{class}");
    }
    let chat = wax_ok(&["maze", "synthetic", "--per-class", "1", "--format", "chatml"]);
    assert!(chat.contains("<|im_start|>assistant\n"));
}

#[test]
fn bad_settings_are_located_and_never_panic() {
    let dir = std::env::temp_dir().join(format!("wax-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[env]\nturns = 15\nwind = 0.2\n").unwrap();
    let out = wax(&["maze", "sample", "--config", bad.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("bad.toml") && err.contains("line 3") && err.contains("wind"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    std::fs::write(&bad, "[env]\nwind_probability = 2\n").unwrap();
    let out = wax(&["maze", "stats", "--n", "3", "--config", bad.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("env.wind_probability: must be in [0, 1], got 2"), "{err}");
    let out = wax(&["maze", "sample", "--mapping", "nonsense"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown mapping preset"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn doctor_finds_libtorch_without_ld_library_path() {
    let v: serde_json::Value = serde_json::from_str(&wax_ok(&["doctor", "--json"])).unwrap();
    assert!(v["libtorch_version"].as_str().unwrap().starts_with("2.11.0"), "{v}");
    assert_eq!(v["cpu_smoke_sum"], 5050.0);
}
