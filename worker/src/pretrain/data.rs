//! The token streams and the seeded windows drawn from them.

use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

use super::PretrainError;
use crate::tokenizer::{Corpus, Split, Tokenizer};

const KEY_TAG: &[u8; 24] = b"wax/pretrain-windows\0\0\0\0";

/// The tokens of `split` (documents joined by `separator`), stopping after `max_bytes`.
pub fn tokenize_split(
    corpus: &Corpus,
    tok: &Tokenizer,
    split: Split,
    max_bytes: Option<usize>,
    separator: u32,
) -> Result<Vec<i64>, PretrainError> {
    let mut texts = Vec::new();
    let mut bytes = 0usize;
    for doc in corpus.documents(split) {
        if max_bytes.is_some_and(|m| bytes >= m) {
            break;
        }
        let doc = doc?;
        bytes += doc.text.len();
        texts.push(doc.text);
    }
    let mut out = Vec::new();
    for ids in tok.encode_batch(&texts, false)? {
        out.extend(ids.into_iter().map(i64::from));
        out.push(i64::from(separator));
    }
    Ok(out)
}

/// Window start offsets: `batch` per step, uniform over the stream, from ChaCha8 keyed by the
/// seed. The draws of a step depend only on the seed and the draws before it, so a resumed run
/// replays the first steps' draws and continues with the very windows of an uninterrupted run.
pub struct Windows {
    rng: ChaCha8Rng,
    /// Possible starts: `stream length − window + 1`.
    starts: u64,
    batch: usize,
}

impl Windows {
    pub fn new(seed: u64, stream_len: usize, window: usize, batch: usize) -> Windows {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        key[8..].copy_from_slice(KEY_TAG);
        Windows {
            rng: ChaCha8Rng::from_seed(key),
            starts: (stream_len + 1).saturating_sub(window).max(1) as u64,
            batch,
        }
    }

    /// The starts of the next step's windows.
    pub fn next_step(&mut self) -> Vec<usize> {
        (0..self.batch).map(|_| below(&mut self.rng, self.starts) as usize).collect()
    }

    /// Skips `steps` steps' draws.
    pub fn skip(&mut self, steps: usize) {
        for _ in 0..steps {
            self.next_step();
        }
    }
}

/// Uniform in `0..n` without modulo bias (Lemire's multiply-and-reject).
fn below(rng: &mut ChaCha8Rng, n: u64) -> u64 {
    let threshold = n.wrapping_neg() % n;
    loop {
        let product = u128::from(rng.next_u64()) * u128::from(n);
        if (product as u64) >= threshold {
            return (product >> 64) as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skipping_replays_the_same_draws() {
        let mut a = Windows::new(7, 10_000, 129, 4);
        let first: Vec<Vec<usize>> = (0..5).map(|_| a.next_step()).collect();
        let mut b = Windows::new(7, 10_000, 129, 4);
        b.skip(3);
        assert_eq!(b.next_step(), first[3]);
        assert_eq!(b.next_step(), first[4]);
        assert!(first.iter().flatten().all(|&s| s + 129 <= 10_000));
    }

    /// `below` is uniform: a chi-square test over 8 cells (closed-form critical value).
    #[test]
    fn below_is_uniform() {
        let mut w = Windows::new(1, 8 + 128, 129, 1);
        let mut counts = [0f64; 8];
        let n = 80_000;
        for _ in 0..n {
            counts[w.next_step()[0]] += 1.0;
        }
        let expected = n as f64 / 8.0;
        let chi2: f64 = counts.iter().map(|c| (c - expected).powi(2) / expected).sum();
        // 7 degrees of freedom: P(χ² > 24.32) = 0.001.
        assert!(chi2 < 24.32, "chi2 = {chi2}, counts {counts:?}");
    }
}
