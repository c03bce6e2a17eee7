//! The steering behaviour suite (docs/protocol.md §6).
//!
//! For every condition, concept, steering layer and α, the suite generates (or, for confidence,
//! scores) under `coefficient · vector` added to the block output on assistant-turn tokens:
//!
//! - `naive-v`: the trained checkpoint's `v` on the maze-naive model (the main-text condition);
//! - `trained-v`: `v` on the checkpoint it came from;
//! - `naive-u`: the naive model's own `u` at its own layer, norm-matched: `β = α‖v‖/‖u‖`;
//! - `naive-random`: a random direction of norm `‖v‖` at `v`'s layer (the null; beyond the paper).
//!
//! Evaluations: self-report sentiment (15 + 25 prompts, tiles from the run's mapping), back-
//! tracking on arithmetic word problems, confidence as normalised P(True) after a cached
//! unsteered Phase-0 answer, and over-refusal. Every rollout is written to `samples.jsonl`;
//! per-α means to `means.jsonl`; the OLS slope of the per-rollout metric on α, with its SE and a
//! bootstrap interval, to `slopes.jsonl`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use super::EvalError;
use super::chat::{GenSettings, Rendered, Steer, generate, last_logits, render};
use super::data::{
    self, MathProblem, Mcq, OrSplit, RefusalPrompt, SentimentPrompt, ShortQa, TileWords,
};
use super::judge::{BacktrackClass, Judge, JudgeItem, Label, RefusalClass, Task, judge_all};
use crate::generate::Sampling;
use crate::rng::{Stream, WaxRng};
use crate::stats::{bootstrap_ci, mean, ols};
use crate::tokenizer::Message;
use crate::vectors::{Concept, Extraction, Subject};

/// Which behavioural evaluations run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EvalKind {
    Sentiment,
    Backtracking,
    Confidence,
    Refusal,
}

impl EvalKind {
    pub fn name(self) -> &'static str {
        match self {
            EvalKind::Sentiment => "sentiment",
            EvalKind::Backtracking => "backtracking",
            EvalKind::Confidence => "confidence",
            EvalKind::Refusal => "refusal",
        }
    }
}

/// Whose vector goes into which model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Condition {
    NaiveV,
    TrainedV,
    NaiveU,
    NaiveRandom,
}

impl Condition {
    pub fn name(self) -> &'static str {
        match self {
            Condition::NaiveV => "naive-v",
            Condition::TrainedV => "trained-v",
            Condition::NaiveU => "naive-u",
            Condition::NaiveRandom => "naive-random",
        }
    }
}

/// Local dataset files; a missing entry uses the built-in offline set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataFiles {
    pub gsm8k: Option<PathBuf>,
    pub mmlu: Option<PathBuf>,
    pub simpleqa: Option<PathBuf>,
    pub orbench_easy: Option<PathBuf>,
    pub orbench_hard: Option<PathBuf>,
    pub orbench_toxic: Option<PathBuf>,
}

/// English names of the tiles for the `*_ENGLISH` prompts; `None`: known emoji names.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TileEnglish {
    pub mold: String,
    pub path: String,
    pub gold: String,
}

/// Settings of the suite. Defaults are the paper's counts (Table 26) where it gives them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SteeringConfig {
    pub alphas: Vec<f64>,
    pub evals: Vec<EvalKind>,
    pub conditions: Vec<Condition>,
    pub concepts: Vec<Concept>,
    /// Steering layers to sweep instead of each vector's selected layer (App. D).
    pub layers: Option<Vec<usize>>,
    /// Prompts / problems / questions per evaluation (None: all of the set).
    pub sentiment_prompts: Option<usize>,
    pub backtracking_problems: usize,
    pub mmlu_questions: usize,
    pub simpleqa_questions: usize,
    pub refusal_per_split: usize,
    /// Samples per prompt.
    pub sentiment_samples: usize,
    pub backtracking_samples: usize,
    pub refusal_samples: usize,
    pub max_new_tokens: usize,
    pub phase0_max_new_tokens: usize,
    pub temperature: f64,
    pub top_p: Option<f64>,
    pub batch: usize,
    pub resamples: usize,
    pub seed: u64,
    pub data: DataFiles,
    pub tile_english: Option<TileEnglish>,
}

