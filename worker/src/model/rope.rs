//! Rotary position embeddings: the inverse frequencies of every `rope_type` we support, computed as
//! transformers' `modeling_rope_utils.py` does (float32 tensor arithmetic, same order of operations).

use std::f64::consts::PI;
use std::path::Path;

use serde_json::{Map, Value};
use tch::{Device, Kind, Tensor};

use super::config::Family;
use super::error::ModelError;

/// How the inverse frequencies are derived from `rope_theta`.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    Default,
    /// Positions divided by `factor`.
    Linear {
        factor: f64,
    },
    /// NTK-aware base rescaling once the sequence exceeds `max_position_embeddings`.
    Dynamic {
        factor: f64,
    },
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: f64,
    },
    Yarn {
        factor: f64,
        attention_factor: Option<f64>,
        beta_fast: f64,
        beta_slow: f64,
        mscale: Option<f64>,
        mscale_all_dim: Option<f64>,
        original_max_position_embeddings: f64,
        truncate: bool,
    },
    /// A `rope_type` we do not implement; rejected by `ModelConfig`.
    Unsupported(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct RopeConfig {
    pub theta: f64,
    pub partial_rotary_factor: f64,
    pub scaling: RopeScaling,
    pub max_position_embeddings: i64,
}

fn cfg_err(path: &Path, field: &str, message: impl Into<String>) -> ModelError {
    ModelError::Config { path: path.to_path_buf(), field: field.into(), message: message.into() }
}

fn num(
    obj: &Map<String, Value>,
    key: &str,
    path: &Path,
    prefix: &str,
) -> Result<Option<f64>, ModelError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_f64().map(Some).ok_or_else(|| {
            cfg_err(path, &format!("{prefix}{key}"), format!("expected a number, found {v}"))
        }),
    }
}

impl RopeConfig {
    /// Reads `rope_parameters` (transformers 5.x) or top-level `rope_theta` + `rope_scaling`
    /// (older snapshots), plus GPT-NeoX's `rotary_emb_base` / `rotary_pct`.
    pub fn from_config(
        obj: &Map<String, Value>,
        path: &Path,
        family: Family,
        max_position_embeddings: i64,
    ) -> Result<RopeConfig, ModelError> {
        let (params, prefix) = match (obj.get("rope_parameters"), obj.get("rope_scaling")) {
            (Some(Value::Object(p)), _) => (p.clone(), "rope_parameters."),
            (_, Some(Value::Object(p))) => (p.clone(), "rope_scaling."),
            (Some(Value::Null) | None, Some(Value::Null) | None) if family == Family::GptOss => {
                (super::gpt_oss::default_rope_parameters(), "rope_parameters.")
            }
            (Some(Value::Null) | None, Some(Value::Null) | None) => {
                (Map::new(), "rope_parameters.")
            }
            (Some(v), _) | (_, Some(v)) => {
                return Err(cfg_err(
                    path,
                    "rope_parameters",
                    format!("expected an object, found {v}"),
                ));
            }
        };
        let theta = num(&params, "rope_theta", path, prefix)?
            .or(num(obj, "rope_theta", path, "")?)
            .or(if family == Family::GptNeoX {
                num(obj, "rotary_emb_base", path, "")?
            } else {
                None
            })
            .unwrap_or(if family == Family::GptOss {
                super::gpt_oss::DEFAULT_ROPE_THETA
            } else {
                10000.0
            });
        let prf = num(&params, "partial_rotary_factor", path, prefix)?
            .or(num(obj, "partial_rotary_factor", path, "")?)
            .or(if family == Family::GptNeoX {
                Some(num(obj, "rotary_pct", path, "")?.unwrap_or(0.25))
            } else {
                None
            })
            .unwrap_or(1.0);
        if !(prf > 0.0 && prf <= 1.0) {
            return Err(cfg_err(path, "partial_rotary_factor", format!("{prf} is not in (0, 1]")));
        }
        let kind = match params.get("rope_type").or(params.get("type")) {
            None | Some(Value::Null) => "default".to_string(),
            Some(Value::String(s)) => s.clone(),
            Some(v) => {
                return Err(cfg_err(
                    path,
                    &format!("{prefix}rope_type"),
                    format!("expected a string, found {v}"),
                ));
            }
        };
        let p = &params;
        let get = |k: &str| num(p, k, path, prefix);
        let need = |k: &str| -> Result<f64, ModelError> {
            get(k)?.ok_or_else(|| {
                cfg_err(path, &format!("{prefix}{k}"), format!("required for rope_type `{kind}`"))
            })
        };
        let original = |k: &str| -> Result<f64, ModelError> {
            Ok(get(k)?
                .or(num(obj, "original_max_position_embeddings", path, "")?)
                .unwrap_or(max_position_embeddings as f64))
        };
        let scaling = match kind.as_str() {
            "default" => RopeScaling::Default,
            "linear" => RopeScaling::Linear { factor: need("factor")? },
            "dynamic" => RopeScaling::Dynamic { factor: need("factor")? },
            "llama3" => RopeScaling::Llama3 {
                factor: need("factor")?,
                low_freq_factor: need("low_freq_factor")?,
                high_freq_factor: need("high_freq_factor")?,
                original_max_position_embeddings: original("original_max_position_embeddings")?,
            },
            "yarn" => {
                let orig = original("original_max_position_embeddings")?;
                let truncate = match p.get("truncate") {
                    None | Some(Value::Null) => true,
                    Some(Value::Bool(b)) => *b,
                    Some(v) => {
                        return Err(cfg_err(
                            path,
                            &format!("{prefix}truncate"),
                            format!("expected a boolean, found {v}"),
                        ));
                    }
                };
                RopeScaling::Yarn {
                    factor: get("factor")?.unwrap_or(max_position_embeddings as f64 / orig),
                    attention_factor: get("attention_factor")?,
                    beta_fast: get("beta_fast")?.filter(|b| *b != 0.0).unwrap_or(32.0),
                    beta_slow: get("beta_slow")?.filter(|b| *b != 0.0).unwrap_or(1.0),
                    mscale: get("mscale")?,
                    mscale_all_dim: get("mscale_all_dim")?,
                    original_max_position_embeddings: orig,
                    truncate,
                }
            }
            other => RopeScaling::Unsupported(other.to_string()),
        };
        Ok(RopeConfig { theta, partial_rotary_factor: prf, scaling, max_position_embeddings })
    }

