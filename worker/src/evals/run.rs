//! `wax eval <suite>`: the measurements on an extraction folder (from `wax extract`), written
//! as JSON / JSONL tables that pandas reads.
//!
//! Suites: `geometry` (per-layer cosines, centred means, norms, with intervals and nulls),
//! `lens` (logit lens of v and u at ⌊5L/6⌋, with and without the final norm), `emotions`
//! (emotion vectors, the v scatter and slope, PC1 loadings), `tracking` (maze, correctness and
//! confidence-tertile d), `steering` (the behaviour suite) and `all`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::{Device, Kind};

use super::EvalError;
use super::chat::{GenSettings, generate, render};
use super::data::{self, EmotionCorpus, Stimulus};
use super::judge::{self, JudgeConfig};
use super::steering::{SteeringConfig, SuiteInputs, run_suite, tracking_items};
use super::tracking::{TrackingConfig, correctness_tracking, maze_tracking};
use crate::generate::Sampling;
use crate::tokenizer::{Message, TemplateOptions};
use crate::vectors::emotions::{EmotionConfig, align, emotion_vectors, pc1_table};
use crate::vectors::geometry::{Uncertainty, geometry};
use crate::vectors::lens::logit_lens;
use crate::vectors::select::lens_layer;
use crate::vectors::store::{write_json, write_jsonl};
use crate::vectors::{Concept, Extraction, Subject};

/// The measurement suites.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Suite {
    Geometry,
    Lens,
    Emotions,
    Tracking,
    Steering,
    All,
}

impl Suite {
    pub fn parse(s: &str) -> Option<Suite> {
        Some(match s {
            "geometry" => Suite::Geometry,
            "lens" | "logit-lens" => Suite::Lens,
            "emotions" => Suite::Emotions,
            "tracking" => Suite::Tracking,
            "steering" => Suite::Steering,
            "all" => Suite::All,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Suite::Geometry => "geometry",
            Suite::Lens => "lens",
            Suite::Emotions => "emotions",
            Suite::Tracking => "tracking",
            Suite::Steering => "steering",
            Suite::All => "all",
        }
    }
}

/// Whether `suites` asks for `s`.
fn includes(suites: &[Suite], s: Suite) -> bool {
    suites.iter().any(|&x| x == Suite::All || x == s)
}

/// What an evaluation reads: the extraction folders (`wax extract`'s `trained/` and `naive/`),
/// and optionally where their models are now, when the snapshots moved since the extraction
/// (a stage reads its inputs from a local copy of the artifacts).
#[derive(Debug, Clone, Default)]
pub struct EvalInputs {
    pub trained: PathBuf,
    pub naive: Option<PathBuf>,
    pub trained_model: Option<PathBuf>,
    pub naive_model: Option<PathBuf>,
}

/// Where emotion stories come from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmotionsSection {
    #[serde(flatten)]
    pub analysis: EmotionConfig,
    /// A JSONL corpus (`{"emotion", "text"}`, `neutral` lines form the neutral set); `None`: the
    /// built-in stimulus set.
    pub corpus: Option<PathBuf>,
    /// Write stories with a model instead (for each emotion of the built-in set).
    pub generate: Option<StoryGeneration>,
}

/// Stories written by a configured model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoryGeneration {
    pub model: String,
    #[serde(default = "six")]
    pub per_emotion: usize,
    #[serde(default = "forty")]
    pub neutral: usize,
    #[serde(default = "story_tokens")]
    pub max_new_tokens: usize,
    #[serde(default)]
    pub seed: u64,
}

fn six() -> usize {
    6
}
fn forty() -> usize {
    40
}
fn story_tokens() -> usize {
    96
}

/// The logit-lens settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LensSection {
    pub k: usize,
    /// Layers to read (None: ⌊5L/6⌋).
    pub layers: Option<Vec<usize>>,
}

impl Default for LensSection {
    fn default() -> Self {
        LensSection { k: 5, layers: None }
    }
}