impl Default for SteeringConfig {
    fn default() -> Self {
        SteeringConfig {
            alphas: vec![-4.0, -2.0, 0.0, 2.0, 4.0],
            evals: vec![
                EvalKind::Sentiment,
                EvalKind::Backtracking,
                EvalKind::Confidence,
                EvalKind::Refusal,
            ],
            conditions: vec![
                Condition::NaiveV,
                Condition::TrainedV,
                Condition::NaiveU,
                Condition::NaiveRandom,
            ],
            concepts: vec![Concept::Mold, Concept::Gold],
            layers: None,
            sentiment_prompts: None,
            backtracking_problems: 200,
            mmlu_questions: 3420,
            simpleqa_questions: 1000,
            refusal_per_split: 200,
            sentiment_samples: 20,
            backtracking_samples: 10,
            refusal_samples: 5,
            max_new_tokens: 256,
            phase0_max_new_tokens: 64,
            temperature: 0.7,
            top_p: Some(0.95),
            batch: 32,
            resamples: 500,
            seed: 0,
            data: DataFiles::default(),
            tile_english: None,
        }
    }
}

impl SteeringConfig {
    pub fn validate(&self) -> Result<(), EvalError> {
        let bad = |f: &str, w: &str| Err(EvalError::Input(format!("steering.{f}: {w}")));
        if self.alphas.is_empty() || self.alphas.iter().any(|a| !a.is_finite()) {
            return bad("alphas", "need at least one finite α");
        }
        if self.concepts.contains(&Concept::Path) {
            return bad("concepts", "steering uses mold and gold");
        }
        if self.batch == 0 || self.max_new_tokens == 0 {
            return bad("batch", "batch and max_new_tokens must be positive");
        }
        if self.temperature.is_nan() || self.temperature < 0.0 {
            return bad("temperature", "must be ≥ 0");
        }
        Ok(())
    }
}

/// One rollout (or one confidence forward).
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    pub eval: EvalKind,
    pub condition: Condition,
    pub concept: Concept,
    pub model: String,
    pub layer: usize,
    pub alpha: f64,
    pub coefficient: f64,
    pub item: String,
    /// Sub-group (prompt category, OR-Bench split, confidence dataset).
    pub group: String,
    pub sample: usize,
    pub prompt: String,
    pub response: String,
    pub label: Option<String>,
    /// The per-rollout metric: sentiment score, backtracking / refusal indicator, P(True).
    pub metric: Option<f64>,
    pub incoherent: bool,
    pub judge_source: Option<String>,
    pub judge_raw: Option<String>,
    /// Whether the judge is an offline proxy.
    pub proxy: bool,
}

/// Mean of one cell at one α.
#[derive(Debug, Clone, Serialize)]
pub struct MeanRow {
    pub eval: EvalKind,
    pub group: String,
    pub condition: Condition,
    pub concept: Concept,
    pub layer: usize,
    pub alpha: f64,
    pub n: usize,
    pub unparseable: usize,
    pub mean: f64,
    pub incoherence: f64,
}

/// The slope of one cell.
#[derive(Debug, Clone, Serialize)]
pub struct SlopeRow {
    pub eval: EvalKind,
    pub group: String,
    pub condition: Condition,
    pub concept: Concept,
    pub layer: usize,
    pub n: usize,
    pub slope: f64,
    pub slope_se: f64,
    pub ci_lo: f64,
    pub ci_hi: f64,
    pub proxy_judge: bool,
}