    /// `int(head_dim * partial_rotary_factor)`, as transformers computes it.
    pub fn rotary_dim(&self, head_dim: i64) -> i64 {
        (head_dim as f64 * self.partial_rotary_factor) as i64
    }

    /// Whether the frequencies depend on the sequence length of the forward call.
    pub fn is_dynamic(&self) -> bool {
        matches!(self.scaling, RopeScaling::Dynamic { .. })
    }

    /// Inverse frequencies `[dim / 2]` (float32, on `device`) and the cos/sin scaling factor.
    /// `seq_len` is only used by dynamic NTK scaling (`max(position) + 1` of the forward call).
    pub fn inv_freq(&self, dim: i64, seq_len: Option<i64>, device: Device) -> (Tensor, f64) {
        let exponent = |base: f64| {
            let e = Tensor::arange_start_step(0, dim, 2, (Kind::Int64, device))
                .to_kind(Kind::Float)
                / (dim as f64);
            Tensor::pow_scalar(base, &e)
        };
        let plain = |base: f64| exponent(base).reciprocal();
        match &self.scaling {
            RopeScaling::Default | RopeScaling::Unsupported(_) => (plain(self.theta), 1.0),
            RopeScaling::Linear { factor } => (plain(self.theta) / *factor, 1.0),
            RopeScaling::Dynamic { factor } => {
                let max_pos = self.max_position_embeddings as f64;
                let seq = seq_len.map_or(max_pos, |s| (s as f64).max(max_pos));
                let d = dim as f64;
                let base =
                    self.theta * ((factor * seq / max_pos) - (factor - 1.0)).powf(d / (d - 2.0));
                (plain(base), 1.0)
            }
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => {
                let inv = plain(self.theta);
                let old = *original_max_position_embeddings;
                let low_wavelen = old / low_freq_factor;
                let high_wavelen = old / high_freq_factor;
                let wavelen = inv.reciprocal() * (2.0 * PI);
                let scaled = inv.where_self(&wavelen.le(low_wavelen), &(&inv / *factor));
                let smooth = ((wavelen.reciprocal() * old) - *low_freq_factor)
                    / (high_freq_factor - low_freq_factor);
                let smoothed =
                    (smooth.ones_like() - &smooth) * &scaled / *factor + &smooth * &scaled;
                let medium = wavelen.ge(high_wavelen).logical_and(&wavelen.le(low_wavelen));
                (smoothed.where_self(&medium, &scaled), 1.0)
            }
            RopeScaling::Yarn {
                factor,
                attention_factor,
                beta_fast,
                beta_slow,
                mscale,
                mscale_all_dim,
                original_max_position_embeddings,
                truncate,
            } => {
                let get_mscale = |scale: f64, m: f64| {
                    if scale <= 1.0 { 1.0 } else { 0.1 * m * scale.ln() + 1.0 }
                };
                let attention = match (attention_factor, mscale, mscale_all_dim) {
                    (Some(a), _, _) => *a,
                    (None, Some(m), Some(ma)) if *m != 0.0 && *ma != 0.0 => {
                        get_mscale(*factor, *m) / get_mscale(*factor, *ma)
                    }
                    _ => get_mscale(*factor, 1.0),
                };
                let d = dim as f64;
                let base = self.theta;
                let correction_dim = |rot: f64| {
                    (d * (original_max_position_embeddings / (rot * 2.0 * PI)).ln())
                        / (2.0 * base.ln())
                };
                let (mut low, mut high) = (correction_dim(*beta_fast), correction_dim(*beta_slow));
                if *truncate {
                    low = low.floor();
                    high = high.ceil();
                }
                let low = low.max(0.0);
                let mut high = high.min(d - 1.0);
                if low == high {
                    high += 0.001;
                }
                let pos_freqs = exponent(base);
                let extrapolation = pos_freqs.reciprocal();
                let interpolation = (&pos_freqs * *factor).reciprocal();
                let ramp = ((Tensor::arange(dim / 2, (Kind::Float, device)) - low) / (high - low))
                    .clamp(0.0, 1.0);
                let extra_factor = ramp.ones_like() - ramp;
                let inv = &interpolation * (extra_factor.ones_like() - &extra_factor)
                    + &extrapolation * &extra_factor;
                (inv, attention)
            }
        }
    }
}

