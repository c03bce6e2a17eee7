//! Emotion concept vectors (docs/protocol.md §5.3–§5.4).
//!
//! The model reads every story of a stimulus corpus (raw text, no chat template); a story's
//! activation is the mean block output over its tokens (the beginning-of-sequence token, if the
//! tokenizer adds one, excluded). An emotion's vector is the mean over its stories minus the
//! mean over all other emotions' stories. Denoising: per layer, the principal components of the
//! neutral texts' activations that explain `variance_threshold` of their variance are projected
//! out of every emotion vector. Then: cosines with `v_Mold` / `v_Gold` at the emotion layer, the
//! OLS slope of `cos(e, v_Gold)` on `cos(e, v_Mold)` (≈ −1 for a trained model), and PCA over
//! the emotion vectors (PC1 ≈ valence) with the loadings of the concept vectors.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use super::capture::{Probe, capture_spans};
use super::geometry::{Headline, to_vec};
use super::{Subject, VectorError};
use crate::evals::data::emotions::EmotionCorpus;
use crate::stats::{
    Ols, bootstrap_ci, components_for_variance, cosine, ols, pca, project_out,
    random_direction_null,
};

/// Settings of the emotion analysis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmotionConfig {
    /// Share of the neutral texts' variance whose components are removed (0 disables).
    pub variance_threshold: f64,
    /// Stories longer than this are cut (tokens).
    pub max_story_tokens: usize,
    pub batch_tokens: usize,
}

impl Default for EmotionConfig {
    fn default() -> Self {
        EmotionConfig { variance_threshold: 0.5, max_story_tokens: 256, batch_tokens: 8192 }
    }
}

/// Emotion vectors of one model at every layer.
#[derive(Debug)]
pub struct EmotionVectors {
    pub emotions: Vec<String>,
    /// `[E, L, H]` f64, denoised.
    pub vectors: Tensor,
    /// Neutral components removed per layer.
    pub removed: Vec<usize>,
    pub stories: usize,
    pub neutral: usize,
}

fn story_probe(subject: &Subject, text: &str, max: usize) -> Result<Probe, VectorError> {
    let ids: Vec<i64> = subject
        .tokenizer
        .encode(text, true)
        .map_err(|e| VectorError::Model(format!("tokenizing a story: {e}")))?
        .into_iter()
        .map(i64::from)
        .take(max)
        .collect();
    let bos = subject.tokenizer.bos_id().map(i64::from);
    let first = usize::from(ids.len() > 1 && bos.is_some_and(|b| ids[0] == b));
    if ids.is_empty() {
        return Err(VectorError::Input(format!("a story encodes to no tokens: {text:?}")));
    }
    let n = ids.len();
    Ok(Probe::span(ids, (first, n)))
}