/// The models and vectors of a suite.
pub struct SuiteInputs<'a> {
    pub trained: Option<&'a Subject>,
    pub naive: Option<&'a Subject>,
    pub v: &'a Extraction,
    pub u: Option<&'a Extraction>,
}

/// Progress of the suite: a short description of the current cell and counts.
pub type Progress<'a> = dyn FnMut(&str, usize, usize) + 'a;

/// English descriptions of the known tile emoji.
pub fn english_of(symbol: &str) -> String {
    match symbol {
        "🧾" => "receipt",
        "🗂" | "🗂️" => "card index dividers",
        "📐" => "triangular ruler",
        "🍩" => "doughnut",
        "🧁" => "cupcake",
        "🍨" => "ice cream",
        other => other,
    }
    .to_string()
}

fn tile_words(v: &Extraction, cfg: &SteeringConfig) -> TileWords {
    let [path, mold, gold] = v.meta.mapping.clone();
    let e = cfg.tile_english.clone().unwrap_or_else(|| TileEnglish {
        mold: english_of(&mold),
        path: english_of(&path),
        gold: english_of(&gold),
    });
    TileWords { mold: (mold, e.mold), path: (path, e.path), gold: (gold, e.gold) }
}

/// The items of every generation evaluation.
struct Items {
    sentiment: Vec<SentimentPrompt>,
    math: Vec<MathProblem>,
    refusal: Vec<RefusalPrompt>,
    mcq: Vec<Mcq>,
    qa: Vec<ShortQa>,
}

fn take<T>(mut v: Vec<T>, n: usize) -> Vec<T> {
    v.truncate(n);
    v
}

fn load_items(cfg: &SteeringConfig, v: &Extraction) -> Result<Items, EvalError> {
    let d = &cfg.data;
    let mut sentiment = data::sentiment_prompts(&tile_words(v, cfg));
    if let Some(n) = cfg.sentiment_prompts {
        // Keep the self-report / tile balance of the paper's layer sweep (12 + 12 of 24).
        let idx = data::stratified_sample(&sentiment, n, |p| format!("{:?}", p.category), cfg.seed);
        sentiment = idx.into_iter().map(|i| sentiment[i].clone()).collect();
    }
    let math = match &d.gsm8k {
        Some(p) => data::load_gsm8k(p)?,
        None => data::builtin_math(cfg.backtracking_problems, cfg.seed),
    };
    let mut refusal = Vec::new();
    for (split, path) in [
        (OrSplit::Easy, &d.orbench_easy),
        (OrSplit::Hard, &d.orbench_hard),
        (OrSplit::Toxic, &d.orbench_toxic),
    ] {
        let items = match path {
            Some(p) => data::load_orbench(p, split)?,
            None => data::builtin_refusal().into_iter().filter(|r| r.split == split).collect(),
        };
        refusal.extend(take(items, cfg.refusal_per_split));
    }
    let mcq = match &d.mmlu {
        Some(p) => data::load_mmlu(p, Some("high_school_"))?,
        None => data::builtin_mcq(cfg.mmlu_questions, cfg.seed),
    };
    let qa = match &d.simpleqa {
        Some(p) => data::load_simpleqa(p)?,
        None => data::builtin_short_qa(cfg.simpleqa_questions, cfg.seed),
    };
    Ok(Items {
        sentiment,
        math: take(math, cfg.backtracking_problems),
        refusal,
        mcq: take(mcq, cfg.mmlu_questions),
        qa: take(qa, cfg.simpleqa_questions),
    })
}

/// Questions for correctness tracking (§7.3): the suite's math problems and MMLU questions.
pub struct TrackingItems {
    pub math: Vec<MathProblem>,
    pub mcq: Vec<Mcq>,
}

