//! Parse-and-expand tests of the rules, in TOML unless the format is the point.

use super::*;
use indexmap::IndexMap;
use serde_json::json;

fn toml(text: &str) -> Result<Manifest, String> {
    parse(text, ManifestFormat::Toml, "m.toml").map_err(|e| e.to_string())
}

fn trials(text: &str) -> Result<Vec<Trial>, String> {
    expand(&toml(text)?).map_err(|e| e.to_string())
}

const EXAMPLE: &str = r#"
[sweep]
name = "quickstart"
seeds = 2

[limits]
max_trials = 100
max_concurrent = 4

[resources.rl]
gpus = 1
gpu_memory = "40GiB"
cpu = 0.5

[base]
model = { ref = "builtin:tiny" }
rl = { algorithm = "dr-grpo", steps = 20 }

[axes]
mapping = ["office", "office-swapped"]
"rl.learning_rate" = [1e-5, 3e-5]

[[zip]]
algorithm = ["dr-grpo", "sft"]
"rl.entropy_coef" = [0.01, 0.0]

[[include]]
algorithm = "reinforce"

[[exclude]]
algorithm = "sft"
mapping = "office-swapped"
"#;

#[test]
fn the_example_parses_and_expands() {
    let m = toml(EXAMPLE).unwrap();
    assert_eq!(m.sweep.name, "quickstart");
    assert_eq!(m.sweep.pipeline, Pipeline::Paper);
    assert_eq!(m.limits.max_concurrent, 4);
    let rl = &m.resources["rl"];
    assert_eq!(rl.gpus, Some(1));
    assert_eq!(rl.gpu_memory_bytes, Some(40 << 30));
    assert_eq!(rl.cpu_millis, Some(500));
    let axis_keys: Vec<_> = m.axes.keys().map(String::as_str).collect();
    assert_eq!(axis_keys, ["env.mapping", "rl.learning_rate", "seed"]);
    assert_eq!(m.axes["seed"], [json!(0), json!(1)]);
    assert_eq!(m.zip[0].keys().next().unwrap(), "rl.algorithm");
    assert_eq!(m.exclude[0]["env.mapping"], json!("office-swapped"));
    assert_eq!(m.locations.source, "m.toml");
    let at = |p: &str| m.locations.by_path.get(p).map(|l| (l.line, l.column));
    assert_eq!(at("axes.env.mapping[1]"), Some((20, 22)));
    assert_eq!(at("base.rl.steps"), Some((17, 39)));
    assert_eq!(at("limits.max_trials"), Some((7, 14)));
    assert_eq!(at("resources.rl.cpu"), Some((13, 7)));
    assert_eq!(at("zip[0].rl.entropy_coef[1]"), Some((25, 28)));
    assert_eq!(at("include[0].rl.algorithm"), Some((28, 13)));
    assert_eq!(at("exclude[0].env.mapping"), Some((32, 11)));
    assert_eq!(at("axes.seed"), Some((4, 9)));

    let t = expand(&m).unwrap();
    // 2 mappings × 2 rates × 2 seeds × 2 zipped = 16, minus 4 (sft on office-swapped), plus 1.
    assert_eq!(t.len(), 13);
    assert!(t.iter().enumerate().all(|(i, t)| t.index as usize == i));
    assert_eq!(
        t[0].params,
        IndexMap::<String, serde_json::Value>::from_iter([
            ("env.mapping".to_owned(), json!("office")),
            ("rl.learning_rate".to_owned(), json!(1e-5)),
            ("seed".to_owned(), json!(0)),
            ("rl.algorithm".to_owned(), json!("dr-grpo")),
            ("rl.entropy_coef".to_owned(), json!(0.01)),
        ])
    );
    assert_eq!(t[1].params["rl.algorithm"], json!("sft"));
    assert_eq!(
        t[0].config,
        json!({
            "model": { "ref": "builtin:tiny" },
            "rl": { "algorithm": "dr-grpo", "steps": 20, "learning_rate": 1e-5,
                    "entropy_coef": 0.01 },
            "env": { "mapping": "office" },
            "seed": 0
        })
    );
    let last = t.last().unwrap();
    assert_eq!(last.params.len(), 1);
    assert_eq!(last.config["rl"]["algorithm"], json!("reinforce"));
    assert_eq!(last.config["rl"]["steps"], json!(20));
    assert!(t.iter().all(|t| !(t.params.get("rl.algorithm") == Some(&json!("sft"))
        && t.params["env.mapping"] == json!("office-swapped"))));
}