/// Reads the corpus with `subject` and builds denoised emotion vectors.
pub fn emotion_vectors(
    subject: &Subject,
    corpus: &EmotionCorpus,
    cfg: &EmotionConfig,
    mut progress: impl FnMut(usize, usize),
) -> Result<EmotionVectors, VectorError> {
    corpus.validate().map_err(|e| VectorError::Input(format!("emotion corpus: {e}")))?;
    let emotions = corpus.emotions();
    let layers: Vec<usize> = (0..subject.num_layers()).collect();
    let total = corpus.stories.len() + corpus.neutral.len();
    let mut probes = Vec::with_capacity(corpus.stories.len());
    for s in &corpus.stories {
        probes.push(story_probe(subject, &s.text, cfg.max_story_tokens)?);
    }
    let mut seen = 0usize;
    let acts = capture_spans(&subject.model, &probes, &layers, cfg.batch_tokens, |n| {
        seen += n;
        progress(seen, total);
    })?
    .to_kind(Kind::Double); // [S, L, H]
    let neutral_probes: Vec<Probe> = corpus
        .neutral
        .iter()
        .map(|t| story_probe(subject, t, cfg.max_story_tokens))
        .collect::<Result<_, _>>()?;
    let neutral = capture_spans(&subject.model, &neutral_probes, &layers, cfg.batch_tokens, |n| {
        seen += n;
        progress(seen, total);
    })?
    .to_kind(Kind::Double); // [N, L, H]

    let label: Vec<usize> = corpus
        .stories
        .iter()
        .map(|s| {
            emotions.iter().position(|e| *e == s.emotion).expect("emotions() lists every label")
        })
        .collect();
    let total_sum = acts.sum_dim_intlist([0].as_slice(), false, Kind::Double);
    let mut rows = Vec::with_capacity(emotions.len());
    for k in 0..emotions.len() {
        let idx: Vec<i64> =
            label.iter().enumerate().filter(|&(_, &l)| l == k).map(|(i, _)| i as i64).collect();
        let own = acts.index_select(0, &Tensor::from_slice(&idx)).sum_dim_intlist(
            [0].as_slice(),
            false,
            Kind::Double,
        );
        let n_own = idx.len() as f64;
        let n_rest = (label.len() - idx.len()) as f64;
        rows.push(&own / n_own - (&total_sum - &own) / n_rest);
    }
    let vectors = Tensor::stack(&rows, 0); // [E, L, H]
    let mut removed = Vec::with_capacity(layers.len());
    for l in 0..layers.len() as i64 {
        if cfg.variance_threshold <= 0.0 {
            removed.push(0);
            continue;
        }
        let x = neutral.select(1, l); // [N, H]
        let k_max = (x.size()[0] - 1).min(x.size()[1]).max(1) as usize;
        let p = pca(&x, k_max)?;
        let m = components_for_variance(&p, cfg.variance_threshold.min(1.0));
        removed.push(m);
        if m == 0 {
            continue;
        }
        let basis = p.components.narrow(0, 0, m as i64);
        let denoised = project_out(&vectors.select(1, l), &basis);
        vectors.select(1, l).copy_(&denoised);
    }
    Ok(EmotionVectors {
        emotions,
        vectors,
        removed,
        stories: corpus.stories.len(),
        neutral: corpus.neutral.len(),
    })
}

/// One emotion's alignment with the concept vectors.
#[derive(Debug, Clone, Serialize)]
pub struct EmotionRow {
    pub emotion: String,
    pub cos_gold: f64,
    pub cos_mold: f64,
}

/// The emotion scatter of one pair of concept vectors at one layer.
#[derive(Debug, Clone, Serialize)]
pub struct EmotionAlignment {
    pub vectors: String,
    pub layer: usize,
    pub rows: Vec<EmotionRow>,
    /// OLS of `cos(e, v_Gold)` on `cos(e, v_Mold)`.
    pub slope: Option<OlsSummary>,
    /// The slope with a bootstrap interval over emotions and a null in which `v_Gold` is a
    /// random direction.
    pub slope_headline: Option<Headline>,
    pub pearson_r: f64,
}

/// Serializable OLS fit.
#[derive(Debug, Clone, Serialize)]
pub struct OlsSummary {
    pub slope: f64,
    pub slope_se: f64,
    pub intercept: f64,
    pub r2: f64,
    pub n: usize,
}

impl From<Ols> for OlsSummary {
    fn from(o: Ols) -> Self {
        OlsSummary {
            slope: o.slope,
            slope_se: o.slope_se,
            intercept: o.intercept,
            r2: o.r2,
            n: o.n,
        }
    }
}

/// Cosines of every emotion with `v_mold`, `v_gold` (`[H]`) at `layer`, and the slope.
pub fn align(
    ev: &EmotionVectors,
    name: &str,
    layer: usize,
    v_mold: &Tensor,
    v_gold: &Tensor,
    resamples: usize,
    null_draws: usize,
    seed: u64,
) -> EmotionAlignment {
    let (vm, vg) = (to_vec(v_mold), to_vec(v_gold));
    let es: Vec<Vec<f64>> = (0..ev.emotions.len())
        .map(|k| to_vec(&ev.vectors.get(k as i64).get(layer as i64)))
        .collect();
    let cm: Vec<f64> = es.iter().map(|e| cosine(e, &vm)).collect();
    let cg: Vec<f64> = es.iter().map(|e| cosine(e, &vg)).collect();
    let fit = ols(&cm, &cg);
    let pearson_r = fit.as_ref().map_or(f64::NAN, |o| o.r2.sqrt() * o.slope.signum());
    let headline = fit.as_ref().map(|o| {
        let ci = bootstrap_ci(&[cm.len()], resamples, 0.95, seed, |idx| {
            let x: Vec<f64> = idx[0].iter().map(|&i| cm[i]).collect();
            let y: Vec<f64> = idx[0].iter().map(|&i| cg[i]).collect();
            ols(&x, &y).map_or(f64::NAN, |f| f.slope)
        });
        let null = random_direction_null(vg.len(), null_draws, seed, o.slope, |dir| {
            let y: Vec<f64> = es.iter().map(|e| cosine(e, dir)).collect();
            ols(&cm, &y).map_or(f64::NAN, |f| f.slope)
        });
        Headline::new(ci, null)
    });
    let rows = ev
        .emotions
        .iter()
        .zip(cm.iter().zip(&cg))
        .map(|(e, (&m, &g))| EmotionRow { emotion: e.clone(), cos_gold: g, cos_mold: m })
        .collect();
    EmotionAlignment {
        vectors: name.into(),
        layer,
        rows,
        slope: fit.map(OlsSummary::from),
        slope_headline: headline,
        pearson_r,
    }
}