/// Loads the tracking questions with the suite's data settings (`n` of each).
pub fn tracking_items(cfg: &SteeringConfig, n: usize) -> Result<TrackingItems, EvalError> {
    let math = match &cfg.data.gsm8k {
        Some(p) => data::load_gsm8k(p)?,
        None => data::builtin_math(n, cfg.seed),
    };
    let mcq = match &cfg.data.mmlu {
        Some(p) => data::load_mmlu(p, Some("high_school_"))?,
        None => data::builtin_mcq(n, cfg.seed),
    };
    Ok(TrackingItems { math: take(math, n), mcq: take(mcq, n) })
}

/// A generation item: id, group, prompt text.
struct GenItem {
    id: String,
    group: String,
    prompt: String,
}

fn gen_items(kind: EvalKind, items: &Items) -> Vec<GenItem> {
    match kind {
        EvalKind::Sentiment => items
            .sentiment
            .iter()
            .map(|p| GenItem {
                id: p.id.clone(),
                group: format!("{:?}", p.category).to_lowercase(),
                prompt: p.text.clone(),
            })
            .collect(),
        EvalKind::Backtracking => items
            .math
            .iter()
            .map(|p| GenItem { id: p.id.clone(), group: "math".into(), prompt: p.question.clone() })
            .collect(),
        EvalKind::Refusal => items
            .refusal
            .iter()
            .map(|p| GenItem {
                id: p.id.clone(),
                group: p.split.to_string(),
                prompt: p.prompt.clone(),
            })
            .collect(),
        EvalKind::Confidence => Vec::new(),
    }
}

fn samples_of(kind: EvalKind, cfg: &SteeringConfig) -> usize {
    match kind {
        EvalKind::Sentiment => cfg.sentiment_samples,
        EvalKind::Backtracking => cfg.backtracking_samples,
        EvalKind::Refusal => cfg.refusal_samples,
        EvalKind::Confidence => 1,
    }
}

/// The cached unsteered Phase-0 answers of one model, rendered as Phase-1 conversations.
struct Phase1 {
    /// (id, group, prompt rendered for the P(True) forward, phase-0 answer, correct?)
    items: Vec<(String, String, Rendered, String, bool)>,
    true_id: i64,
    false_id: i64,
}

/// The question wording of Phase 1 (docs/protocol.md §6.4, verbatim).
pub const PTRUE_QUESTION: &str = "Is your proposed answer correct? Answer only 'True' or 'False'.";

fn single_token(subject: &Subject, text: &str) -> Result<i64, EvalError> {
    let ids = subject.tokenizer.encode(text, false).map_err(|e| EvalError::Model(e.to_string()))?;
    ids.first()
        .map(|&i| i64::from(i))
        .ok_or_else(|| EvalError::Model(format!("`{text}` encodes to no tokens")))
}

/// The first tokens of `True` and `False`, which must differ.
pub(crate) fn true_false_ids(subject: &Subject) -> Result<(i64, i64), EvalError> {
    let true_id = single_token(subject, "True")?;
    let false_id = single_token(subject, "False")?;
    if true_id == false_id {
        return Err(EvalError::Model("`True` and `False` start with the same token".into()));
    }
    Ok((true_id, false_id))
}

/// MMLU Phase 0 (unsteered): one action-masked forward per question, the argmax over the
/// four letters (0..4).
pub(crate) fn mcq_picks(
    subject: &Subject,
    mcq: &[Mcq],
    batch: usize,
) -> Result<Vec<usize>, EvalError> {
    let letters: Vec<i64> =
        ["A", "B", "C", "D"].iter().map(|l| single_token(subject, l)).collect::<Result<_, _>>()?;
    let prompts: Vec<Rendered> = mcq
        .iter()
        .map(|q| render(subject, &[Message::user(data::format_mcq(q))], true))
        .collect::<Result<_, _>>()?;
    let (logps, _) = last_logits(subject, &prompts, None, &[], batch)?;
    Ok(logps
        .iter()
        .map(|lp| {
            let scores: Vec<f64> = letters.iter().map(|&i| lp.double_value(&[i])).collect();
            (0..4).max_by(|&a, &b| scores[a].total_cmp(&scores[b])).unwrap_or(0)
        })
        .collect())
}

