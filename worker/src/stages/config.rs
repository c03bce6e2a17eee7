//! The resolved configuration of every stage kind, read with the worker's own types.
//!
//! A stage's config is the JSON the coordinator planned (catalog defaults merged under what the
//! manifest says) and hashed into the stage id; it is exactly what runs. Each section
//! deserializes into the type the science uses (`TrainConfig`, `ExtractConfig`, `EvalConfig`,
//! `PretrainConfig`), so an unknown field or a bad value is refused with the worker's own
//! rules. Errors carry the field's path in the stage config (`rl.lr`, `extract.synthetic.
//! per_class`) so that `wax manifest check` can point at the manifest line that set it.
//!
//! Placement is not configuration: `device` is chosen by the worker and refused here, and the
//! model comes from the stage's input artifact, never from a section.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::evals::run::{EvalConfig, Suite};
use crate::maze::{EnvConfig, MazeConfig};
use crate::pretrain::PretrainConfig;
use crate::rl::TrainConfig;
use crate::tokenizer::ReasoningEffort;
use crate::vectors::ExtractConfig;

/// A problem with one field of a stage config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path in the stage config (`rl.lr`; empty for the whole config).
    pub path: String,
    pub message: String,
}

impl FieldError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError { path: path.into(), message: message.into() }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Where a run starts: the final weights of the stage's input, or a pretraining step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Checkpoint {
    #[default]
    Final,
    Step(u64),
}

impl Checkpoint {
    fn parse(v: Option<&Value>, path: &str) -> Result<Checkpoint, FieldError> {
        match v {
            None => Ok(Checkpoint::Final),
            Some(Value::String(s)) if s == "final" => Ok(Checkpoint::Final),
            Some(Value::Number(n)) if n.as_u64().is_some_and(|s| s > 0) => {
                Ok(Checkpoint::Step(n.as_u64().unwrap_or_default()))
            }
            Some(other) => Err(FieldError::new(
                path,
                format!("must be \"final\" or a pretraining step ≥ 1, got {other}"),
            )),
        }
    }

    pub fn to_json(self) -> Value {
        match self {
            Checkpoint::Final => json!("final"),
            Checkpoint::Step(s) => json!(s),
        }
    }
}

/// `model`: which weights a trial starts from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelStage {
    /// `builtin:<size>[@seed]`, `hf-dir:<path>` or `s3://bucket/prefix`.
    #[serde(rename = "ref")]
    pub reference: String,
    /// Qwen3's `enable_thinking` for every conversation with this model (and its trained
    /// descendants); unset: the template's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_thinking: Option<bool>,
    /// GPT-OSS's `reasoning_effort` (low, medium, high) for every conversation with this model
    /// (and its trained descendants); unset: the template's default (medium).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<ReasoningEffort>,
}

impl Default for ModelStage {
    fn default() -> Self {
        ModelStage { reference: "builtin:1m".into(), enable_thinking: None, reasoning_effort: None }
    }
}

/// `rl`: the training run (the model comes from the input artifact).
#[derive(Debug, Clone, PartialEq)]
pub struct RlStage {
    /// The run's settings. `model` and `device` say where the run happens, not what it is:
    /// they are empty and `cpu` here, and the executor sets them from the stage's input
    /// snapshot and the device its worker assigned.
    pub train: TrainConfig,
    pub checkpoint: Checkpoint,
}

/// Which model an extraction reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// The RL stage's final checkpoint (vectors v).
    Trained,
    /// The maze-naive starting point (vectors u).
    Naive,
}

/// `extract`: concept vectors of one model.
#[derive(Debug, Clone, PartialEq)]
pub struct ExtractStage {
    pub extract: ExtractConfig,
    /// `f32` or `bf16`.
    pub dtype: String,
    /// Bootstrap resamples of the geometry's intervals.
    pub resamples: usize,
    pub subject: Subject,
    pub checkpoint: Checkpoint,
}

/// `evaluate`: the suites on one trial's vectors.
#[derive(Debug, Clone, PartialEq)]
pub struct EvaluateStage {
    pub suites: Vec<Suite>,
    pub eval: EvalConfig,
}

/// The `report` section: nothing to set yet; any key is refused.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportSettings {}

/// One trial as the report lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportRow {
    pub params: Map<String, Value>,
    /// The trial's evaluate stage.
    pub evaluate: Option<String>,
}

/// `report`: one per sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportStage {
    #[serde(default)]
    pub report: ReportSettings,
    pub sweep: String,
    pub trials: Vec<ReportRow>,
}

