//! Concept-vector extraction (docs/protocol.md §3–§4).
//!
//! Synthetic trajectories per final-tile class (§3.1) are rendered in the model's maze layout
//! (the RL token layout: no end-of-turn after the last move) and the block output of every layer
//! is read at the last move letter (§3.2). Memory stays bounded: trajectories are generated and
//! forwarded in chunks, and only per-class sums are kept (plus `blocks` per-class block sums for
//! the bootstrap), never the activations.
//!
//! The last `heldout_fraction` of each class's indices are held out ([`HeldoutSplit`]: an
//! index split, the same for every class, so that held-out AUROC is unbiased under the null).
//! The vectors are fitted on the rest: class means `μ_c`, one-vs-rest `v_c = μ_c − mean(rest)` pooled over
//! the other classes' trajectories (Eq. 1/7), and the Path-reference `ṽ_c = μ_c − μ_Path`
//! (Eq. 3). The held-out trajectories are then projected on the fitted vectors at every layer
//! for layer selection (§4.1), so the selected layer scores exactly the vector that is steered.

use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use super::capture::{Probe, capture_spans};
use super::select::{LayerScore, Selection, emotion_layer, score_layer, select_layer};
use super::split::HeldoutSplit;
use super::store::{read_safetensors, write_json, write_jsonl, write_safetensors};
use super::{Subject, VectorError};
use crate::maze::render::Role;
use crate::maze::{
    EnvConfig, MazeConfig, SyntheticConfig, SyntheticGenerator, SyntheticTrajectory, Tile,
};
use crate::rng::{Stream, WaxRng};

/// The three concepts, in the paper's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Concept {
    Mold,
    Gold,
    Path,
}

impl Concept {
    pub const ALL: [Concept; 3] = [Concept::Mold, Concept::Gold, Concept::Path];

    pub fn name(self) -> &'static str {
        match self {
            Concept::Mold => "mold",
            Concept::Gold => "gold",
            Concept::Path => "path",
        }
    }

    /// Position in [`Concept::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn tile(self) -> Tile {
        match self {
            Concept::Mold => Tile::Mold,
            Concept::Gold => Tile::Gold,
            Concept::Path => Tile::Path,
        }
    }

    pub fn of_tile(t: Tile) -> Concept {
        match t {
            Tile::Mold => Concept::Mold,
            Tile::Gold => Concept::Gold,
            Tile::Path => Concept::Path,
        }
    }

    pub fn parse(s: &str) -> Option<Concept> {
        Concept::ALL.into_iter().find(|c| c.name().eq_ignore_ascii_case(s))
    }
}

/// How an extraction runs. Defaults are the paper's where it gives them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExtractConfig {
    /// Trajectory construction (paper: 5,000 per class, seeds from 474747).
    pub synthetic: SyntheticConfig,
    /// Maze generation; `None`: the training run's (from the checkpoint), else the paper's.
    pub maze: Option<MazeConfig>,
    /// Episode rules for rendering (clause order, melting, mapping); `None`: as for `maze`.
    pub env: Option<EnvConfig>,
    /// Share of each class's trajectories held out for layer selection (the paper does not
    /// give it): the last `round(heldout_fraction × per_class)` indices of every class.
    pub heldout_fraction: f64,
    /// Seed of the bootstrap's random assignment of fitted trajectories to blocks.
    pub block_seed: u64,
    /// Padded tokens per forward batch.
    pub batch_tokens: usize,
    /// Trajectories generated and forwarded per chunk.
    pub chunk: usize,
    /// Per-class block sums kept for the bootstrap.
    pub blocks: usize,
    /// Histogram bins of the overlap score.
    pub overlap_bins: usize,
}

impl Default for ExtractConfig {
    fn default() -> Self {
        ExtractConfig {
            synthetic: SyntheticConfig::default(),
            maze: None,
            env: None,
            heldout_fraction: 0.2,
            block_seed: 0,
            batch_tokens: 16_384,
            chunk: 512,
            blocks: 20,
            overlap_bins: 50,
        }
    }
}