#[test]
fn a_name_is_all_it_takes() {
    let m = toml("[sweep]\nname = \"x\"\n").unwrap();
    assert_eq!(m.limits.max_trials, 10_000);
    assert_eq!(m.sweep.cache_version, 1);
    let t = expand(&m).unwrap();
    assert_eq!(t.len(), 1);
    assert!(t[0].params.is_empty());
    assert_eq!(t[0].config, json!({}));
}

#[test]
fn every_problem_is_reported_at_once() {
    let err = toml(
        "sweeep = 1\n[sweep]\nname = \"\"\ncache_version = 0\npipeline = \"papr\"\n\
         [limits]\nmax_trials = \"many\"\n[resources.rl]\ngpu_memory = \"40 gigs\"\ncpus = 2\n\
         [axes]\nmapping = []\n\"env.mapping\" = [1, 1]\n",
    )
    .unwrap_err();
    assert_eq!(
        err,
        "m.toml:1:1: sweeep: unknown key `sweeep`; did you mean `sweep`?\n\
         m.toml:3:8: sweep.name: must not be empty\n\
         m.toml:4:17: sweep.cache_version: must be at least 1, found 0\n\
         m.toml:5:12: sweep.pipeline: unknown pipeline `papr`; did you mean `paper`?\n\
         m.toml:7:14: limits.max_trials: expected an integer, found a string\n\
         m.toml:9:14: resources.rl.gpu_memory: expected a size like \"40GiB\" or \"512 MB\" \
         (units: B, KB, MB, GB, KiB, MiB, GiB, TiB), found \"40 gigs\"\n\
         m.toml:10:1: resources.rl.cpus: unknown key `cpus`; did you mean `cpu`?\n\
         m.toml:12:11: axes.env.mapping: must list at least one value\n\
         m.toml:13:1: axes.env.mapping: `env.mapping` is already varied by axes.env.mapping \
         (as `mapping`, line 12, column 1); a path may vary in one place only"
    );
}

#[test]
fn seeds_and_paths_conflict_once() {
    let err = toml(
        "[sweep]\nname = \"x\"\nseeds = [3, 3]\n[axes]\nseed = [1]\nrl = [{}]\n\
         \"rl.lr\" = [1]\n\"a..b\" = [1]\n[[zip]]\nmapping = [\"a\", \"b\"]\ncheckpoint = [\"x\"]\n",
    )
    .unwrap_err();
    assert_eq!(
        err,
        "m.toml:3:13: sweep.seeds[1]: repeats seed 3 (sweep.seeds[0])\n\
         m.toml:5:1: axes.seed: `seed` is already varied by sweep.seeds (line 3, column 1); a \
         path may vary in one place only\n\
         m.toml:7:1: axes.rl.lr: `rl.lr` lies inside `rl`, which is varied by axes.rl (line 6, \
         column 1); vary one or the other\n\
         m.toml:8:1: axes.a..b: `a..b` is not a path: each `.`-separated part must be non-empty\n\
         m.toml:11:14: zip[0].checkpoint: has 1 values but zip[0].env.mapping has 2; the lists \
         of a zip group must have equal lengths"
    );
}

#[test]
fn exclude_entries_must_be_able_to_match() {
    let err = toml(
        "[sweep]\nname = \"x\"\n[axes]\nmapping = [\"a\", \"b\"]\n[[zip]]\nalgorithm = [\"p\", \"q\"]\n\
         lr = [1, 2]\n[[exclude]]\nsteps = 3\n[[exclude]]\nmapping = \"c\"\n[[exclude]]\n\
         algorithm = \"p\"\nlr = 2\n[[exclude]]\n",
    )
    .unwrap_err();
    assert_eq!(
        err,
        "m.toml:9:9: exclude[0].steps: `steps` is not varied by axes or zip, so this entry could \
         never match\n\
         m.toml:11:11: exclude[1].env.mapping: \"c\" is not one of the values of axes.env.mapping, \
         so this entry could never match\n\
         m.toml:13:13: exclude[2].rl.algorithm: no value set of zip[0] has rl.algorithm = \"p\" \
         and lr = 2, so this entry could never match\n\
         m.toml:15:1: exclude[3]: an empty exclude entry would drop every trial"
    );
}