/// `wax eval` settings (TOML).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    pub device: Option<String>,
    pub dtype: String,
    pub resamples: usize,
    pub null_draws: usize,
    pub seed: u64,
    pub lens: LensSection,
    pub emotions: EmotionsSection,
    pub tracking: TrackingConfig,
    /// Questions per dataset for correctness tracking.
    pub tracking_questions: usize,
    pub steering: SteeringConfig,
    pub judge: JudgeConfig,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            device: None,
            dtype: "f32".into(),
            resamples: 500,
            null_draws: 500,
            seed: 0,
            lens: LensSection::default(),
            emotions: EmotionsSection::default(),
            tracking: TrackingConfig::default(),
            tracking_questions: 100,
            steering: SteeringConfig::default(),
            judge: JudgeConfig::Offline,
        }
    }
}

impl EvalConfig {
    fn device(&self) -> Result<Device, EvalError> {
        match &self.device {
            None => Ok(Device::cuda_if_available()),
            Some(d) => crate::device::parse_device(d).ok_or_else(|| {
                EvalError::Input(format!("device `{d}`: expected cpu, cuda or cuda:N"))
            }),
        }
    }

    fn kind(&self) -> Result<Kind, EvalError> {
        crate::device::parse_kind(&self.dtype).ok_or_else(|| {
            EvalError::Input(format!("dtype `{}`: expected f32 or bf16", self.dtype))
        })
    }
}

/// Progress callback: stage description, done, total.
pub type Progress<'a> = dyn FnMut(&str, usize, usize) + 'a;

/// The files an evaluation wrote.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub out: String,
    pub files: Vec<String>,
}

struct Ctx<'a> {
    v: Extraction,
    u: Option<Extraction>,
    trained: Option<Subject>,
    naive: Option<Subject>,
    cfg: &'a EvalConfig,
}

impl Ctx<'_> {
    fn load(&mut self, which: &str) -> Result<(), EvalError> {
        let (device, kind) = (self.cfg.device()?, self.cfg.kind()?);
        if which == "trained" && self.trained.is_none() {
            self.trained = Some(Subject::load(
                &self.v.meta.model_dir,
                device,
                kind,
                TemplateOptions::default(),
            )?);
        }
        if which == "naive"
            && self.naive.is_none()
            && let Some(u) = &self.u
        {
            self.naive =
                Some(Subject::load(&u.meta.model_dir, device, kind, TemplateOptions::default())?);
        }
        Ok(())
    }
}

fn emotion_corpus(
    section: &EmotionsSection,
    cfg: &EvalConfig,
    progress: &mut Progress,
) -> Result<EmotionCorpus, EvalError> {
    if let Some(g) = &section.generate {
        let subject = Subject::load(
            &g.model,
            cfg.device()?,
            cfg.kind()?,
            TemplateOptions { enable_thinking: Some(false), reasoning_effort: None },
        )?;
        let emotions = data::builtin_emotion_corpus().emotions();
        let mut asks = Vec::new();
        for e in &emotions {
            for _ in 0..g.per_emotion {
                asks.push((e.clone(), format!("Write one short paragraph, in the first person, about a moment when you felt {e}. Do not use the word \"{e}\".")));
            }
        }
        for _ in 0..g.neutral {
            asks.push((data::emotions::NEUTRAL.to_string(), "Write one short, emotionally neutral paragraph, in the first person, describing a routine task in plain factual terms.".to_string()));
        }
        let prompts = asks
            .iter()
            .map(|(_, p)| render(&subject, &[Message::user(p.clone())], true))
            .collect::<Result<Vec<_>, _>>()?;
        let seeds: Vec<u64> = (0..prompts.len() as u64).map(|i| g.seed.wrapping_add(i)).collect();
        let settings = GenSettings {
            max_new_tokens: g.max_new_tokens,
            sampling: Sampling { temperature: 0.9, top_k: None, top_p: Some(0.95) },
            batch: 32,
        };
        let total = prompts.len();
        let mut done = 0;
        let texts = generate(&subject, &prompts, &seeds, settings, None, |n| {
            done += n;
            progress("writing emotion stories", done, total);
        })?;
        let mut corpus = EmotionCorpus { stories: Vec::new(), neutral: Vec::new() };
        for ((e, _), t) in asks.into_iter().zip(texts) {
            let t = if t.trim().is_empty() { "…".to_string() } else { t.trim().to_string() };
            if e == data::emotions::NEUTRAL {
                corpus.neutral.push(t);
            } else {
                corpus.stories.push(Stimulus { emotion: e, text: t });
            }
        }
        return Ok(corpus);
    }
    Ok(match &section.corpus {
        Some(p) => data::load_emotion_corpus(p)?,
        None => data::builtin_emotion_corpus(),
    })
}