impl ExtractConfig {
    pub fn validate(&self) -> Result<(), VectorError> {
        let bad =
            |field: &str, why: &str| Err(VectorError::Input(format!("extract.{field}: {why}")));
        if !(self.heldout_fraction > 0.0 && self.heldout_fraction < 1.0) {
            return bad("heldout_fraction", "must lie in (0, 1)");
        }
        HeldoutSplit::new(self.synthetic.per_class, self.heldout_fraction)?;
        if self.batch_tokens == 0 || self.chunk == 0 {
            return bad("batch_tokens", "batch_tokens and chunk must be positive");
        }
        if self.blocks < 2 {
            return bad("blocks", "at least 2 blocks are needed for the bootstrap");
        }
        if self.overlap_bins == 0 {
            return bad("overlap_bins", "must be positive");
        }
        for c in [Tile::Mold, Tile::Gold, Tile::Path] {
            if !self.synthetic.classes.contains(&c) {
                return bad("synthetic.classes", "must contain mold, gold and path");
            }
        }
        self.synthetic.validate()?;
        Ok(())
    }
}

/// What an extraction was run on and how.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExtractMeta {
    pub format: String,
    pub model: String,
    pub model_dir: String,
    pub base_model: Option<String>,
    pub algorithm: Option<String>,
    pub train_seed: Option<u64>,
    pub checkpoint_step: Option<u64>,
    /// Symbols of Path, Mold, Gold.
    pub mapping: [String; 3],
    pub num_layers: usize,
    pub hidden: i64,
    pub config: ExtractConfig,
    /// Trajectories per class (Mold, Gold, Path) in the fitting and held-out sets.
    pub fit_counts: [usize; 3],
    pub heldout_counts: [usize; 3],
    pub seconds: f64,
    pub tokens: usize,
}

/// The result of one extraction.
#[derive(Debug)]
pub struct Extraction {
    pub meta: ExtractMeta,
    /// Per-class sums over the fitting set, `[L, H]` f64, in [`Concept::ALL`] order.
    pub sums: [Tensor; 3],
    /// Per-class block sums `[K, L, H]` f64 and counts. Each fitted trajectory goes to a block
    /// drawn at random (seeded): the construction cycles lengths and final directions with the
    /// index, so blocks by index would not be exchangeable and the bootstrap would mix unlike
    /// blocks.
    pub block_sums: [Tensor; 3],
    pub block_counts: [Vec<usize>; 3],
    /// Held-out separation scores per concept and layer.
    pub scores: [Vec<LayerScore>; 3],
    pub selection: [Option<Selection>; 3],
    pub emotion_layer: Option<usize>,
}

/// Progress of a long extraction.
#[derive(Debug, Clone, Copy)]
pub enum ExtractProgress {
    /// Trajectories forwarded so far (fitting and held-out), of the total.
    Forwarded { done: usize, total: usize },
}

/// One-vs-rest difference of means from per-class sums and counts.
pub fn one_vs_rest(sums: &[Tensor; 3], counts: [usize; 3], c: Concept) -> Tensor {
    let i = c.index();
    let mean = &sums[i] / counts[i] as f64;
    let mut rest = sums[i].zeros_like();
    let mut n = 0usize;
    for j in 0..3 {
        if j != i {
            rest += &sums[j];
            n += counts[j];
        }
    }
    mean - rest / n as f64
}

impl Extraction {
    /// Class mean `μ_c`, `[L, H]` f64.
    pub fn mean(&self, c: Concept) -> Tensor {
        &self.sums[c.index()] / self.meta.fit_counts[c.index()] as f64
    }

    /// One-vs-rest vector `v_c`, `[L, H]` f64.
    pub fn vector(&self, c: Concept) -> Tensor {
        one_vs_rest(&self.sums, self.meta.fit_counts, c)
    }

    /// Path-reference vector `ṽ_c = μ_c − μ_Path`, `[L, H]` f64.
    pub fn path_reference(&self, c: Concept) -> Tensor {
        self.mean(c) - self.mean(Concept::Path)
    }

    /// The selected steering layer of `c`, if any layer had finite scores.
    pub fn layer(&self, c: Concept) -> Option<usize> {
        self.selection[c.index()].as_ref().map(|s| s.layer)
    }

    /// `v_c` at its selected layer, `[H]` f64.
    pub fn steering_vector(&self, c: Concept) -> Result<(usize, Tensor), VectorError> {
        let l = self.layer(c).ok_or_else(|| {
            VectorError::Input(format!("no steering layer was selected for {}", c.name()))
        })?;
        Ok((l, self.vector(c).get(l as i64)))
    }

