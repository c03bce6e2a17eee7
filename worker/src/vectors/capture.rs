//! Residual-stream capture over many token sequences: right-padded batches of similar length,
//! one forward per batch, the block outputs of the requested layers averaged over one span of
//! each sequence (the last token for concept vectors, a story's tokens for emotions).

use tch::{Kind, Tensor};

use super::VectorError;
use crate::model::{ForwardInput, HookPoint, Hooks, LayerSite, LogitsSelect, Model, Positions};

/// One sequence to read: its tokens and the half-open token span whose block outputs are
/// averaged (`len - 1 .. len` for the last token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub tokens: Vec<i64>,
    pub span: (usize, usize),
}

impl Probe {
    /// Reads the last token.
    pub fn last(tokens: Vec<i64>) -> Probe {
        let n = tokens.len();
        Probe { tokens, span: (n.saturating_sub(1), n) }
    }

    /// Reads the mean over `span`.
    pub fn span(tokens: Vec<i64>, span: (usize, usize)) -> Probe {
        Probe { tokens, span }
    }
}

/// Groups probe indices into batches of at most `batch_tokens` padded tokens (and at most
/// `max_rows` rows), longest first so padding stays small.
pub fn plan_batches(probes: &[Probe], batch_tokens: usize, max_rows: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..probes.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(probes[i].tokens.len()));
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut cur: Vec<usize> = Vec::new();
    let mut width = 0usize;
    for i in order {
        let len = probes[i].tokens.len().max(1);
        let w = width.max(len);
        if !cur.is_empty() && (w * (cur.len() + 1) > batch_tokens || cur.len() >= max_rows) {
            out.push(std::mem::take(&mut cur));
            width = 0;
        }
        width = width.max(len);
        cur.push(i);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The span means of `layers`' block outputs for each probe: `[probes, layers, hidden]` f32
/// on the CPU, in probe order. Batches follow [`plan_batches`].
pub fn capture_spans(
    model: &Model,
    probes: &[Probe],
    layers: &[usize],
    batch_tokens: usize,
    mut progress: impl FnMut(usize),
) -> Result<Tensor, VectorError> {
    let hidden = model.config().hidden_size;
    let n_layers = model.config().num_layers as usize;
    for (i, p) in probes.iter().enumerate() {
        let (a, b) = p.span;
        if p.tokens.is_empty() || a >= b || b > p.tokens.len() {
            return Err(VectorError::Input(format!(
                "probe {i}: span {a}..{b} does not lie inside its {} tokens",
                p.tokens.len()
            )));
        }
    }
    if let Some(&l) = layers.iter().find(|&&l| l >= n_layers) {
        return Err(VectorError::Input(format!("layer {l}: the model has {n_layers} layers")));
    }
    let mut out = Tensor::zeros(
        [probes.len() as i64, layers.len() as i64, hidden],
        (Kind::Float, tch::Device::Cpu),
    );
    let _guard = tch::no_grad_guard();
    for batch in plan_batches(probes, batch_tokens, 256) {
        let rows = capture_batch(model, probes, &batch, layers)?;
        let idx = Tensor::from_slice(&batch.iter().map(|&i| i as i64).collect::<Vec<_>>());
        let _ = out.index_copy_(0, &idx, &rows);
        progress(batch.len());
    }
    Ok(out)
}

/// One right-padded forward: `[rows, layers, hidden]` f32 on the CPU.
fn capture_batch(
    model: &Model,
    probes: &[Probe],
    batch: &[usize],
    layers: &[usize],
) -> Result<Tensor, VectorError> {
    let device = model.device();
    let b = batch.len();
    let t = batch.iter().map(|&i| probes[i].tokens.len()).max().unwrap_or(1);
    let mut ids = vec![0i64; b * t];
    let mut real = vec![false; b * t];
    let mut span = vec![false; b * t];
    let mut counts = Vec::with_capacity(b);
    for (r, &i) in batch.iter().enumerate() {
        let p = &probes[i];
        ids[r * t..r * t + p.tokens.len()].copy_from_slice(&p.tokens);
        real[r * t..r * t + p.tokens.len()].iter_mut().for_each(|x| *x = true);
        span[r * t + p.span.0..r * t + p.span.1].iter_mut().for_each(|x| *x = true);
        counts.push((p.span.1 - p.span.0) as f32);
    }
    let (bi, ti) = (b as i64, t as i64);
    let input = ForwardInput {
        input_ids: Tensor::from_slice(&ids).view([bi, ti]).to_device(device),
        positions: Tensor::arange(ti, (Kind::Int64, device)).unsqueeze(0).expand([bi, ti], true),
        attention_mask: Tensor::from_slice(&real).view([bi, ti]).to_device(device),
    };
    let span_mask = Tensor::from_slice(&span).view([bi, ti]).to_device(device);
    // Row of every captured position (row-major order of the mask).
    let row_of = Tensor::arange(bi, (Kind::Int64, device))
        .unsqueeze(1)
        .expand([bi, ti], false)
        .masked_select(&span_mask);
    let mut hooks = Hooks::new();
    let mut unique: Vec<usize> = layers.to_vec();
    unique.sort_unstable();
    unique.dedup();
    for &l in &unique {
        hooks.capture(
            format!("l{l}"),
            HookPoint::layer(l, LayerSite::ResidPost),
            Positions::Mask(span_mask.shallow_clone()),
        );
    }
    // The forward's own output (final-normed hidden states) is not needed.
    let _ = model
        .forward_select(&input, None, &mut hooks, LogitsSelect::None)
        .map_err(|e| VectorError::Model(e.to_string()))?;
    let counts = Tensor::from_slice(&counts).to_device(device).unsqueeze(1);
    let mut per_layer = Vec::with_capacity(layers.len());
    for &l in layers {
        let x = hooks
            .get(&format!("l{l}"))
            .ok_or_else(|| VectorError::Model(format!("layer {l} was not captured")))?
            .to_kind(Kind::Float);
        let hidden = x.size()[1];
        let sums = Tensor::zeros([bi, hidden], (Kind::Float, device)).index_add(0, &row_of, &x);
        per_layer.push(sums / &counts);
    }
    Ok(Tensor::stack(&per_layer, 1).to_device(tch::Device::Cpu))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_respect_the_token_budget_and_cover_every_probe() {
        let probes: Vec<Probe> =
            [5, 1, 9, 3, 9, 2, 7].iter().map(|&n| Probe::last(vec![1; n])).collect();
        let batches = plan_batches(&probes, 18, 256);
        let mut seen: Vec<usize> = batches.iter().flatten().copied().collect();
        seen.sort();
        assert_eq!(seen, (0..probes.len()).collect::<Vec<_>>());
        for b in &batches {
            let w = b.iter().map(|&i| probes[i].tokens.len()).max().unwrap();
            assert!(w * b.len() <= 18 || b.len() == 1, "{b:?}");
        }
        // A single probe longer than the budget still gets its own batch.
        assert_eq!(plan_batches(&[Probe::last(vec![0; 50])], 10, 4), vec![vec![0]]);
    }
}