fn phase1(subject: &Subject, items: &Items, cfg: &SteeringConfig) -> Result<Phase1, EvalError> {
    let (true_id, false_id) = true_false_ids(subject)?;
    let mut out = Vec::new();
    for (q, pick) in items.mcq.iter().zip(mcq_picks(subject, &items.mcq, cfg.batch)?) {
        let answer = ["A", "B", "C", "D"][pick].to_string();
        let msgs = [
            Message::user(data::format_mcq(q)),
            Message::assistant(answer.clone()),
            Message::user(PTRUE_QUESTION),
        ];
        out.push((
            q.id.clone(),
            "mmlu".into(),
            render(subject, &msgs, true)?,
            answer,
            pick == q.answer,
        ));
    }
    // SimpleQA: a greedy answer.
    let prompts: Vec<Rendered> = items
        .qa
        .iter()
        .map(|q| render(subject, &[Message::user(q.question.clone())], true))
        .collect::<Result<_, _>>()?;
    let seeds = vec![0u64; prompts.len()];
    let settings = GenSettings {
        max_new_tokens: cfg.phase0_max_new_tokens,
        sampling: Sampling::GREEDY,
        batch: cfg.batch,
    };
    let answers = generate(subject, &prompts, &seeds, settings, None, |_| {})?;
    for (q, a) in items.qa.iter().zip(answers) {
        let a = a.trim().to_string();
        let msgs = [
            Message::user(q.question.clone()),
            Message::assistant(a.clone()),
            Message::user(PTRUE_QUESTION),
        ];
        let ok = data::short_answer_matches(&a, &q.answer);
        out.push((q.id.clone(), "simpleqa".into(), render(subject, &msgs, true)?, a, ok));
    }
    Ok(Phase1 { items: out, true_id, false_id })
}

/// Normalised `P(True) / (P(True) + P(False))` from next-token log-probabilities.
pub fn p_true(logp: &Tensor, true_id: i64, false_id: i64) -> f64 {
    let t = logp.double_value(&[true_id]);
    let f = logp.double_value(&[false_id]);
    let m = t.max(f);
    let (et, ef) = ((t - m).exp(), (f - m).exp());
    et / (et + ef)
}

/// Label → metric and incoherence for the judged evaluations.
fn metric_of(kind: EvalKind, label: &Option<Label>) -> (Option<f64>, bool) {
    match (kind, label) {
        (EvalKind::Sentiment, Some(Label::Sentiment(s))) => (Some(*s as f64), false),
        (EvalKind::Backtracking, Some(Label::Backtracking(c))) => (
            Some(f64::from(u8::from(*c == BacktrackClass::Backtracking))),
            *c == BacktrackClass::Nonsensical,
        ),
        (EvalKind::Refusal, Some(Label::Refusal(c))) => (
            Some(f64::from(u8::from(matches!(
                c,
                RefusalClass::DirectRefusal | RefusalClass::IndirectRefusal
            )))),
            *c == RefusalClass::Nonsensical,
        ),
        _ => (None, false),
    }
}

fn label_name(label: &Option<Label>) -> Option<String> {
    label.as_ref().map(|l| match l {
        Label::Sentiment(s) => s.to_string(),
        Label::Backtracking(c) => serde_json::to_value(c)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        Label::Refusal(c) => serde_json::to_value(c)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
    })
}

fn task_of(kind: EvalKind) -> Task {
    match kind {
        EvalKind::Sentiment => Task::Sentiment,
        EvalKind::Backtracking => Task::Backtracking,
        _ => Task::Refusal,
    }
}

/// A steering cell: condition × concept × layer, with its vector and the α → coefficient map.
struct Cell<'a> {
    condition: Condition,
    concept: Concept,
    subject: &'a Subject,
    model: &'static str,
    layer: usize,
    vector: Tensor,
    /// coefficient = alpha × scale
    scale: f64,
}