    /// Writes `vectors.safetensors`, `layers.jsonl` and `extraction.json` into `dir`.
    pub fn save(&self, dir: &Path) -> Result<(), VectorError> {
        let mut tensors = Vec::new();
        for c in Concept::ALL {
            let i = c.index();
            tensors.push((format!("sum.{}", c.name()), self.sums[i].shallow_clone()));
            tensors.push((format!("mean.{}", c.name()), self.mean(c)));
            tensors.push((format!("v.{}", c.name()), self.vector(c)));
            tensors.push((format!("blocks.{}", c.name()), self.block_sums[i].shallow_clone()));
            let bc: Vec<f32> = self.block_counts[i].iter().map(|&n| n as f32).collect();
            tensors.push((format!("block_counts.{}", c.name()), Tensor::from_slice(&bc)));
            if c != Concept::Path {
                tensors.push((format!("ref_path.{}", c.name()), self.path_reference(c)));
            }
            if let Ok((_, v)) = self.steering_vector(c) {
                tensors.push((format!("steer.{}", c.name()), v));
            }
        }
        let mut meta = std::collections::BTreeMap::new();
        let m = &self.meta;
        meta.insert("format".into(), m.format.clone());
        meta.insert("model".into(), m.model.clone());
        meta.insert("num_layers".into(), m.num_layers.to_string());
        meta.insert("hidden".into(), m.hidden.to_string());
        meta.insert(
            "mapping".into(),
            serde_json::json!({"path": m.mapping[0], "mold": m.mapping[1], "gold": m.mapping[2]})
                .to_string(),
        );
        for (k, v) in [("algorithm", m.algorithm.clone()), ("base_model", m.base_model.clone())] {
            meta.insert(k.into(), v.unwrap_or_default());
        }
        meta.insert("seed".into(), m.train_seed.map(|s| s.to_string()).unwrap_or_default());
        meta.insert(
            "checkpoint_step".into(),
            m.checkpoint_step.map(|s| s.to_string()).unwrap_or_default(),
        );
        for c in Concept::ALL {
            if let Some(l) = self.layer(c) {
                meta.insert(format!("layer.{}", c.name()), l.to_string());
            }
            meta.insert(format!("count.{}", c.name()), m.fit_counts[c.index()].to_string());
        }
        meta.insert(
            "layout".into(),
            "sum/mean/v/ref_path.<class>: [layer, hidden] (row = block output of that layer); \
             steer.<class>: v at layer.<class>; blocks.<class>: [block, layer, hidden] sums"
                .into(),
        );
        write_safetensors(&dir.join("vectors.safetensors"), &tensors, &meta)?;
        let mut rows = Vec::new();
        for c in Concept::ALL {
            let v = self.vector(c);
            for s in &self.scores[c.index()] {
                rows.push(serde_json::json!({
                    "model": m.model, "concept": c.name(), "layer": s.layer,
                    "auroc": s.auroc, "d": s.d, "overlap": s.overlap,
                    "norm": v.get(s.layer as i64).norm().double_value(&[]),
                }));
            }
        }
        write_jsonl(&dir.join("layers.jsonl"), &rows)?;
        let summary = serde_json::json!({
            "meta": m,
            "selection": {
                "mold": self.selection[0], "gold": self.selection[1], "path": self.selection[2],
                "emotion_layer": self.emotion_layer,
            },
        });
        write_json(&dir.join("extraction.json"), &summary)
    }