/// The rotation of one forward pass, for positions `[B, T]`: `cos` and a signed `sin`, both
/// `[B, T, 1, rotary_dim]` in the model's kind, where the signed `sin` is `(-sin, sin)` over the two
/// halves. Then `rotate_half(x)·sin = roll(x, half)·signed_sin` (negating the sine instead of the
/// input is exact in IEEE arithmetic), which takes one kernel where `rotate_half` takes two.
#[derive(Debug)]
pub struct Rotation {
    cos: Tensor,
    sin: Tensor,
}

impl Rotation {
    /// The cos and signed-sin tables, `[B, T, 1, rot]` in the model's kind.
    pub(super) fn tables(&self) -> (&Tensor, &Tensor) {
        (&self.cos, &self.sin)
    }

    pub fn new(inv_freq: &Tensor, scaling: f64, positions: &Tensor, kind: Kind) -> Rotation {
        let freqs = positions.to_kind(Kind::Float).unsqueeze(-1) * inv_freq;
        let (c, s) = (freqs.cos(), freqs.sin());
        let cos = Tensor::cat(&[&c, &c], -1);
        let sin = Tensor::cat(&[&s.neg(), &s], -1);
        let (cos, sin) = if scaling == 1.0 { (cos, sin) } else { (cos * scaling, sin * scaling) };
        Rotation { cos: cos.to_kind(kind).unsqueeze(2), sin: sin.to_kind(kind).unsqueeze(2) }
    }

