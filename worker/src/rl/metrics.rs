//! Per-step training metrics, the JSONL sink, and the paired test of an evaluation.

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Everything logged for one optimizer step (RL: one rollout batch; SFT: one data batch).
/// Fields ending in `_s` and `tokens_per_s` are wall-clock measurements; every other field is a
/// deterministic function of the configuration and the step on CPU.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    pub step: usize,
    pub algorithm: String,
    pub return_mean: f64,
    pub return_std: f64,
    pub return_max: f64,
    pub return_min: f64,
    /// Tiles entered per turn, by class.
    pub gold_rate: f64,
    pub mold_rate: f64,
    pub path_rate: f64,
    /// Mean entropy of the four-move policy at the decisions (nats).
    pub entropy: f64,
    /// Mean per-class entropy H_c over decisions with at least two neighbours of class c
    /// (Path, Mold, Gold); null when no decision had two.
    pub entropy_path: Option<f64>,
    pub entropy_mold: Option<f64>,
    pub entropy_gold: Option<f64>,
    /// Mean equalized entropy H_eq.
    pub entropy_eq: f64,
    pub loss: f64,
    pub pg_loss: f64,
    /// KL to the reference model (the configured estimator), when a reference is used.
    pub kl_ref: Option<f64>,
    /// Mean k3 estimate of KL(old ‖ new) over the update's decisions.
    pub approx_kl: f64,
    pub clip_fraction: f64,
    pub dual_clip_fraction: f64,
    pub value_loss: Option<f64>,
    pub explained_variance: Option<f64>,
    /// SFT: accuracy of the argmax move on the batch.
    pub sft_accuracy: Option<f64>,
    pub grad_norm: f64,
    pub lr: f64,
    pub entropy_coef: f64,
    pub episodes: usize,
    pub truncated: usize,
    pub rollout_tokens: usize,
    pub rollout_s: f64,
    pub update_s: f64,
    pub step_s: f64,
    pub tokens_per_s: f64,
}

impl StepMetrics {
    /// A copy without the wall-clock fields (what must repeat exactly on a resumed run).
    pub fn deterministic(&self) -> StepMetrics {
        StepMetrics {
            rollout_s: 0.0,
            update_s: 0.0,
            step_s: 0.0,
            tokens_per_s: 0.0,
            ..self.clone()
        }
    }
}

/// Appends one JSON object per line and flushes each, so a crash loses no finished step.
pub struct JsonlSink {
    path: PathBuf,
    file: std::fs::File,
}

impl JsonlSink {
    /// Opens `path` for appending (creating it).
    pub fn append(path: &Path) -> std::io::Result<JsonlSink> {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        Ok(JsonlSink { path: path.to_path_buf(), file })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn write<T: Serialize>(&mut self, record: &T) -> std::io::Result<()> {
        let line = serde_json::to_string(record).map_err(std::io::Error::other)?;
        writeln!(self.file, "{line}")?;
        self.file.flush()
    }
}

/// Reads a JSONL file of records; the error names the line.
pub fn read_jsonl<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| format!("{}:{}: {e}", path.display(), i + 1))
        })
        .collect()
}

/// Returns of the same held-out episodes before and after training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairedComparison {
    pub n: usize,
    pub before_mean: f64,
    pub after_mean: f64,
    /// Mean of after − before.
    pub mean_difference: f64,
    pub t: f64,
    /// Two-sided p-value of the paired t test (n − 1 degrees of freedom).
    pub p_value: f64,
}

/// Paired t test of `after − before`.
pub fn paired_t(before: &[f64], after: &[f64]) -> PairedComparison {
    let n = before.len().min(after.len());
    let d: Vec<f64> = (0..n).map(|i| after[i] - before[i]).collect();
    let mean = |x: &[f64]| if x.is_empty() { 0.0 } else { x.iter().sum::<f64>() / x.len() as f64 };
    let md = mean(&d);
    let (t, p) = if n < 2 {
        (0.0, 1.0)
    } else {
        let var = d.iter().map(|x| (x - md).powi(2)).sum::<f64>() / (n - 1) as f64;
        if var == 0.0 {
            if md == 0.0 { (0.0, 1.0) } else { (md.signum() * f64::INFINITY, 0.0) }
        } else {
            let t = md / (var / n as f64).sqrt();
            (t, student_t_two_sided(t, (n - 1) as f64))
        }
    };
    PairedComparison {
        n,
        before_mean: mean(&before[..n]),
        after_mean: mean(&after[..n]),
        mean_difference: md,
        t,
        p_value: p,
    }
}