    /// Reads what [`Extraction::save`] wrote.
    pub fn load(dir: &Path) -> Result<Extraction, VectorError> {
        let summary_path = dir.join("extraction.json");
        let text = std::fs::read_to_string(&summary_path).map_err(|e| {
            VectorError::io(&summary_path, format!("cannot read (not an extraction folder?): {e}"))
        })?;
        let summary: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| VectorError::io(&summary_path, format!("not JSON: {e}")))?;
        let meta: ExtractMeta = serde_json::from_value(summary["meta"].clone())
            .map_err(|e| VectorError::io(&summary_path, format!("meta: {e}")))?;
        let sel = |c: &str| -> Result<Option<Selection>, VectorError> {
            serde_json::from_value(summary["selection"][c].clone())
                .map_err(|e| VectorError::io(&summary_path, format!("selection.{c}: {e}")))
        };
        let selection = [sel("mold")?, sel("gold")?, sel("path")?];
        let emotion_layer = summary["selection"]["emotion_layer"].as_u64().map(|l| l as usize);
        let vpath = dir.join("vectors.safetensors");
        let (mut t, _) = read_safetensors(&vpath)?;
        let mut take = |name: String| -> Result<Tensor, VectorError> {
            t.remove(&name)
                .map(|x| x.to_kind(Kind::Double))
                .ok_or_else(|| VectorError::io(&vpath, format!("no tensor `{name}`")))
        };
        let mut sums = Vec::new();
        let mut blocks = Vec::new();
        let mut bcounts = Vec::new();
        for c in Concept::ALL {
            sums.push(take(format!("sum.{}", c.name()))?);
            blocks.push(take(format!("blocks.{}", c.name()))?);
            let bc = take(format!("block_counts.{}", c.name()))?;
            bcounts.push(Vec::<f64>::try_from(bc)?.into_iter().map(|x| x as usize).collect());
        }
        let scores = read_scores(&dir.join("layers.jsonl"))?;
        let [s0, s1, s2]: [Tensor; 3] = sums.try_into().expect("three classes");
        let [b0, b1, b2]: [Tensor; 3] = blocks.try_into().expect("three classes");
        let [c0, c1, c2]: [Vec<usize>; 3] = bcounts.try_into().expect("three classes");
        Ok(Extraction {
            meta,
            sums: [s0, s1, s2],
            block_sums: [b0, b1, b2],
            block_counts: [c0, c1, c2],
            scores,
            selection,
            emotion_layer,
        })
    }
}

fn read_scores(path: &Path) -> Result<[Vec<LayerScore>; 3], VectorError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| VectorError::io(path, format!("cannot read: {e}")))?;
    let mut out: [Vec<LayerScore>; 3] = Default::default();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| VectorError::io(path, format!("line {}: {e}", n + 1)))?;
        let c = v["concept"].as_str().and_then(Concept::parse).ok_or_else(|| {
            VectorError::io(path, format!("line {}: field \"concept\": not mold/gold/path", n + 1))
        })?;
        let num = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
        out[c.index()].push(LayerScore {
            layer: v["layer"].as_u64().unwrap_or(0) as usize,
            auroc: num("auroc"),
            d: num("d"),
            overlap: num("overlap"),
        });
    }
    Ok(out)
}

/// Held-out projections (`⟨h, v_c⟩`) and cosines of every sample on every concept's vector at
/// every layer: scalars only.
#[derive(Debug, Default)]
pub struct HeldOut {
    /// `[concept][sample][layer]`.
    proj: [Vec<Vec<f64>>; 3],
    cos: [Vec<Vec<f64>>; 3],
    labels: Vec<Concept>,
}

impl HeldOut {
    /// Adds samples: `acts` `[n, L, H]`, `vectors` the three `[L, H]` concept vectors.
    pub fn add(
        &mut self,
        vectors: &[Tensor],
        acts: &Tensor,
        labels: &[Concept],
    ) -> Result<(), VectorError> {
        let acts = acts.to_kind(Kind::Double);
        let norms = acts.norm_scalaropt_dim(2, [2].as_slice(), false); // [n, L]
        for (ci, v) in vectors.iter().enumerate() {
            let v = v.to_kind(Kind::Double);
            let p = (&acts * v.unsqueeze(0)).sum_dim_intlist([2].as_slice(), false, Kind::Double);
            let vn = v.norm_scalaropt_dim(2, [1].as_slice(), false).unsqueeze(0);
            let cs = &p / (&norms * &vn).clamp_min(1e-300);
            for r in 0..labels.len() as i64 {
                self.proj[ci].push(Vec::<f64>::try_from(p.get(r))?);
                self.cos[ci].push(Vec::<f64>::try_from(cs.get(r))?);
            }
        }
        self.labels.extend_from_slice(labels);
        Ok(())
    }

