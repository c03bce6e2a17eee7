//! Tracking analyses (docs/protocol.md §7): do projections on the concept vectors separate
//! outcomes?
//!
//! - Maze tracking (§7.2): fresh synthetic Mold-final and Gold-final trajectories (a different
//!   seed range from extraction), the activation at the last move letter at the vector's layer,
//!   projected on `v/‖v‖`, in the trained model and in the maze-naive model (the same `v`).
//! - Correctness tracking (§7.3): the model answers a question; a user turn gives truthful
//!   feedback; the activations over the final generation prompt are averaged and projected.
//! - Confidence control (§7.4): the same within tertiles of the unsteered normalised P(True).
//!
//! Cohen's d is signed so that positive means the expected direction: `v_Mold` higher on
//! Mold-final / incorrect, `v_Gold` higher on Gold-final / correct. Each d comes with a
//! bootstrap interval (resampling within both groups) and a random-direction null.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use super::EvalError;
use crate::maze::{SyntheticConfig, SyntheticGenerator, Tile};
use crate::stats::{bootstrap_ci, cohens_d, random_direction_null};
use crate::vectors::capture::{Probe, capture_spans};
use crate::vectors::extract::{resolve_rules, trajectory_tokens};
use crate::vectors::geometry::Headline;
use crate::vectors::{Concept, ExtractConfig, Extraction, Subject};

/// Settings of the tracking analyses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrackingConfig {
    /// Fresh trajectories per class (Mold-final and Gold-final).
    pub per_class: usize,
    /// First maze seed of the fresh set (extraction uses 474747 upward).
    pub base_seed: u64,
    pub resamples: usize,
    pub null_draws: usize,
    pub seed: u64,
    pub batch_tokens: usize,
}

impl Default for TrackingConfig {
    fn default() -> Self {
        TrackingConfig {
            per_class: 500,
            base_seed: 90_474_747,
            resamples: 500,
            null_draws: 500,
            seed: 0,
            batch_tokens: 16_384,
        }
    }
}

/// One tracking effect.
#[derive(Debug, Clone, Serialize)]
pub struct TrackingRow {
    /// `maze`, `correctness:<dataset>`, `tertile:<low|med|high>`.
    pub analysis: String,
    pub concept: Concept,
    /// Whose activations: `trained` or `naive`.
    pub model: String,
    /// Whose vector: `v` (trained) or `u` (naive).
    pub vectors: String,
    pub layer: usize,
    /// Sizes of the expected-high and expected-low groups.
    pub n_high: usize,
    pub n_low: usize,
    pub d: f64,
    pub headline: Headline,
}

/// d of `high` vs `low` with its interval and null; `acts_*` are the activations `[n, H]` the
/// projections came from (for the random-direction null).
pub fn effect(high: &Tensor, low: &Tensor, unit: &Tensor, cfg: &TrackingConfig) -> (f64, Headline) {
    let proj = |a: &Tensor, dir: &Tensor| -> Vec<f64> {
        if a.size()[0] == 0 {
            return Vec::new();
        }
        Vec::<f64>::try_from(a.mv(dir).to_kind(Kind::Double)).unwrap_or_default()
    };
    let (ph, pl) = (proj(high, unit), proj(low, unit));
    let d = cohens_d(&ph, &pl);
    let ci = bootstrap_ci(&[ph.len(), pl.len()], cfg.resamples, 0.95, cfg.seed, |idx| {
        let a: Vec<f64> = idx[0].iter().map(|&i| ph[i]).collect();
        let b: Vec<f64> = idx[1].iter().map(|&i| pl[i]).collect();
        cohens_d(&a, &b)
    });
    let dim = unit.size()[0] as usize;
    let null = random_direction_null(dim, cfg.null_draws, cfg.seed, d, |dir| {
        let t = Tensor::from_slice(dir).to_kind(Kind::Double);
        cohens_d(&proj(high, &t), &proj(low, &t))
    });
    (d, Headline::new(ci, null))
}

/// Unit vector of `v_c` at `layer`, f64 `[H]`.
pub fn unit(e: &Extraction, c: Concept, layer: usize) -> Tensor {
    let v = e.vector(c).get(layer as i64).to_kind(Kind::Double);
    let n = v.norm().double_value(&[]).max(1e-30);
    v / n
}

/// Block outputs at `layers` for fresh Mold- and Gold-final trajectories: `(mold, gold)`, each
/// `[n, layers, H]` f64.
pub fn fresh_activations(
    subject: &Subject,
    rules_from: &ExtractConfig,
    cfg: &TrackingConfig,
    layers: &[usize],
) -> Result<(Tensor, Tensor), EvalError> {
    let (maze, env) = resolve_rules(rules_from, subject);
    let synthetic = SyntheticConfig {
        per_class: cfg.per_class,
        base_seed: cfg.base_seed,
        classes: vec![Tile::Mold, Tile::Gold],
        ..rules_from.synthetic.clone()
    };
    let generator =
        SyntheticGenerator::new(synthetic, maze, env).map_err(crate::vectors::VectorError::from)?;
    let mut probes = [Vec::new(), Vec::new()];
    for t in generator {
        let t = t.map_err(crate::vectors::VectorError::from)?;
        let slot = usize::from(t.class == Tile::Gold);
        probes[slot].push(Probe::last(trajectory_tokens(subject, &t)?));
    }
    let read = |p: &[Probe]| -> Result<Tensor, EvalError> {
        Ok(capture_spans(&subject.model, p, layers, cfg.batch_tokens, |_| {})?
            .to_kind(Kind::Double))
    };
    Ok((read(&probes[0])?, read(&probes[1])?))
}