#[test]
fn expansion_errors_are_located() {
    let too_many =
        "[sweep]\nname = \"x\"\n[limits]\nmax_trials = 5\n[axes]\na = [1, 2, 3]\nb = [1, 2]\n";
    assert_eq!(
        trials(too_many).unwrap_err(),
        "m.toml:4:14: limits.max_trials: the manifest expands to 6 trials, more than \
         limits.max_trials = 5"
    );
    let huge = format!(
        "[sweep]\nname = \"x\"\n[axes]\n{}",
        (0..40)
            .map(|i| format!(
                "a{i} = [{}]\n",
                (0..10).map(|v| v.to_string()).collect::<Vec<_>>().join(",")
            ))
            .collect::<String>()
    );
    assert!(trials(&huge).unwrap_err().contains("more than 10^38 trials"));
    let nested = "[sweep]\nname = \"x\"\n[base]\nrl = 5\n[axes]\n\"rl.lr\" = [1, 2]\n";
    assert_eq!(
        trials(nested).unwrap_err(),
        "m.toml:6:11: axes.rl.lr: cannot set `rl.lr`: base.rl (line 4, column 6) is a number, \
         not a table"
    );
    let same = "[sweep]\nname = \"x\"\n[axes]\nseed = [1, 2]\n[[include]]\nseed = 2\n";
    assert_eq!(
        trials(same).unwrap_err(),
        "m.toml:5:1: include[0]: this include is identical to trial 1, seed = 2"
    );
    let none = "[sweep]\nname = \"x\"\n[axes]\nseed = [1, 2]\n[[exclude]]\nseed = 1\n\
                [[exclude]]\nseed = 2\n";
    assert_eq!(
        trials(none).unwrap_err(),
        "m.toml:5:1: exclude: every trial is excluded: the exclude entries drop all 2 trials"
    );
}

#[test]
fn huge_products_are_counted_not_built() {
    // 10^8 raw trials, all but 6 excluded by one entry each on two axes.
    let mut text = String::from("[sweep]\nname = \"x\"\n[axes]\n");
    for name in ["a", "b", "c", "d"] {
        let values: Vec<String> = (0..100).map(|v| v.to_string()).collect();
        text += &format!("{name} = [{}]\n", values.join(", "));
    }
    text += "e = [1, 2, 3]\n[[exclude]]\ne = 1\n";
    let err = trials(&text).unwrap_err();
    assert!(err.contains("expands to 200000000 trials"), "{err}");
}

#[test]
fn excluded_subtrees_are_skipped() {
    let t = trials(
        "[sweep]\nname = \"x\"\n[axes]\na = [1, 2, 3]\nb = [1, 2]\nc = [1, 2]\n\
         [[exclude]]\nb = 1\n[[exclude]]\nb = 2\nc = 1\n[[exclude]]\na = 3\n",
    )
    .unwrap();
    let got: Vec<_> = t
        .iter()
        .map(|t| (t.params["a"].clone(), t.params["b"].clone(), t.params["c"].clone()))
        .collect();
    assert_eq!(got, [(json!(1), json!(2), json!(2)), (json!(2), json!(2), json!(2))]);
}