    /// Per-concept, per-layer separation scores (positives: the concept's class; negatives: the
    /// other classes).
    pub fn scores(&self, num_layers: usize, bins: usize) -> [Vec<LayerScore>; 3] {
        let mut scores: [Vec<LayerScore>; 3] = Default::default();
        for c in Concept::ALL {
            let ci = c.index();
            for l in 0..num_layers {
                let (mut pp, mut pn, mut cp, mut cn) = (vec![], vec![], vec![], vec![]);
                for (s, &lab) in self.labels.iter().enumerate() {
                    let (p, q) = (self.proj[ci][s][l], self.cos[ci][s][l]);
                    if lab == c {
                        pp.push(p);
                        cp.push(q);
                    } else {
                        pn.push(p);
                        cn.push(q);
                    }
                }
                scores[ci].push(score_layer(l, &pp, &pn, &cp, &cn, bins));
            }
        }
        scores
    }
}

/// Token ids of a synthetic trajectory in the model's maze layout, ending with the last move
/// letter (no end-of-turn).
pub fn trajectory_tokens(
    subject: &Subject,
    t: &SyntheticTrajectory,
) -> Result<Vec<i64>, VectorError> {
    let users: Vec<&str> =
        t.messages.iter().filter(|m| m.role == Role::User).map(|m| m.content.as_str()).collect();
    if users.len() != t.moves.len() {
        return Err(VectorError::Input(format!(
            "trajectory {} of {}: {} user turns for {} moves",
            t.index,
            t.class.name(),
            users.len(),
            t.moves.len()
        )));
    }
    let mut ids = Vec::new();
    for (turn, (user, mv)) in users.iter().zip(&t.moves).enumerate() {
        let seg = subject
            .layout
            .segment(&subject.tokenizer, turn as u32 + 1, user)
            .map_err(|e| VectorError::Model(format!("rendering a trajectory: {e}")))?;
        ids.extend(seg);
        ids.push(subject.layout.moves[mv.index()]);
    }
    Ok(ids)
}

/// The maze and episode rules an extraction renders with: the config's, else the training
/// run's (from the checkpoint's state), else the paper's. The mapping is the run's.
pub fn resolve_rules(cfg: &ExtractConfig, subject: &Subject) -> (MazeConfig, EnvConfig) {
    let maze = cfg.maze.clone().or_else(|| subject.provenance.maze.clone()).unwrap_or_default();
    let env = cfg.env.clone().or_else(|| subject.provenance.env.clone()).unwrap_or_default();
    (maze, env)
}

/// The next `n` synthetic trajectories (class, index within the class, tokens) in generation
/// order.
fn generate_chunk(
    generator: &mut SyntheticGenerator,
    subject: &Subject,
    n: usize,
) -> Result<Vec<(Concept, usize, Vec<i64>)>, VectorError> {
    let mut out = Vec::with_capacity(n);
    for t in generator.by_ref().take(n) {
        let t = t?;
        out.push((Concept::of_tile(t.class), t.index, trajectory_tokens(subject, &t)?));
    }
    Ok(out)
}