fn cells<'a>(inputs: &SuiteInputs<'a>, cfg: &SteeringConfig) -> Result<Vec<Cell<'a>>, EvalError> {
    let mut out = Vec::new();
    for &condition in &cfg.conditions {
        for &concept in &cfg.concepts {
            let v_layer = inputs.v.layer(concept).ok_or_else(|| {
                EvalError::Input(format!(
                    "the trained vectors have no selected layer for {}",
                    concept.name()
                ))
            })?;
            let layers = cfg.layers.clone().unwrap_or_else(|| vec![v_layer]);
            for layer in layers {
                let v = inputs.v.vector(concept).get(layer as i64).to_kind(Kind::Float);
                let v_norm = v.norm().double_value(&[]);
                let need = |s: Option<&'a Subject>, what: &str| {
                    s.ok_or_else(|| {
                        EvalError::Input(format!("condition {}: no {what} model", condition.name()))
                    })
                };
                let cell = match condition {
                    Condition::NaiveV => Cell {
                        condition,
                        concept,
                        subject: need(inputs.naive, "naive")?,
                        model: "naive",
                        layer,
                        vector: v,
                        scale: 1.0,
                    },
                    Condition::TrainedV => Cell {
                        condition,
                        concept,
                        subject: need(inputs.trained, "trained")?,
                        model: "trained",
                        layer,
                        vector: v,
                        scale: 1.0,
                    },
                    Condition::NaiveU => {
                        let u = inputs.u.ok_or_else(|| {
                            EvalError::Input("condition naive-u: no naive extraction (u)".into())
                        })?;
                        let u_layer = if cfg.layers.is_some() {
                            layer
                        } else {
                            u.layer(concept).ok_or_else(|| {
                                EvalError::Input(format!(
                                    "u has no selected layer for {}",
                                    concept.name()
                                ))
                            })?
                        };
                        let uv = u.vector(concept).get(u_layer as i64).to_kind(Kind::Float);
                        let u_norm = uv.norm().double_value(&[]).max(1e-30);
                        // β = α‖v‖/‖u‖ (§3.7), with ‖v‖ at v's layer.
                        Cell {
                            condition,
                            concept,
                            subject: need(inputs.naive, "naive")?,
                            model: "naive",
                            layer: u_layer,
                            vector: uv,
                            scale: v_norm / u_norm,
                        }
                    }
                    Condition::NaiveRandom => {
                        let h = v.size()[0] as usize;
                        let mut rng = WaxRng::new(
                            cfg.seed ^ (layer as u64) << 8 ^ concept.index() as u64,
                            Stream::NullDirections,
                        );
                        let dir: Vec<f32> = (0..h).map(|_| rng.normal() as f32).collect();
                        let dir = Tensor::from_slice(&dir);
                        let dir = &dir / dir.norm().double_value(&[]) * v_norm;
                        Cell {
                            condition,
                            concept,
                            subject: need(inputs.naive, "naive")?,
                            model: "naive",
                            layer,
                            vector: dir,
                            scale: 1.0,
                        }
                    }
                };
                out.push(cell);
            }
        }
    }
    Ok(out)
}