/// Maze tracking of `v` (and `u`) in the trained and the naive model.
pub fn maze_tracking(
    trained: &Subject,
    naive: Option<&Subject>,
    v: &Extraction,
    u: Option<&Extraction>,
    cfg: &TrackingConfig,
) -> Result<Vec<TrackingRow>, EvalError> {
    let concepts = [Concept::Mold, Concept::Gold];
    let layer_of = |e: &Extraction, c: Concept| {
        e.layer(c).ok_or_else(|| EvalError::Input(format!("no selected layer for {}", c.name())))
    };
    let mut rows = Vec::new();
    let mut run =
        |subject: &Subject, model: &str, e: &Extraction, which: &str| -> Result<(), EvalError> {
            let layers: Vec<usize> =
                concepts.iter().map(|&c| layer_of(e, c)).collect::<Result<_, _>>()?;
            let (mold, gold) = fresh_activations(subject, &v.meta.config, cfg, &layers)?;
            for (i, &c) in concepts.iter().enumerate() {
                let (hm, hg) = (mold.select(1, i as i64), gold.select(1, i as i64));
                let (high, low) = if c == Concept::Mold { (&hm, &hg) } else { (&hg, &hm) };
                let (d, headline) = effect(high, low, &unit(e, c, layers[i]), cfg);
                rows.push(TrackingRow {
                    analysis: "maze".into(),
                    concept: c,
                    model: model.into(),
                    vectors: which.into(),
                    layer: layers[i],
                    n_high: high.size()[0] as usize,
                    n_low: low.size()[0] as usize,
                    d,
                    headline,
                });
            }
            Ok(())
        };
    run(trained, "trained", v, "v")?;
    if let Some(n) = naive {
        run(n, "naive", v, "v")?;
        if let Some(u) = u {
            run(n, "naive", u, "u")?;
        }
    }
    Ok(rows)
}

/// Feedback wording of §7.3 (the paper's text; the apostrophe is typographic as printed).
pub const FEEDBACK_RIGHT: &str = "That’s right";
pub const FEEDBACK_WRONG: &str = "That’s wrong";

/// One answered question: its activation after feedback and, for MMLU, the unsteered P(True).
struct Answered {
    correct: bool,
    /// Mean block output over the final generation prompt, per layer asked `[layers, H]`.
    acts: Tensor,
    p_true: Option<f64>,
}

/// Answers questions with `subject` (greedy for problems, letter argmax for MMLU), gives truthful
/// feedback and reads the generation-prompt activations at `layers`.
fn answer_and_read(
    subject: &Subject,
    items: &super::steering::TrackingItems,
    layers: &[usize],
    batch: usize,
    max_new_tokens: usize,
) -> Result<Vec<(String, Answered)>, EvalError> {
    use super::chat::{GenSettings, generate, last_logits, render};
    use super::data;
    use crate::generate::Sampling;
    use crate::tokenizer::Message;
    let mut out = Vec::new();
    // Math: greedy answers.
    let prompts: Vec<_> = items
        .math
        .iter()
        .map(|p| render(subject, &[Message::user(p.question.clone())], true))
        .collect::<Result<_, _>>()?;
    let settings = GenSettings { max_new_tokens, sampling: Sampling::GREEDY, batch };
    let answers = generate(subject, &prompts, &vec![0; prompts.len()], settings, None, |_| {})?;
    let mut convs = Vec::new();
    let mut meta = Vec::new();
    for (p, a) in items.math.iter().zip(answers) {
        let ok = data::math_correct(&a, p.answer);
        let fb = if ok { FEEDBACK_RIGHT } else { FEEDBACK_WRONG };
        convs.push(render(
            subject,
            &[
                Message::user(p.question.clone()),
                Message::assistant(a.trim().to_string()),
                Message::user(fb),
            ],
            true,
        )?);
        meta.push(("math".to_string(), ok, None));
    }
    // MMLU: letter argmax, then P(True) (unsteered) for the tertiles.
    let mut ptrue_prompts = Vec::new();
    for (q, pick) in items.mcq.iter().zip(super::steering::mcq_picks(subject, &items.mcq, batch)?) {
        let letter = ["A", "B", "C", "D"][pick].to_string();
        let ok = pick == q.answer;
        let fb = if ok { FEEDBACK_RIGHT } else { FEEDBACK_WRONG };
        let first = [Message::user(data::format_mcq(q)), Message::assistant(letter.clone())];
        convs.push(render(
            subject,
            &[first[0].clone(), first[1].clone(), Message::user(fb)],
            true,
        )?);
        ptrue_prompts.push(render(
            subject,
            &[first[0].clone(), first[1].clone(), Message::user(super::steering::PTRUE_QUESTION)],
            true,
        )?);
        meta.push(("mmlu".to_string(), ok, Some(())));
    }
    // A tokenizer without distinct True/False tokens leaves P(True) undefined (NaN), not fatal.
    let ptrue: Vec<f64> = match super::steering::true_false_ids(subject).ok() {
        Some((t, f)) => last_logits(subject, &ptrue_prompts, None, &[], batch)?
            .0
            .iter()
            .map(|lp| super::steering::p_true(lp, t, f))
            .collect(),
        None => vec![f64::NAN; ptrue_prompts.len()],
    };
    // One forward per batch reads every layer.
    let reads = last_logits(subject, &convs, None, layers, batch)?.1;
    let mut k = 0usize;
    for ((group, ok, is_mcq), acts) in meta.into_iter().zip(reads) {
        let p_true = is_mcq.map(|_| {
            k += 1;
            ptrue[k - 1]
        });
        out.push((group, Answered { correct: ok, acts, p_true }));
    }
    Ok(out)
}