/// Runs an extraction on `subject`.
pub fn extract(
    subject: &Subject,
    cfg: &ExtractConfig,
    mut progress: impl FnMut(ExtractProgress),
) -> Result<Extraction, VectorError> {
    cfg.validate()?;
    let split = HeldoutSplit::new(cfg.synthetic.per_class, cfg.heldout_fraction)?;
    if let Some(w) = split.warning() {
        tracing::warn!("{w}");
    }
    let start = Instant::now();
    let (maze, env) = resolve_rules(cfg, subject);
    let mut synthetic = cfg.synthetic.clone();
    synthetic.classes = vec![Tile::Mold, Tile::Gold, Tile::Path];
    let mut generator = SyntheticGenerator::new(synthetic.clone(), maze.clone(), env.clone())?;
    let total = generator.total();
    let layers: Vec<usize> = (0..subject.num_layers()).collect();
    let (nl, h) = (layers.len() as i64, subject.hidden());
    let k = cfg.blocks as i64;
    let f64cpu = (Kind::Double, Device::Cpu);
    let mut sums: Vec<Tensor> = (0..3).map(|_| Tensor::zeros([nl, h], f64cpu)).collect();
    let blocks: Vec<Tensor> = (0..3).map(|_| Tensor::zeros([k, nl, h], f64cpu)).collect();
    let mut block_counts =
        [vec![0usize; cfg.blocks], vec![0usize; cfg.blocks], vec![0usize; cfg.blocks]];
    let mut fit_counts = [0usize; 3];
    let mut heldout: Vec<(Concept, Vec<i64>)> = Vec::new();
    let mut block_of = WaxRng::new(cfg.block_seed, Stream::Bootstrap);
    let mut done = 0usize;
    let mut tokens = 0usize;
    while done < total {
        let chunk = generate_chunk(&mut generator, subject, cfg.chunk.min(total - done))?;
        if chunk.is_empty() {
            break;
        }
        let n_chunk = chunk.len();
        // (class, block) of each fitted trajectory.
        let mut fit: Vec<(Concept, usize)> = Vec::new();
        let mut probes = Vec::new();
        for (c, index, ids) in chunk {
            tokens += ids.len();
            if split.holds_out(index) {
                heldout.push((c, ids));
                continue;
            }
            fit.push((c, block_of.index(cfg.blocks)));
            probes.push(Probe::last(ids));
        }
        if !probes.is_empty() {
            let acts = capture_spans(&subject.model, &probes, &layers, cfg.batch_tokens, |_| {})?
                .to_kind(Kind::Double);
            for (row, &(c, b)) in fit.iter().enumerate() {
                let a = acts.get(row as i64);
                let i = c.index();
                sums[i] += &a;
                let mut slot = blocks[i].get(b as i64);
                slot += &a;
                block_counts[i][b] += 1;
                fit_counts[i] += 1;
            }
        }
        done += n_chunk;
        progress(ExtractProgress::Forwarded { done, total });
    }
    if let Some(c) = Concept::ALL.into_iter().find(|c| fit_counts[c.index()] == 0) {
        return Err(VectorError::Input(format!(
            "no {} trajectory left for fitting (per_class {} with heldout_fraction {})",
            c.name(),
            cfg.synthetic.per_class,
            cfg.heldout_fraction
        )));
    }
    let sums: [Tensor; 3] = sums.try_into().expect("three classes");
    let vectors: Vec<Tensor> = Concept::ALL
        .iter()
        .map(|&c| one_vs_rest(&sums, fit_counts, c).to_kind(Kind::Float))
        .collect();

    // Held-out projections, one chunk at a time; only scalars are kept.
    let mut projected = HeldOut::default();
    let mut heldout_counts = [0usize; 3];
    for part in heldout.chunks(cfg.chunk) {
        let probes: Vec<Probe> = part.iter().map(|(_, ids)| Probe::last(ids.clone())).collect();
        let acts = capture_spans(&subject.model, &probes, &layers, cfg.batch_tokens, |_| {})?;
        let labels: Vec<Concept> = part.iter().map(|(c, _)| *c).collect();
        projected.add(&vectors, &acts, &labels)?;
        for c in labels {
            heldout_counts[c.index()] += 1;
        }
    }
    let scores = projected.scores(layers.len(), cfg.overlap_bins);
    let selection = [select_layer(&scores[0]), select_layer(&scores[1]), select_layer(&scores[2])];
    let emotion = emotion_layer(&scores[0], &scores[1]);
    let mapping = &env.mapping;
    let prov = &subject.provenance;
    let meta = ExtractMeta {
        format: "wax-extraction/1".into(),
        model: subject.reference.clone(),
        model_dir: subject.dir.display().to_string(),
        base_model: prov.base_model.clone(),
        algorithm: prov.algorithm.clone(),
        train_seed: prov.seed,
        checkpoint_step: prov.step,
        mapping: [Tile::Path, Tile::Mold, Tile::Gold].map(|t| mapping.symbol(t).to_string()),
        num_layers: layers.len(),
        hidden: h,
        config: ExtractConfig {
            maze: Some(maze),
            env: Some(env.clone()),
            synthetic,
            ..cfg.clone()
        },
        fit_counts,
        heldout_counts,
        seconds: start.elapsed().as_secs_f64(),
        tokens,
    };
    let [b0, b1, b2]: [Tensor; 3] = blocks.try_into().expect("three classes");
    Ok(Extraction {
        meta,
        sums,
        block_sums: [b0, b1, b2],
        block_counts,
        scores,
        selection,
        emotion_layer: emotion,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{Stream, WaxRng};

    /// Class-labelled Gaussian noise with a known direction added to Mold samples at one layer.
    fn planted(
        n: usize,
        layers: usize,
        h: usize,
        layer: usize,
        dir: &[f64],
        seed: u64,
    ) -> (Tensor, Vec<Concept>) {
        let mut rng = WaxRng::new(seed, Stream::NullDirections);
        let mut data = Vec::with_capacity(n * 3 * layers * h);
        let mut labels = Vec::new();
        for i in 0..3 * n {
            let c = Concept::ALL[i % 3];
            labels.push(c);
            for l in 0..layers {
                for d in dir.iter().take(h) {
                    let mut x = rng.normal();
                    if c == Concept::Mold && l == layer {
                        x += 0.8 * d;
                    }
                    data.push(x);
                }
            }
        }
        (Tensor::from_slice(&data).view([(3 * n) as i64, layers as i64, h as i64]), labels)
    }

    #[test]
    fn a_planted_direction_is_recovered_and_its_layer_selected() {
        let (layers, h, layer) = (4, 32, 2);
        let mut rng = WaxRng::new(7, Stream::NullDirections);
        let raw: Vec<f64> = (0..h).map(|_| rng.normal()).collect();
        let norm = raw.iter().map(|x| x * x).sum::<f64>().sqrt();
        let dir: Vec<f64> = raw.iter().map(|x| x / norm).collect();
        // Fit on 4000 per class.
        let (acts, labels) = planted(4000, layers, h, layer, &dir, 1);
        let mut sums: Vec<Tensor> = Vec::new();
        let mut counts = [0usize; 3];
        for c in Concept::ALL {
            let idx: Vec<i64> = labels
                .iter()
                .enumerate()
                .filter(|&(_, &l)| l == c)
                .map(|(i, _)| i as i64)
                .collect();
            counts[c.index()] = idx.len();
            sums.push(acts.index_select(0, &Tensor::from_slice(&idx)).sum_dim_intlist(
                [0].as_slice(),
                false,
                Kind::Double,
            ));
        }
        let sums: [Tensor; 3] = sums.try_into().unwrap();
        let v = one_vs_rest(&sums, counts, Concept::Mold);
        let at = Vec::<f64>::try_from(v.get(layer as i64)).unwrap();
        let cos = crate::stats::cosine(&at, &dir);
        assert!(cos > 0.99, "cos(v_Mold, planted) = {cos}");
        // v_Gold is the mirror image up to noise: it points away from the planted direction.
        let g = Vec::<f64>::try_from(one_vs_rest(&sums, counts, Concept::Gold).get(layer as i64))
            .unwrap();
        assert!(crate::stats::cosine(&g, &dir) < -0.6);
        // Layer selection on a fresh held-out set finds the planted layer.
        let vectors: Vec<Tensor> =
            Concept::ALL.iter().map(|&c| one_vs_rest(&sums, counts, c)).collect();
        let (held, held_labels) = planted(400, layers, h, layer, &dir, 2);
        let mut ho = HeldOut::default();
        ho.add(&vectors, &held, &held_labels).unwrap();
        let scores = ho.scores(layers, 50);
        let sel = select_layer(&scores[Concept::Mold.index()]).unwrap();
        assert_eq!(
            (sel.by_auroc, sel.by_d, sel.by_overlap, sel.layer),
            (layer, layer, layer, layer)
        );
        let s = &scores[Concept::Mold.index()][layer];
        // The planted shift is 0.8 noise SDs along the unit direction: d ≈ 0.8, AUROC ≈ Φ(0.8/√2) ≈ 0.71.
        assert!(s.auroc > 0.68 && (0.6..1.0).contains(&s.d), "{s:?}");
        // Elsewhere the vector is noise.
        assert!((scores[Concept::Mold.index()][0].auroc - 0.5).abs() < 0.1);
    }

    #[test]
    fn one_vs_rest_pools_the_rest() {
        let s = [
            Tensor::from_slice(&[2.0f64]).view([1, 1]),
            Tensor::from_slice(&[3.0f64]).view([1, 1]),
            Tensor::from_slice(&[5.0f64]).view([1, 1]),
        ];
        // mean(M) = 1 (2 samples); rest = (3 + 5) / (1 + 4) = 1.6.
        let v = one_vs_rest(&s, [2, 1, 4], Concept::Mold);
        assert!((v.double_value(&[0, 0]) - (1.0 - 1.6)).abs() < 1e-12);
    }
}