/// Two-sided tail probability of Student's t: `I_{ν/(ν+t²)}(ν/2, ½)`.
pub fn student_t_two_sided(t: f64, df: f64) -> f64 {
    incomplete_beta(df / 2.0, 0.5, df / (df + t * t))
}

/// The regularised incomplete beta function `I_x(a, b)`, by its continued fraction (modified
/// Lentz), using the symmetry `I_x(a,b) = 1 − I_{1−x}(b,a)` where the fraction converges slowly.
pub fn incomplete_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    if x > (a + 1.0) / (a + b + 2.0) {
        return 1.0 - incomplete_beta(b, a, 1.0 - x);
    }
    let tiny = 1e-300;
    let mut c = 1.0;
    let mut d = 1.0 - (a + b) * x / (a + 1.0);
    d = 1.0 / if d.abs() < tiny { tiny } else { d };
    let mut f = d;
    for m in 1..300 {
        let m = m as f64;
        for k in 0..2 {
            let num = if k == 0 {
                m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m))
            } else {
                -(a + m) * (a + b + m) * x / ((a + 2.0 * m) * (a + 2.0 * m + 1.0))
            };
            d = 1.0 + num * d;
            d = 1.0 / if d.abs() < tiny { tiny } else { d };
            c = 1.0 + num / c;
            if c.abs() < tiny {
                c = tiny;
            }
            f *= c * d;
        }
        if (c * d - 1.0).abs() < 1e-15 {
            break;
        }
    }
    ln_front.exp() * f / a
}

/// ln Γ(x) for x > 0 (Lanczos approximation, g = 7, n = 9).
fn ln_gamma(x: f64) -> f64 {
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let t = x + 7.5;
    let s: f64 =
        C[1..].iter().enumerate().map(|(i, c)| c / (x + i as f64 + 1.0)).sum::<f64>() + C[0];
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + s.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference values: the familiar table entries (t = 2.228 is the 5% critical value at 10
    /// degrees of freedom; t with 1 degree of freedom is Cauchy) and, for the others, the
    /// density integrated numerically (trapezoid rule, 2·10⁶ intervals, float64).
    #[test]
    fn student_t_matches_tables() {
        for (t, df, p) in [
            (2.0, 10.0, 0.073_388_034_770_740_7),
            (2.228_138_851_986_274, 10.0, 0.05),
            (1.0, 1.0, 0.5),
            (3.5, 63.0, 0.000_860_143_84),
            (0.0, 5.0, 1.0),
        ] {
            let got = student_t_two_sided(t, df);
            assert!((got - p).abs() < 2e-6, "t={t} df={df}: {got} vs {p}");
        }
        // ln Γ(5) = ln 24, Γ(½) = √π.
        assert!((ln_gamma(5.0) - 24f64.ln()).abs() < 1e-12);
        assert!((ln_gamma(0.5) - std::f64::consts::PI.sqrt().ln()).abs() < 1e-12);
    }

    #[test]
    fn paired_t_on_a_worked_example() {
        // d = [1, 2, 3, 4]: mean 2.5, sample var 5/3, t = 2.5 / sqrt(5/12) = 3.8730.
        let c = paired_t(&[0.0, 0.0, 0.0, 0.0], &[1.0, 2.0, 3.0, 4.0]);
        assert!((c.t - 3.872_983_346).abs() < 1e-6, "{c:?}");
        // Two-sided p for t = 3.873, df = 3: 0.030466.
        assert!((c.p_value - 0.030_466).abs() < 1e-4, "{c:?}");
        assert_eq!(c.mean_difference, 2.5);
    }
}