#[test]
fn yaml_and_json_mean_the_same() {
    let yaml = r#"
sweep: { name: quickstart, seeds: 2 }
limits: { max_trials: 100, max_concurrent: 4 }
resources:
  rl: { gpus: 1, gpu_memory: 40GiB, cpu: 0.5 }
base:
  model: { ref: "builtin:tiny" }
  rl: { algorithm: dr-grpo, steps: 20 }
axes:
  mapping: [office, office-swapped]
  rl.learning_rate: [1.0e-5, 3.0e-5]
zip:
  - algorithm: [dr-grpo, sft]
    rl.entropy_coef: [0.01, 0.0]
include:
  - algorithm: reinforce
exclude:
  - { algorithm: sft, mapping: office-swapped }
"#;
    let json = r#"{
  "sweep": {"name": "quickstart", "seeds": 2},
  "limits": {"max_trials": 100, "max_concurrent": 4},
  "resources": {"rl": {"gpus": 1, "gpu_memory": "40GiB", "cpu": 0.5}},
  "base": {"model": {"ref": "builtin:tiny"}, "rl": {"algorithm": "dr-grpo", "steps": 20}},
  "axes": {"mapping": ["office", "office-swapped"], "rl.learning_rate": [1e-5, 3e-5]},
  "zip": [{"algorithm": ["dr-grpo", "sft"], "rl.entropy_coef": [0.01, 0.0]}],
  "include": [{"algorithm": "reinforce"}],
  "exclude": [{"algorithm": "sft", "mapping": "office-swapped"}]
}"#;
    let from_toml = toml(EXAMPLE).unwrap();
    for (text, format) in [(yaml, ManifestFormat::Yaml), (json, ManifestFormat::Json)] {
        let mut m = parse(text, format, "m").unwrap();
        m.locations = from_toml.locations.clone();
        assert_eq!(m, from_toml, "{format}");
    }
}

#[test]
fn formats_by_name_and_extension() {
    assert_eq!(ManifestFormat::from_name("YML"), Some(ManifestFormat::Yaml));
    assert_eq!(ManifestFormat::from_name("ini"), None);
    assert_eq!(ManifestFormat::guess("a/b.json"), ManifestFormat::Json);
    assert_eq!(ManifestFormat::guess("sweep.yaml"), ManifestFormat::Yaml);
    assert_eq!(ManifestFormat::guess("sweep"), ManifestFormat::Toml);
    assert_eq!(ManifestFormat::guess("<stdin>"), ManifestFormat::Toml);
}

#[test]
fn seeds_are_bounded_before_they_are_listed() {
    let err = toml("[sweep]\nname = \"x\"\nseeds = 20000\n").unwrap_err();
    assert_eq!(err, "m.toml:3:9: sweep.seeds: 20000 seeds alone exceed limits.max_trials (10000)");
    let err = toml("[sweep]\nname = \"x\"\nseeds = 2000000\n[limits]\nmax_trials = 4000000000\n")
        .unwrap_err();
    assert_eq!(err, "m.toml:3:9: sweep.seeds: at most 1000000 seeds");
}

#[test]
fn a_refused_axis_does_not_make_excludes_fail_too() {
    let err = toml("[sweep]\nname = \"x\"\n[axes]\na = [1, 1]\n[[exclude]]\na = 1\n").unwrap_err();
    assert_eq!(err, "m.toml:4:9: axes.a[1]: repeats the value 1 of axes.a[0]");
}

#[test]
fn the_document_must_be_a_table() {
    let err = parse("- 1\n- 2\n", ManifestFormat::Yaml, "m.yaml").unwrap_err().to_string();
    assert_eq!(err, "m.yaml:1:1: a manifest must be a table at the top, found a list");
    let err = parse("", ManifestFormat::Yaml, "m.yaml").unwrap_err().to_string();
    assert_eq!(
        err,
        "m.yaml: sweep: missing; a manifest needs a `sweep` table with at least a `name`"
    );
}

#[test]
fn an_empty_include_runs_the_base_trial() {
    let t =
        trials("[sweep]\nname = \"x\"\n[base]\nk = 1\n[axes]\nseed = [1]\n[[include]]\n").unwrap();
    assert_eq!(t.len(), 2);
    assert_eq!(t[1].config, json!({ "k": 1 }));
    assert!(t[1].params.is_empty());
}

#[test]
fn chains_of_excludes_are_counted_exactly() {
    // Strings over {0,1,2} of length 20 without "01" at positions i, i+1: Fibonacci(42).
    let mut t = String::from("[sweep]\nname = \"x\"\n[axes]\n");
    for i in 0..20 {
        t += &format!("a{i} = [0, 1, 2]\n");
    }
    for i in 0..19 {
        t += &format!("[[exclude]]\na{i} = 0\na{} = 1\n", i + 1);
    }
    let err = trials(&t).unwrap_err();
    assert!(err.contains("expands to 267914296 trials"), "{err}");
}