/// How a `fail-n-times` stage fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TestFailure {
    StageError,
    Infrastructure,
}

/// `sleep` (testing): wait, then write small files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SleepStage {
    pub ms: u64,
    pub files: u32,
    /// Only distinguishes otherwise identical stages.
    pub shard: u64,
}

impl Default for SleepStage {
    fn default() -> Self {
        SleepStage { ms: 0, files: 1, shard: 0 }
    }
}

/// `fail-n-times` (testing): attempts `1..=n` fail, later ones succeed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FailStage {
    pub n: u64,
    pub failure: TestFailure,
    pub shard: u64,
}

impl Default for FailStage {
    fn default() -> Self {
        FailStage { n: 1, failure: TestFailure::StageError, shard: 0 }
    }
}

/// Any stage's config, typed.
#[derive(Debug, Clone, PartialEq)]
pub enum StageConfig {
    Model(ModelStage),
    Pretrain(PretrainConfig),
    Rl(Box<RlStage>),
    Extract(Box<ExtractStage>),
    Evaluate(Box<EvaluateStage>),
    Report(ReportStage),
    Sleep(SleepStage),
    FailNTimes(FailStage),
}

/// Stage kinds this worker implements, with their schema versions.
pub const KINDS: &[(&str, u32)] = &[
    ("model", 1),
    ("pretrain", 1),
    ("rl", 1),
    ("extract", 1),
    ("evaluate", 1),
    ("report", 1),
    ("sleep", 1),
    ("fail-n-times", 1),
];

/// Reads `value` as `T`, reporting the failing field under `prefix`.
fn typed<T: DeserializeOwned>(value: Value, prefix: &str) -> Result<T, FieldError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let inner = e.path().to_string();
        let path = match (prefix.is_empty(), inner.as_str()) {
            (_, ".") => prefix.to_string(),
            (true, p) => p.to_string(),
            (false, p) => format!("{prefix}.{p}"),
        };
        FieldError::new(path, e.into_inner().to_string())
    })
}

/// Splits a validation message `field.path: why` into its path and reason.
fn located(message: &str, prefix: &str) -> FieldError {
    if let Some((head, why)) = message.split_once(": ")
        && !head.is_empty()
        && head.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
    {
        let path = if prefix.is_empty() { head.to_string() } else { format!("{prefix}.{head}") };
        return FieldError::new(path, why);
    }
    FieldError::new(prefix, message)
}

fn object(v: &Value, path: &str) -> Result<Map<String, Value>, FieldError> {
    match v {
        Value::Object(m) => Ok(m.clone()),
        other => Err(FieldError::new(path, format!("must be a table, got {other}"))),
    }
}

/// Refuses keys of `map` outside `known`.
fn only(map: &Map<String, Value>, known: &[&str], prefix: &str) -> Result<(), FieldError> {
    match map.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => {
            let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
            Err(FieldError::new(
                path,
                format!("unknown field `{k}`, expected one of {}", known.join(", ")),
            ))
        }
        None => Ok(()),
    }
}

/// Refuses keys that are set elsewhere, saying where.
fn refuse(
    map: &Map<String, Value>,
    section: &str,
    rules: &[(&str, &str)],
) -> Result<(), FieldError> {
    for (key, why) in rules {
        if map.contains_key(*key) {
            return Err(FieldError::new(format!("{section}.{key}"), *why));
        }
    }
    Ok(())
}

const DEVICE: &str =
    "the device is chosen by the worker that runs the stage (a GPU when it has one)";

impl StageConfig {
    /// Reads the config of a stage of `kind`.
    pub fn parse(kind: &str, config: &Value) -> Result<StageConfig, FieldError> {
        let top = object(config, "")?;
        Ok(match kind {
            "model" => {
                let m: ModelStage = typed(config.clone(), "")?;
                crate::stages::model::check_reference(&m.reference)
                    .map_err(|e| FieldError::new("ref", e))?;
                StageConfig::Model(m)
            }
            "pretrain" => {
                let p: PretrainConfig = typed(config.clone(), "")?;
                p.validate().map_err(|e| match e {
                    crate::pretrain::PretrainError::Config { field, why } => {
                        FieldError::new(field, why)
                    }
                    other => FieldError::new("", other.to_string()),
                })?;
                StageConfig::Pretrain(p)
            }
            "rl" => StageConfig::Rl(Box::new(parse_rl(&top)?)),
            "extract" => StageConfig::Extract(Box::new(parse_extract(&top)?)),
            "evaluate" => StageConfig::Evaluate(Box::new(parse_evaluate(&top)?)),
            "report" => StageConfig::Report(typed(config.clone(), "")?),
            "sleep" => StageConfig::Sleep(typed(config.clone(), "")?),
            "fail-n-times" => StageConfig::FailNTimes(typed(config.clone(), "")?),
            other => {
                let known: Vec<&str> = KINDS.iter().map(|(k, _)| *k).collect();
                return Err(FieldError::new(
                    "",
                    format!("unknown stage kind `{other}` (this worker runs {})", known.join(", ")),
                ));
            }
        })
    }
}