/// Runs the suite and writes `samples.jsonl`, `means.jsonl` and `slopes.jsonl` into `out`.
pub fn run_suite(
    inputs: &SuiteInputs,
    cfg: &SteeringConfig,
    judge: &mut dyn Judge,
    out: &Path,
    progress: &mut Progress,
) -> Result<(Vec<MeanRow>, Vec<SlopeRow>), EvalError> {
    cfg.validate()?;
    let items = load_items(cfg, inputs.v)?;
    let cells = cells(inputs, cfg)?;
    let mut records: Vec<Record> = Vec::new();
    let mut phase1_cache: Vec<(&'static str, Phase1)> = Vec::new();
    let proxy = judge.is_proxy();
    for cell in &cells {
        for &kind in &cfg.evals {
            for &alpha in &cfg.alphas {
                let coefficient = alpha * cell.scale;
                let steer =
                    Steer { layer: cell.layer, vector: cell.vector.shallow_clone(), coefficient };
                let label = format!(
                    "{} {} {} L{} α={alpha:+}",
                    kind.name(),
                    cell.condition.name(),
                    cell.concept.name(),
                    cell.layer
                );
                let base = |item: &str, group: &str, sample: usize, prompt: &str| Record {
                    eval: kind,
                    condition: cell.condition,
                    concept: cell.concept,
                    model: cell.model.into(),
                    layer: cell.layer,
                    alpha,
                    coefficient,
                    item: item.into(),
                    group: group.into(),
                    sample,
                    prompt: prompt.into(),
                    response: String::new(),
                    label: None,
                    metric: None,
                    incoherent: false,
                    judge_source: None,
                    judge_raw: None,
                    proxy,
                };
                if kind == EvalKind::Confidence {
                    if !phase1_cache.iter().any(|(m, _)| *m == cell.model) {
                        progress(&format!("confidence phase 0 ({} model)", cell.model), 0, 1);
                        phase1_cache.push((cell.model, phase1(cell.subject, &items, cfg)?));
                    }
                    let p1 =
                        &phase1_cache.iter().find(|(m, _)| *m == cell.model).expect("cached").1;
                    let rendered: Vec<Rendered> = p1.items.iter().map(|x| x.2.clone()).collect();
                    progress(&label, 0, rendered.len());
                    let (logps, _) =
                        last_logits(cell.subject, &rendered, Some(&steer), &[], cfg.batch)?;
                    for ((id, group, _, answer, correct), lp) in p1.items.iter().zip(&logps) {
                        let mut r = base(id, group, 0, answer);
                        r.response = answer.clone();
                        r.label =
                            Some(if *correct { "correct".into() } else { "incorrect".into() });
                        r.metric = Some(p_true(lp, p1.true_id, p1.false_id));
                        r.proxy = false;
                        records.push(r);
                    }
                    progress(&label, rendered.len(), rendered.len());
                    continue;
                }
                let gi = gen_items(kind, &items);
                let k = samples_of(kind, cfg);
                let mut prompts = Vec::new();
                let mut seeds = Vec::new();
                let mut meta = Vec::new();
                for (n, it) in gi.iter().enumerate() {
                    let r = render(cell.subject, &[Message::user(it.prompt.clone())], true)?;
                    for s in 0..k {
                        prompts.push(r.clone());
                        // Same seeds across α and conditions: common random numbers.
                        seeds.push(
                            cfg.seed.wrapping_mul(1_000_003).wrapping_add((n * 1000 + s) as u64),
                        );
                        meta.push((n, s));
                    }
                }
                let total = prompts.len();
                let mut done = 0usize;
                progress(&label, 0, total);
                let settings = GenSettings {
                    max_new_tokens: cfg.max_new_tokens,
                    sampling: Sampling {
                        temperature: cfg.temperature,
                        top_k: None,
                        top_p: cfg.top_p,
                    },
                    batch: cfg.batch,
                };
                let texts =
                    generate(cell.subject, &prompts, &seeds, settings, Some(&steer), |n| {
                        done += n;
                        progress(&label, done, total);
                    })?;
                let judged: Vec<JudgeItem> = meta
                    .iter()
                    .zip(&texts)
                    .map(|(&(n, _), t)| JudgeItem {
                        prompt: gi[n].prompt.clone(),
                        response: t.clone(),
                    })
                    .collect();
                let jl = format!("judging {label}");
                let verdicts =
                    judge_all(judge, task_of(kind), &judged, &mut |d, t| progress(&jl, d, t))?;
                for ((&(n, s), text), v) in meta.iter().zip(texts).zip(verdicts) {
                    let mut r = base(&gi[n].id, &gi[n].group, s, &gi[n].prompt);
                    let (metric, incoherent) = metric_of(kind, &v.label);
                    r.response = text;
                    r.label = label_name(&v.label);
                    r.metric = metric;
                    r.incoherent = incoherent;
                    r.judge_source = serde_json::to_value(v.source)
                        .ok()
                        .and_then(|x| x.as_str().map(str::to_string));
                    r.judge_raw = Some(v.raw);
                    records.push(r);
                }
            }
        }
    }
    let (means, slopes) = summarise(&records, cfg);
    std::fs::create_dir_all(out)
        .map_err(|e| EvalError::Input(format!("{}: cannot create: {e}", out.display())))?;
    crate::vectors::store::write_jsonl(&out.join("samples.jsonl"), &records)?;
    crate::vectors::store::write_jsonl(&out.join("means.jsonl"), &means)?;
    crate::vectors::store::write_jsonl(&out.join("slopes.jsonl"), &slopes)?;
    Ok((means, slopes))
}

/// Per-α means and per-cell OLS slopes (overall, and per group when there are several).
pub fn summarise(records: &[Record], cfg: &SteeringConfig) -> (Vec<MeanRow>, Vec<SlopeRow>) {
    let mut keys: Vec<(EvalKind, String, Condition, Concept, usize)> = Vec::new();
    for r in records {
        for g in ["all".to_string(), r.group.clone()] {
            let k = (r.eval, g, r.condition, r.concept, r.layer);
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
    }
    let mut means = Vec::new();
    let mut slopes = Vec::new();
    for (eval, group, condition, concept, layer) in keys {
        let cell: Vec<&Record> = records
            .iter()
            .filter(|r| {
                r.eval == eval
                    && r.condition == condition
                    && r.concept == concept
                    && r.layer == layer
                    && (group == "all" || r.group == group)
            })
            .collect();
        if group != "all"
            && cell.len()
                == records
                    .iter()
                    .filter(|r| {
                        r.eval == eval
                            && r.condition == condition
                            && r.concept == concept
                            && r.layer == layer
                    })
                    .count()
        {
            continue; // only one group: the "all" rows say it
        }
        for &alpha in &cfg.alphas {
            let at: Vec<&&Record> = cell.iter().filter(|r| r.alpha == alpha).collect();
            let vals: Vec<f64> = at.iter().filter_map(|r| r.metric).collect();
            let parse = at.iter().filter(|r| r.metric.is_some()).count();
            means.push(MeanRow {
                eval,
                group: group.clone(),
                condition,
                concept,
                layer,
                alpha,
                n: vals.len(),
                unparseable: at.len() - parse,
                mean: mean(&vals),
                incoherence: if parse == 0 {
                    f64::NAN
                } else {
                    at.iter().filter(|r| r.incoherent).count() as f64 / parse as f64
                },
            });
        }
        let xy: Vec<(f64, f64)> =
            cell.iter().filter_map(|r| r.metric.map(|m| (r.alpha, m))).collect();
        let (x, y): (Vec<f64>, Vec<f64>) = xy.iter().copied().unzip();
        let Some(fit) = ols(&x, &y) else { continue };
        let ci = bootstrap_ci(&[xy.len()], cfg.resamples, 0.95, cfg.seed, |idx| {
            let (a, b): (Vec<f64>, Vec<f64>) = idx[0].iter().map(|&i| xy[i]).unzip();
            ols(&a, &b).map_or(f64::NAN, |f| f.slope)
        });
        slopes.push(SlopeRow {
            eval,
            group,
            condition,
            concept,
            layer,
            n: xy.len(),
            slope: fit.slope,
            slope_se: fit.slope_se,
            ci_lo: ci.lo,
            ci_hi: ci.hi,
            proxy_judge: cell.iter().any(|r| r.proxy),
        });
    }
    (means, slopes)
}