/// Runs `suites` on the extraction folders of `inputs`: `trained` (v) and `naive` (u, optional).
pub fn run_eval(
    suites: &[Suite],
    inputs: &EvalInputs,
    cfg: &EvalConfig,
    out: &Path,
    progress: &mut Progress,
) -> Result<EvalReport, EvalError> {
    let _guard = tch::no_grad_guard();
    let naive = inputs.naive.as_deref();
    let mut v = Extraction::load(&inputs.trained)?;
    let mut u = naive.map(Extraction::load).transpose()?;
    if let Some(m) = &inputs.trained_model {
        v.meta.model_dir = m.display().to_string();
    }
    if let (Some(u), Some(m)) = (u.as_mut(), &inputs.naive_model) {
        u.meta.model_dir = m.display().to_string();
    }
    if let Some(u) = &u
        && u.meta.hidden != v.meta.hidden
    {
        return Err(EvalError::Input(format!(
            "{}: hidden size {} differs from the trained model's {}",
            naive.map(|p| p.display().to_string()).unwrap_or_default(),
            u.meta.hidden,
            v.meta.hidden
        )));
    }
    let mut ctx = Ctx { v, u, trained: None, naive: None, cfg };
    let mut files = Vec::new();
    let mut wrote = |p: PathBuf| files.push(p.display().to_string());
    let unc = Uncertainty {
        resamples: cfg.resamples,
        level: 0.95,
        null_draws: cfg.null_draws,
        seed: cfg.seed,
    };

    if includes(suites, Suite::Geometry) {
        progress("geometry", 0, 1);
        let mut rows = vec![serde_json::to_value(geometry(&ctx.v, unc)).unwrap_or_default()];
        rows[0]["role"] = "trained".into();
        if let Some(u) = &ctx.u {
            let mut g = serde_json::to_value(geometry(u, unc)).unwrap_or_default();
            g["role"] = "naive".into();
            rows.push(g);
        }
        let mut layers = Vec::new();
        for r in &rows {
            for l in r["layers"].as_array().into_iter().flatten() {
                let mut l = l.clone();
                l["role"] = r["role"].clone();
                l["model"] = r["model"].clone();
                layers.push(l);
            }
        }
        write_json(&out.join("geometry.json"), &rows)?;
        write_jsonl(&out.join("geometry_layers.jsonl"), &layers)?;
        wrote(out.join("geometry.json"));
        wrote(out.join("geometry_layers.jsonl"));
        progress("geometry", 1, 1);
    }

    if includes(suites, Suite::Lens) {
        ctx.load("trained")?;
        ctx.load("naive")?;
        let mut rows = Vec::new();
        let mut sets: Vec<(&str, &Extraction, &Subject)> = Vec::new();
        if let Some(t) = &ctx.trained {
            sets.push(("v", &ctx.v, t));
        }
        if let (Some(u), Some(n)) = (&ctx.u, &ctx.naive) {
            sets.push(("u", u, n));
        }
        for (name, e, subject) in sets {
            let layers =
                cfg.lens.layers.clone().unwrap_or_else(|| vec![lens_layer(e.meta.num_layers)]);
            for layer in layers {
                for c in [Concept::Mold, Concept::Gold] {
                    let vec = e.vector(c).get(layer as i64);
                    for final_norm in [false, true] {
                        progress("logit lens", rows.len(), 0);
                        rows.push(logit_lens(
                            &subject.model,
                            &subject.tokenizer,
                            &format!("{name}.{}", c.name()),
                            layer,
                            &vec,
                            cfg.lens.k,
                            final_norm,
                        )?);
                    }
                }
            }
        }
        write_jsonl(&out.join("lens.jsonl"), &rows)?;
        wrote(out.join("lens.jsonl"));
    }

    if includes(suites, Suite::Emotions) {
        ctx.load("naive")?;
        ctx.load("trained")?;
        let corpus = emotion_corpus(&cfg.emotions, cfg, progress)?;
        // Emotion vectors come from the maze-naive model (as in the paper), else the trained one.
        let reader = ctx
            .naive
            .as_ref()
            .or(ctx.trained.as_ref())
            .ok_or_else(|| EvalError::Input("no model to read emotions".into()))?;
        let ev = emotion_vectors(reader, &corpus, &cfg.emotions.analysis, |d, t| {
            progress("emotion stories", d, t)
        })?;
        let layer = ctx.v.emotion_layer.unwrap_or(ctx.v.meta.num_layers * 2 / 3);
        let mut aligns = vec![align(
            &ev,
            "v",
            layer,
            &ctx.v.vector(Concept::Mold).get(layer as i64),
            &ctx.v.vector(Concept::Gold).get(layer as i64),
            cfg.resamples,
            cfg.null_draws,
            cfg.seed,
        )];
        if let Some(u) = &ctx.u {
            aligns.push(align(
                &ev,
                "u",
                layer,
                &u.vector(Concept::Mold).get(layer as i64),
                &u.vector(Concept::Gold).get(layer as i64),
                cfg.resamples,
                cfg.null_draws,
                cfg.seed,
            ));
        }
        let (vm, vg) = (ctx.v.vector(Concept::Mold), ctx.v.vector(Concept::Gold));
        let uu = ctx.u.as_ref().map(|u| (u.vector(Concept::Mold), u.vector(Concept::Gold)));
        let pc1 = pc1_table(&ev, (&vm, &vg), uu.as_ref().map(|(a, b)| (a, b)))?;
        let rows: Vec<serde_json::Value> = aligns
            .iter()
            .flat_map(|a| a.rows.iter().map(move |r| serde_json::json!({"vectors": a.vectors, "layer": a.layer, "emotion": r.emotion, "cos_gold": r.cos_gold, "cos_mold": r.cos_mold})))
            .collect();
        write_jsonl(&out.join("emotions.jsonl"), &rows)?;
        let summary: Vec<serde_json::Value> = aligns
            .iter()
            .map(|a| serde_json::json!({"vectors": a.vectors, "layer": a.layer, "slope": a.slope, "slope_headline": a.slope_headline, "pearson_r": a.pearson_r, "emotions": ev.emotions.len(), "stories": ev.stories, "neutral": ev.neutral, "removed_components": ev.removed}))
            .collect();
        write_json(&out.join("emotions_summary.json"), &summary)?;
        write_jsonl(&out.join("pc1.jsonl"), &pc1)?;
        for f in ["emotions.jsonl", "emotions_summary.json", "pc1.jsonl"] {
            wrote(out.join(f));
        }
    }

    if includes(suites, Suite::Tracking) {
        ctx.load("trained")?;
        ctx.load("naive")?;
        let trained =
            ctx.trained.as_ref().ok_or_else(|| EvalError::Input("no trained model".into()))?;
        progress("maze tracking", 0, 1);
        let mut rows =
            maze_tracking(trained, ctx.naive.as_ref(), &ctx.v, ctx.u.as_ref(), &cfg.tracking)?;
        progress("correctness tracking", 0, 1);
        let items = tracking_items(&cfg.steering, cfg.tracking_questions)?;
        rows.extend(correctness_tracking(
            trained,
            ctx.naive.as_ref(),
            &ctx.v,
            &items,
            &cfg.tracking,
            cfg.steering.batch,
            cfg.steering.phase0_max_new_tokens,
        )?);
        write_jsonl(&out.join("tracking.jsonl"), &rows)?;
        wrote(out.join("tracking.jsonl"));
    }

    if includes(suites, Suite::Steering) {
        ctx.load("trained")?;
        ctx.load("naive")?;
        let mut judge = judge::build(&cfg.judge)?;
        let inputs = SuiteInputs {
            trained: ctx.trained.as_ref(),
            naive: ctx.naive.as_ref(),
            v: &ctx.v,
            u: ctx.u.as_ref(),
        };
        let mut steering = cfg.steering.clone();
        if ctx.naive.is_none() {
            steering.conditions.retain(|c| *c == super::steering::Condition::TrainedV);
        }
        let dir = out.join("steering");
        run_suite(&inputs, &steering, judge.as_mut(), &dir, progress)?;
        for f in ["samples.jsonl", "means.jsonl", "slopes.jsonl"] {
            wrote(dir.join(f));
        }
    }
    let report = EvalReport { out: out.display().to_string(), files };
    write_json(&out.join("eval.json"), &report)?;
    Ok(report)
}