    /// Rotates the first `rotary_dim` dimensions of `x` `[B, T, heads, head_dim]` as transformers'
    /// `apply_rotary_pos_emb` does (`x·cos + rotate_half(x)·sin`, same roundings).
    pub fn apply(&self, x: &Tensor) -> Tensor {
        let head_dim = x.size()[3];
        let rot_dim = self.cos.size()[3];
        let rotate = |x: &Tensor| x * &self.cos + x.roll([rot_dim / 2], [-1]) * &self.sin;
        if rot_dim == head_dim {
            return rotate(x);
        }
        let pass = x.narrow(-1, rot_dim, head_dim - rot_dim);
        Tensor::cat(&[&rotate(&x.narrow(-1, 0, rot_dim)), &pass], -1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// transformers' `apply_rotary_pos_emb` with `rotate_half`, on `[B, T, heads, head_dim]`.
    fn reference(x: &Tensor, positions: &Tensor, inv_freq: &Tensor, kind: Kind) -> Tensor {
        let freqs = positions.to_kind(Kind::Float).unsqueeze(-1) * inv_freq;
        let emb = Tensor::cat(&[&freqs, &freqs], -1);
        let (cos, sin) =
            (emb.cos().to_kind(kind).unsqueeze(2), emb.sin().to_kind(kind).unsqueeze(2));
        let rot_dim = cos.size()[3];
        let rot = x.narrow(-1, 0, rot_dim);
        let half = rot_dim / 2;
        let rotated =
            Tensor::cat(&[&rot.narrow(-1, half, half).neg(), &rot.narrow(-1, 0, half)], -1);
        let out = &rot * &cos + rotated * &sin;
        let head_dim = x.size()[3];
        Tensor::cat(&[&out, &x.narrow(-1, rot_dim, head_dim - rot_dim)], -1)
    }

    fn inv_freq(rot_dim: i64) -> Tensor {
        let i = Tensor::arange_start_step(0, rot_dim, 2, (Kind::Float, Device::Cpu));
        (i / rot_dim as f64 * -(10_000f64.ln())).exp()
    }

    #[test]
    fn rotation_is_bit_identical_to_rotate_half() {
        tch::manual_seed(7);
        for kind in [Kind::Float, Kind::BFloat16] {
            for (head_dim, rot_dim) in [(16, 16), (16, 4), (12, 8)] {
                let x =
                    Tensor::randn([2, 5, 3, head_dim], (Kind::Float, Device::Cpu)).to_kind(kind);
                let positions =
                    Tensor::from_slice(&[0i64, 1, 2, 3, 4, 7, 9, 30, 31, 500]).view([2, 5]);
                let inv = inv_freq(rot_dim);
                let got = Rotation::new(&inv, 1.0, &positions, kind).apply(&x);
                let want = reference(&x, &positions, &inv, kind);
                assert_eq!(got.size(), want.size());
                let diff = (got.to_kind(Kind::Float) - want.to_kind(Kind::Float))
                    .abs()
                    .max()
                    .double_value(&[]);
                assert_eq!(diff, 0.0, "{kind:?} head_dim {head_dim} rotary {rot_dim}");
            }
        }
    }

    #[test]
    fn rotation_turns_each_pair_by_position_times_frequency() {
        // Closed form in f64: dims (i, i + half) rotate by the angle p·θ_i.
        let (head_dim, half) = (8i64, 4usize);
        let x: Vec<f32> = (0..head_dim).map(|i| 0.3 * i as f32 - 1.0).collect();
        let theta: Vec<f64> = (0..half).map(|i| 10_000f64.powf(-((2 * i) as f64) / 8.0)).collect();
        let inv = Tensor::from_slice(&theta.iter().map(|&t| t as f32).collect::<Vec<_>>());
        let p = 5i64;
        let rot = Rotation::new(&inv, 1.0, &Tensor::from_slice(&[p]).view([1, 1]), Kind::Float);
        let got = rot.apply(&Tensor::from_slice(&x).view([1, 1, 1, head_dim]));
        let got = Vec::<f32>::try_from(got.reshape([-1])).unwrap();
        for i in 0..half {
            let a = p as f64 * f64::from(theta[i] as f32);
            let (x1, x2) = (f64::from(x[i]), f64::from(x[i + half]));
            assert!((f64::from(got[i]) - (x1 * a.cos() - x2 * a.sin())).abs() < 1e-5);
            assert!((f64::from(got[i + half]) - (x2 * a.cos() + x1 * a.sin())).abs() < 1e-5);
        }
    }

    #[test]
    fn scaling_multiplies_cos_and_sin() {
        let inv = inv_freq(4);
        let x = Tensor::ones([1, 1, 1, 4], (Kind::Float, Device::Cpu));
        let positions = Tensor::from_slice(&[3i64]).view([1, 1]);
        let one = Rotation::new(&inv, 1.0, &positions, Kind::Float).apply(&x);
        let two = Rotation::new(&inv, 2.0, &positions, Kind::Float).apply(&x);
        let diff = (two - one * 2.0).abs().max().double_value(&[]);
        assert!(diff < 1e-6, "{diff}");
    }
}