/// Correctness tracking and the confidence-tertile control of `v` in the trained and the naive
/// model.
pub fn correctness_tracking(
    trained: &Subject,
    naive: Option<&Subject>,
    v: &Extraction,
    items: &super::steering::TrackingItems,
    cfg: &TrackingConfig,
    batch: usize,
    max_new_tokens: usize,
) -> Result<Vec<TrackingRow>, EvalError> {
    let concepts = [Concept::Mold, Concept::Gold];
    let layers: Vec<usize> = concepts
        .iter()
        .map(|&c| {
            v.layer(c)
                .ok_or_else(|| EvalError::Input(format!("no selected layer for {}", c.name())))
        })
        .collect::<Result<_, _>>()?;
    let mut rows = Vec::new();
    let mut models = vec![("trained", trained)];
    if let Some(n) = naive {
        models.push(("naive", n));
    }
    for (name, subject) in models {
        let answered = answer_and_read(subject, items, &layers, batch, max_new_tokens)?;
        // Tertiles of P(True) over the MMLU items.
        let mut pts: Vec<f64> =
            answered.iter().filter_map(|(_, a)| a.p_true).filter(|p| !p.is_nan()).collect();
        pts.sort_by(f64::total_cmp);
        let cut = |q: f64| crate::stats::quantile(&pts, q);
        let (t1, t2) = (cut(1.0 / 3.0), cut(2.0 / 3.0));
        let mut groups: Vec<(String, Vec<&Answered>)> = vec![
            (
                "correctness:math".into(),
                answered.iter().filter(|(g, _)| g == "math").map(|(_, a)| a).collect(),
            ),
            (
                "correctness:mmlu".into(),
                answered.iter().filter(|(g, _)| g == "mmlu").map(|(_, a)| a).collect(),
            ),
        ];
        if !pts.is_empty() {
            for (label, lo, hi) in
                [("low", f64::NEG_INFINITY, t1), ("med", t1, t2), ("high", t2, f64::INFINITY)]
            {
                let members = answered
                    .iter()
                    .filter_map(|(_, a)| a.p_true.filter(|p| !p.is_nan()).map(|p| (p, a)))
                    .filter(|(p, _)| {
                        if label == "low" {
                            *p <= hi
                        } else if label == "high" {
                            *p > lo
                        } else {
                            *p > lo && *p <= hi
                        }
                    })
                    .map(|(_, a)| a)
                    .collect();
                groups.push((format!("tertile:{label}"), members));
            }
        }
        for (analysis, members) in groups {
            for (i, &c) in concepts.iter().enumerate() {
                let pick = |correct: bool| -> Tensor {
                    let rows: Vec<Tensor> = members
                        .iter()
                        .filter(|a| a.correct == correct)
                        .map(|a| a.acts.get(i as i64))
                        .collect();
                    if rows.is_empty() {
                        Tensor::zeros([0, v.meta.hidden], (Kind::Double, tch::Device::Cpu))
                    } else {
                        Tensor::stack(&rows, 0).to_kind(Kind::Double)
                    }
                };
                let (right, wrong) = (pick(true), pick(false));
                let (high, low) =
                    if c == Concept::Mold { (&wrong, &right) } else { (&right, &wrong) };
                let (d, headline) = effect(high, low, &unit(v, c, layers[i]), cfg);
                rows.push(TrackingRow {
                    analysis: analysis.clone(),
                    concept: c,
                    model: name.into(),
                    vectors: "v".into(),
                    layer: layers[i],
                    n_high: high.size()[0] as usize,
                    n_low: low.size()[0] as usize,
                    d,
                    headline,
                });
            }
        }
    }
    Ok(rows)
}