fn section(top: &Map<String, Value>, key: &str) -> Result<Map<String, Value>, FieldError> {
    top.get(key).map_or_else(|| Ok(Map::new()), |v| object(v, key))
}

fn maze_env(top: &Map<String, Value>) -> Result<(Value, Value), FieldError> {
    let maze: MazeConfig = typed(Value::Object(section(top, "maze")?), "maze")?;
    maze.validate().map_err(|e| located(&e.to_string(), ""))?;
    let env: EnvConfig = typed(Value::Object(section(top, "env")?), "env")?;
    env.validate().map_err(|e| located(&e.to_string(), ""))?;
    let to =
        |v: Result<Value, serde_json::Error>| v.map_err(|e| FieldError::new("", e.to_string()));
    Ok((to(serde_json::to_value(&maze))?, to(serde_json::to_value(&env))?))
}

fn parse_rl(top: &Map<String, Value>) -> Result<RlStage, FieldError> {
    only(top, &["rl", "maze", "env", "seed", "checkpoint"], "")?;
    let mut rl = section(top, "rl")?;
    refuse(
        &rl,
        "rl",
        &[
            (
                "model",
                "the model comes from the trial's `model` (or `pretrain`) stage; set `model.ref`",
            ),
            ("maze", "maze generation is the trial's `maze` section"),
            ("env", "episode rules are the trial's `env` section"),
            ("seed", "the run's seed is the trial's `seed`"),
            ("device", DEVICE),
        ],
    )?;
    let (maze, env) = maze_env(top)?;
    let seed = top.get("seed").cloned().unwrap_or(json!(0));
    if !seed.is_u64() {
        return Err(FieldError::new("seed", format!("must be a non-negative integer, got {seed}")));
    }
    rl.insert("maze".into(), maze);
    rl.insert("env".into(), env);
    rl.insert("seed".into(), seed);
    rl.insert("model".into(), json!(""));
    let train: TrainConfig = typed(Value::Object(rl), "rl").map_err(|e| {
        // Fields injected from the trial's own sections are reported there.
        for own in ["rl.maze", "rl.env", "rl.seed"] {
            if let Some(rest) = e.path.strip_prefix(own)
                && (rest.is_empty() || rest.starts_with(['.', '[']))
            {
                return FieldError::new(format!("{}{rest}", &own[3..]), e.message);
            }
        }
        // The set-elsewhere fields are not among the choices of this section.
        let mut message = e.message;
        for key in ["model", "maze", "env", "seed", "device"] {
            message = message.replace(&format!(", `{key}`"), "").replace(&format!("`{key}`, "), "");
        }
        FieldError::new(e.path, message)
    })?;
    train.validate().map_err(|e| {
        let f = located(&e.0, "rl");
        match f.path.strip_prefix("rl.") {
            Some(p) if p.starts_with("maze.") || p.starts_with("env.") => {
                FieldError::new(p, f.message)
            }
            _ => f,
        }
    })?;
    let checkpoint = Checkpoint::parse(top.get("checkpoint"), "checkpoint")?;
    Ok(RlStage { train, checkpoint })
}

