//! One extraction job as `wax extract` runs it: the trained model (v) and, optionally, its
//! maze-naive counterpart (u), each written to its own folder with its geometry, plus a side-by-
//! side comparison.

use std::path::{Path, PathBuf};

use serde::Serialize;
use tch::{Device, Kind};

use super::extract::{ExtractConfig, ExtractProgress, Extraction, extract};
use super::geometry::{Geometry, Uncertainty, geometry};
use super::store::write_json;
use super::{Subject, VectorError};
use crate::tokenizer::TemplateOptions;

/// What to extract.
#[derive(Debug, Clone)]
pub struct ExtractJob {
    /// The trained checkpoint (or any model).
    pub model: String,
    /// The maze-naive model; `None` extracts only `model`.
    pub naive: Option<String>,
    pub config: ExtractConfig,
    pub device: Device,
    pub kind: Kind,
    pub template_options: TemplateOptions,
    pub uncertainty: Uncertainty,
    pub out: PathBuf,
}

/// The headline numbers of one model.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ModelSummary {
    pub role: String,
    pub model: String,
    pub dir: String,
    pub layer_mold: Option<usize>,
    pub layer_gold: Option<usize>,
    pub emotion_layer: Option<usize>,
    pub cos_avg: f64,
    pub cos_min: f64,
    pub cos_argmin: usize,
    pub cos_min_ci: (f64, f64),
    pub cos_min_null_p: f64,
    pub centred_mold_gold: f64,
    pub seconds: f64,
}

/// The whole job's summary (`summary.json`).
#[derive(Debug, Clone, Serialize)]
pub struct ExtractReport {
    pub models: Vec<ModelSummary>,
    pub out: String,
}

/// Whom a progress message is about.
#[derive(Debug, Clone, Copy)]
pub enum Role {
    Trained,
    Naive,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Trained => "trained",
            Role::Naive => "naive",
        }
    }
}

/// Extracts the vectors of `reference` into `dir` (`vectors.safetensors`, `layers.jsonl`,
/// `extraction.json`, `geometry.json`) and returns them with the model's summary.
#[allow(clippy::too_many_arguments)]
pub fn extract_to(
    reference: &str,
    role: Role,
    config: &ExtractConfig,
    device: Device,
    kind: Kind,
    template_options: TemplateOptions,
    uncertainty: Uncertainty,
    dir: &Path,
    progress: &mut dyn FnMut(Role, ExtractProgress),
) -> Result<(Extraction, ModelSummary), VectorError> {
    let _guard = tch::no_grad_guard();
    let subject = Subject::load(reference, device, kind, template_options)?;
    let e = extract(&subject, config, |p| progress(role, p))?;
    e.save(dir)?;
    let g = geometry(&e, uncertainty);
    write_json(&dir.join("geometry.json"), &g)?;
    let summary = summarise(role, &e, &g, dir);
    Ok((e, summary))
}

fn summarise(role: Role, e: &Extraction, g: &Geometry, dir: &Path) -> ModelSummary {
    use super::Concept;
    ModelSummary {
        role: role.name().into(),
        model: e.meta.model.clone(),
        dir: dir.display().to_string(),
        layer_mold: e.layer(Concept::Mold),
        layer_gold: e.layer(Concept::Gold),
        emotion_layer: e.emotion_layer,
        cos_avg: g.avg,
        cos_min: g.min,
        cos_argmin: g.argmin,
        cos_min_ci: (g.min_headline.ci_lo, g.min_headline.ci_hi),
        cos_min_null_p: g.min_headline.null_p,
        centred_mold_gold: g.centred.mold_gold,
        seconds: e.meta.seconds,
    }
}

fn one(
    job: &ExtractJob,
    role: Role,
    reference: &str,
    progress: &mut dyn FnMut(Role, ExtractProgress),
) -> Result<(Extraction, ModelSummary), VectorError> {
    let dir = job.out.join(role.name());
    extract_to(
        reference,
        role,
        &job.config,
        job.device,
        job.kind,
        job.template_options,
        job.uncertainty,
        &dir,
        progress,
    )
}

/// Runs the job; the naive model defaults to the trained checkpoint's base model when the
/// caller passes `naive = Some("auto")`.
pub fn run_extract(
    job: &ExtractJob,
    mut progress: impl FnMut(Role, ExtractProgress),
) -> Result<ExtractReport, VectorError> {
    let mut models = Vec::new();
    let (e, summary) = one(job, Role::Trained, &job.model, &mut progress)?;
    models.push(summary);
    let naive = match job.naive.as_deref() {
        Some("auto") => Some(e.meta.base_model.clone().ok_or_else(|| {
            VectorError::Input(format!(
                "--naive auto: {} is not a wax RL checkpoint (no state.json names its base model); \
                 name the maze-naive model explicitly",
                job.model
            ))
        })?),
        other => other.map(str::to_string),
    };
    drop(e);
    if let Some(n) = naive {
        let (_, summary) = one(job, Role::Naive, &n, &mut progress)?;
        models.push(summary);
    }
    let report = ExtractReport { models, out: job.out.display().to_string() };
    write_json(&job.out.join("summary.json"), &report)?;
    Ok(report)
}
