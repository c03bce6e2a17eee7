//! A model under measurement: weights, tokenizer, chat template and the maze turn layout, plus
//! what its snapshot says about how it was made (trainer state, when present).

use std::path::{Path, PathBuf};

use serde_json::Value;
use tch::{Device, Kind};

use super::VectorError;
use crate::builtin::resolve_model_ref;
use crate::maze::{EnvConfig, MazeConfig};
use crate::model::Model;
use crate::rl::rollout::TurnLayout;
use crate::tokenizer::{ChatTemplate, TemplateOptions, Tokenizer};

/// A loaded model with everything needed to feed it conversations.
pub struct Subject {
    /// The reference the user gave (`builtin:1m`, a directory, …).
    pub reference: String,
    pub dir: PathBuf,
    pub model: Model,
    pub tokenizer: Tokenizer,
    /// The snapshot's chat template (or the plain dialogue template for base models).
    pub template: ChatTemplate,
    /// The maze conversation layout used in RL (per-turn segments + one move token).
    pub layout: TurnLayout,
    /// The chat-template switches as used for this model.
    pub template_options: TemplateOptions,
    /// What the trainer's `state.json` next to the snapshot says (algorithm, seed, step, maze,
    /// env), if the snapshot is a wax checkpoint.
    pub provenance: Provenance,
}

/// Where a snapshot came from.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Provenance {
    /// The base model the run started from (`config.model` of the trainer state).
    pub base_model: Option<String>,
    pub algorithm: Option<String>,
    pub seed: Option<u64>,
    pub step: Option<u64>,
    /// The training run's maze and episode rules (the extraction default when present).
    #[serde(skip)]
    pub maze: Option<MazeConfig>,
    #[serde(skip)]
    pub env: Option<EnvConfig>,
    #[serde(skip)]
    pub template_options: TemplateOptions,
}

impl Provenance {
    /// Reads `<dir>/../state.json` (a wax RL checkpoint `step-N/model`); missing → default.
    pub fn of_snapshot(dir: &Path) -> Result<Provenance, VectorError> {
        let Some(state) = dir.parent().map(|p| p.join("state.json")) else {
            return Ok(Provenance::default());
        };
        if !state.is_file() {
            return Ok(Provenance::default());
        }
        let text = std::fs::read_to_string(&state)
            .map_err(|e| VectorError::io(&state, format!("cannot read: {e}")))?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| VectorError::io(&state, format!("not JSON: {e}")))?;
        let cfg = &v["config"];
        let field = |name: &str| -> Result<Option<Value>, VectorError> {
            Ok(cfg.get(name).filter(|x| !x.is_null()).cloned())
        };
        let parse = |name: &str| -> Result<Option<Value>, VectorError> { field(name) };
        let maze = match parse("maze")? {
            Some(m) => Some(
                serde_json::from_value(m)
                    .map_err(|e| VectorError::io(&state, format!("config.maze: {e}")))?,
            ),
            None => None,
        };
        let env = match parse("env")? {
            Some(m) => Some(
                serde_json::from_value(m)
                    .map_err(|e| VectorError::io(&state, format!("config.env: {e}")))?,
            ),
            None => None,
        };
        Ok(Provenance {
            base_model: cfg["model"].as_str().map(str::to_string),
            algorithm: cfg["algorithm"].as_str().map(str::to_string),
            seed: cfg["seed"].as_u64(),
            step: v["step"].as_u64(),
            maze,
            env,
            template_options: TemplateOptions {
                enable_thinking: cfg["enable_thinking"].as_bool(),
                reasoning_effort: match parse("reasoning_effort")? {
                    Some(r) => Some(serde_json::from_value(r).map_err(|e| {
                        VectorError::io(&state, format!("config.reasoning_effort: {e}"))
                    })?),
                    None => None,
                },
            },
        })
    }
}

impl Subject {
    /// Loads `reference` (a `builtin:<size>` or a snapshot directory) on `device` in `kind`.
    /// The switches set in `template_options` override what the trainer used.
    pub fn load(
        reference: &str,
        device: Device,
        kind: Kind,
        template_options: TemplateOptions,
    ) -> Result<Subject, VectorError> {
        let dir = resolve_model_ref(reference)
            .map_err(|e| VectorError::Model(format!("{reference}: {e}")))?;
        let provenance = Provenance::of_snapshot(&dir)?;
        let model = Model::load(&dir, device, kind)
            .map_err(|e| VectorError::Model(format!("{}: {e}", dir.display())))?;
        let tokenizer = Tokenizer::load(&dir)
            .map_err(|e| VectorError::Model(format!("{}: tokenizer: {e}", dir.display())))?;
        let template = tokenizer
            .chat_template_or_plain()
            .map_err(|e| VectorError::Model(format!("chat template: {e}")))?;
        let template_options = template_options.or(provenance.template_options);
        let layout = TurnLayout::new(&tokenizer, template.clone(), &template_options)
            .map_err(|e| VectorError::Model(format!("{}: maze layout: {e}", dir.display())))?;
        Ok(Subject {
            reference: reference.to_string(),
            dir,
            model,
            tokenizer,
            template,
            layout,
            template_options,
            provenance,
        })
    }

    /// Decoder layers.
    pub fn num_layers(&self) -> usize {
        self.model.config().num_layers as usize
    }

    /// Residual width.
    pub fn hidden(&self) -> i64 {
        self.model.config().hidden_size
    }
}