fn parse_extract(top: &Map<String, Value>) -> Result<ExtractStage, FieldError> {
    only(top, &["extract", "maze", "env", "model", "checkpoint"], "")?;
    let mut ex = section(top, "extract")?;
    refuse(
        &ex,
        "extract",
        &[
            ("maze", "maze generation is the trial's `maze` section"),
            ("env", "episode rules are the trial's `env` section"),
            ("device", DEVICE),
        ],
    )?;
    let dtype = match ex.remove("dtype") {
        None => "f32".to_string(),
        Some(Value::String(s)) if s == "f32" || s == "bf16" => s,
        Some(other) => {
            return Err(FieldError::new(
                "extract.dtype",
                format!("must be \"f32\" or \"bf16\", got {other}"),
            ));
        }
    };
    let resamples = match ex.remove("resamples") {
        None => 500,
        Some(v) => v.as_u64().filter(|&n| n > 0).ok_or_else(|| {
            FieldError::new("extract.resamples", format!("must be a positive integer, got {v}"))
        })? as usize,
    };
    let (maze, env) = maze_env(top)?;
    ex.insert("maze".into(), maze);
    ex.insert("env".into(), env);
    let extract: ExtractConfig = typed(Value::Object(ex), "extract")?;
    extract.validate().map_err(|e| {
        let m = e.to_string();
        match m.strip_prefix("extract.") {
            Some(rest) => located(rest, "extract"),
            None => located(&m, "extract"),
        }
    })?;
    let subject = match top.get("model").and_then(Value::as_str) {
        None | Some("trained") => Subject::Trained,
        Some("naive") => Subject::Naive,
        Some(other) => {
            return Err(FieldError::new(
                "model",
                format!("must be \"trained\" or \"naive\", got {other:?}"),
            ));
        }
    };
    let checkpoint = Checkpoint::parse(top.get("checkpoint"), "checkpoint")?;
    Ok(ExtractStage { extract, dtype, resamples, subject, checkpoint })
}

/// All suites, in the order they run.
pub const ALL_SUITES: [&str; 5] = ["geometry", "lens", "emotions", "tracking", "steering"];

fn parse_evaluate(top: &Map<String, Value>) -> Result<EvaluateStage, FieldError> {
    only(top, &["evaluate"], "")?;
    let mut ev = section(top, "evaluate")?;
    refuse(&ev, "evaluate", &[("device", DEVICE)])?;
    let suites = match ev.remove("suites") {
        None => ALL_SUITES.iter().filter_map(|s| Suite::parse(s)).collect(),
        Some(Value::Array(items)) => {
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let suite = item.as_str().and_then(Suite::parse).ok_or_else(|| {
                    FieldError::new(
                        format!("evaluate.suites[{i}]"),
                        format!("unknown suite {item} (known: {}, all)", ALL_SUITES.join(", ")),
                    )
                })?;
                out.push(suite);
            }
            out
        }
        Some(other) => {
            return Err(FieldError::new(
                "evaluate.suites",
                format!("must be a list of suites, got {other}"),
            ));
        }
    };
    let eval: EvalConfig = typed(Value::Object(ev), "evaluate")?;
    Ok(EvaluateStage { suites, eval })
}

/// The worker's defaults for a stage of `kind`, in the shape the coordinator's catalog plans
/// (`None` fields left out). The catalog must say exactly this (a test in the `wax` binary,
/// which links both, checks it field by field).
pub fn default_json(kind: &str) -> Option<Value> {
    let drop = |mut v: Value, keys: &[&str]| {
        if let Value::Object(m) = &mut v {
            for k in keys {
                m.remove(*k);
            }
        }
        v
    };
    let maze = serde_json::to_value(MazeConfig::default()).ok()?;
    let mut env = serde_json::to_value(EnvConfig::default()).ok()?;
    // The catalog names the paper's mapping by its preset, which reads back the same.
    env["mapping"] = json!(EnvConfig::default().mapping.preset_name()?);
    Some(strip_nulls(match kind {
        "model" => serde_json::to_value(ModelStage::default()).ok()?,
        "pretrain" => serde_json::to_value(PretrainConfig::default()).ok()?,
        "rl" => json!({
            "rl": drop(serde_json::to_value(TrainConfig::default()).ok()?, &["model", "maze", "env", "seed", "device"]),
            "maze": maze, "env": env, "seed": 0, "checkpoint": "final",
        }),
        "extract" => {
            let mut ex =
                drop(serde_json::to_value(ExtractConfig::default()).ok()?, &["maze", "env"]);
            ex["dtype"] = json!("f32");
            ex["resamples"] = json!(500);
            json!({ "extract": ex, "maze": maze, "env": env, "model": "trained", "checkpoint": "final" })
        }
        "evaluate" => {
            let mut ev = drop(serde_json::to_value(EvalConfig::default()).ok()?, &["device"]);
            ev["suites"] = json!(ALL_SUITES);
            json!({ "evaluate": ev })
        }
        "report" => json!({ "report": {} }),
        "sleep" => serde_json::to_value(SleepStage::default()).ok()?,
        "fail-n-times" => serde_json::to_value(FailStage::default()).ok()?,
        _ => return None,
    }))
}

/// `value` without its `null` members (at every depth).
pub fn strip_nulls(value: Value) -> Value {
    match value {
        Value::Object(m) => Value::Object(
            m.into_iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k, strip_nulls(v))).collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(strip_nulls).collect()),
        other => other,
    }
}