/// Emotions read as positive / negative for orienting PC1 (those present in the corpus count).
const POSITIVE: &[&str] = &[
    "happy",
    "joyful",
    "proud",
    "grateful",
    "loving",
    "content",
    "inspired",
    "blissful",
    "hopeful",
    "calm",
    "relieved",
    "cheerful",
    "delighted",
    "optimistic",
];
const NEGATIVE: &[&str] = &[
    "sad",
    "angry",
    "ashamed",
    "afraid",
    "anxious",
    "humiliated",
    "embarrassed",
    "frustrated",
    "bitter",
    "disgusted",
    "lonely",
    "guilty",
    "insulted",
    "annoyed",
    "hateful",
];

/// PC1 of the emotion vectors at one layer with the concept vectors' loadings.
#[derive(Debug, Clone, Serialize)]
pub struct Pc1Row {
    pub layer: usize,
    /// Share of the emotion vectors' variance on PC1.
    pub explained: f64,
    /// Whether PC1 could be oriented by valence (positive emotions load positive).
    pub oriented: bool,
    pub cos_v_mold: f64,
    pub cos_v_gold: f64,
    pub cos_u_mold: Option<f64>,
    pub cos_u_gold: Option<f64>,
}

/// PCA over the emotion vectors at every layer; loadings of `v` (and `u`) `[L, H]` on PC1.
pub fn pc1_table(
    ev: &EmotionVectors,
    v: (&Tensor, &Tensor),
    u: Option<(&Tensor, &Tensor)>,
) -> Result<Vec<Pc1Row>, VectorError> {
    let layers = ev.vectors.size()[1];
    let pos: Vec<usize> =
        (0..ev.emotions.len()).filter(|&k| POSITIVE.contains(&ev.emotions[k].as_str())).collect();
    let neg: Vec<usize> =
        (0..ev.emotions.len()).filter(|&k| NEGATIVE.contains(&ev.emotions[k].as_str())).collect();
    let mut out = Vec::with_capacity(layers as usize);
    for l in 0..layers {
        let x = ev.vectors.select(1, l); // [E, H]
        let p = pca(&x, 1)?;
        let mut pc1 = to_vec(&p.components.get(0));
        let scores: Vec<f64> =
            (0..ev.emotions.len()).map(|k| cosine(&to_vec(&x.get(k as i64)), &pc1)).collect();
        let oriented = !pos.is_empty() && !neg.is_empty();
        if oriented {
            let m = |ix: &[usize]| ix.iter().map(|&k| scores[k]).sum::<f64>() / ix.len() as f64;
            if m(&pos) < m(&neg) {
                pc1.iter_mut().for_each(|x| *x = -*x);
            }
        }
        let load = |t: &Tensor| cosine(&to_vec(&t.get(l)), &pc1);
        out.push(Pc1Row {
            layer: l as usize,
            explained: p.explained_ratio.first().copied().unwrap_or(f64::NAN),
            oriented,
            cos_v_mold: load(v.0),
            cos_v_gold: load(v.1),
            cos_u_mold: u.map(|u| load(u.0)),
            cos_u_gold: u.map(|u| load(u.1)),
        });
    }
    Ok(out)
}
