//! AdamW whose whole state can be saved and restored, so that a resumed run continues bit for
//! bit (libtorch's optimizer keeps its moments out of reach of `tch`). Decoupled weight decay
//! (Loshchilov & Hutter): `p ← p − lr·(m̂ / (√v̂ + ε) + wd·p)`, with bias-corrected moments.

use std::path::Path;
use tch::{Kind, Tensor};

/// AdamW over a fixed list of named parameters.
pub struct AdamW {
    names: Vec<String>,
    params: Vec<Tensor>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    /// Updates taken so far.
    pub steps: i64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl AdamW {
    /// Moments start at zero; `params` must require gradients.
    pub fn new(named: Vec<(String, Tensor)>, beta1: f64, beta2: f64, weight_decay: f64) -> Self {
        let (names, params): (Vec<_>, Vec<_>) = named.into_iter().unzip();
        let zeros = |p: &Tensor| Tensor::zeros_like(p).to_kind(Kind::Float);
        let m = params.iter().map(zeros).collect();
        let v = params.iter().map(zeros).collect();
        AdamW { names, params, m, v, steps: 0, beta1, beta2, eps: 1e-8, weight_decay }
    }

    /// The parameters being optimised.
    pub fn params(&self) -> &[Tensor] {
        &self.params
    }

    /// Clears the gradients.
    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            p.zero_grad();
        }
    }

    /// Global L2 norm of the gradients; scales them down to `max` when above it. Returns the
    /// norm before clipping.
    pub fn clip_grad_norm(&mut self, max: f64) -> f64 {
        let _guard = tch::no_grad_guard();
        let grads: Vec<Tensor> =
            self.params.iter().map(Tensor::grad).filter(Tensor::defined).collect();
        if grads.is_empty() {
            return 0.0;
        }
        let sq: Vec<Tensor> =
            grads.iter().map(|g| g.to_kind(Kind::Double).square().sum(Kind::Double)).collect();
        let norm = Tensor::stack(&sq, 0).sum(Kind::Double).sqrt().double_value(&[]);
        if norm > max {
            let scale = max / (norm + 1e-6);
            for mut g in grads {
                let _ = g.f_mul_scalar_(scale);
            }
        }
        norm
    }

    /// One update with learning rate `lr`; parameters without a gradient are skipped.
    pub fn step(&mut self, lr: f64) {
        let _guard = tch::no_grad_guard();
        self.steps += 1;
        let t = self.steps as i32;
        let (b1, b2) = (self.beta1, self.beta2);
        let c1 = 1.0 - b1.powi(t);
        let c2 = 1.0 - b2.powi(t);
        for ((p, m), v) in self.params.iter_mut().zip(&mut self.m).zip(&mut self.v) {
            let g = p.grad();
            if !g.defined() {
                continue;
            }
            let g = g.to_kind(Kind::Float);
            *m = &*m * b1 + &g * (1.0 - b1);
            *v = &*v * b2 + g.square() * (1.0 - b2);
            let update = (&*m / c1) / ((&*v / c2).sqrt() + self.eps);
            let pf = p.to_kind(Kind::Float);
            let new = &pf - (update + &pf * self.weight_decay) * lr;
            p.copy_(&new.to_kind(p.kind()));
        }
    }

    /// Writes the moments and step count to a safetensors file.
    pub fn save(&self, path: &Path) -> Result<(), tch::TchError> {
        let mut named: Vec<(String, Tensor)> = Vec::with_capacity(2 * self.names.len() + 1);
        for ((n, m), v) in self.names.iter().zip(&self.m).zip(&self.v) {
            named.push((format!("m.{n}"), m.to_device(tch::Device::Cpu)));
            named.push((format!("v.{n}"), v.to_device(tch::Device::Cpu)));
        }
        named.push(("steps".into(), Tensor::from_slice(&[self.steps])));
        Tensor::write_safetensors(&named, path)
    }

    /// Restores what [`AdamW::save`] wrote; every parameter must be present with its shape.
    pub fn load(&mut self, path: &Path) -> Result<(), String> {
        let read =
            Tensor::read_safetensors(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let map: std::collections::HashMap<String, Tensor> = read.into_iter().collect();
        let get = |k: &str| {
            map.get(k).ok_or_else(|| format!("{}: optimizer state lacks `{k}`", path.display()))
        };
        for i in 0..self.names.len() {
            for (prefix, store) in [("m", &mut self.m), ("v", &mut self.v)] {
                let t = get(&format!("{prefix}.{}", self.names[i]))?;
                if t.size() != store[i].size() {
                    return Err(format!(
                        "{}: `{prefix}.{}` has shape {:?}, the parameter {:?}",
                        path.display(),
                        self.names[i],
                        t.size(),
                        store[i].size()
                    ));
                }
                store[i] = t.to_device(store[i].device()).to_kind(Kind::Float);
            }
        }
        self.steps = get("steps")?.int64_value(&[0]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two steps on f(p) = ½‖p‖² (gradient p) against the update worked by hand.
    #[test]
    fn matches_the_closed_form() {
        let p = Tensor::from_slice(&[1.0f32, -2.0]).set_requires_grad(true);
        let mut opt = AdamW::new(vec![("p".into(), p.shallow_clone())], 0.9, 0.999, 0.1);
        let mut want = [1.0f64, -2.0];
        let (mut m, mut v) = ([0.0f64; 2], [0.0f64; 2]);
        for t in 1..=2 {
            opt.zero_grad();
            let loss = (&p * &p).sum(Kind::Float) * 0.5;
            loss.backward();
            opt.step(0.01);
            for i in 0..2 {
                let g = want[i];
                m[i] = 0.9 * m[i] + 0.1 * g;
                v[i] = 0.999 * v[i] + 0.001 * g * g;
                let mh = m[i] / (1.0 - 0.9f64.powi(t));
                let vh = v[i] / (1.0 - 0.999f64.powi(t));
                want[i] -= 0.01 * (mh / (vh.sqrt() + 1e-8) + 0.1 * want[i]);
            }
        }
        let got = Vec::<f32>::try_from(&p.detach()).unwrap();
        for i in 0..2 {
            assert!((f64::from(got[i]) - want[i]).abs() < 1e-6, "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn clipping_scales_the_global_norm() {
        let p = Tensor::from_slice(&[3.0f32, 4.0]).set_requires_grad(true);
        let mut opt = AdamW::new(vec![("p".into(), p.shallow_clone())], 0.9, 0.999, 0.0);
        (&p * &p).sum(Kind::Float).multiply_scalar(0.5).backward();
        assert!((opt.clip_grad_norm(1.0) - 5.0).abs() < 1e-6);
        let g = Vec::<f32>::try_from(&p.grad()).unwrap();
        assert!((g[0] - 0.6).abs() < 1e-5 && (g[1] - 0.8).abs() < 1e-5, "{g:?}");
    }

    #[test]
    fn state_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let p = Tensor::from_slice(&[1.0f32, 2.0]).set_requires_grad(true);
        let mut a = AdamW::new(vec![("p".into(), p.shallow_clone())], 0.9, 0.999, 0.0);
        (&p * &p).sum(Kind::Float).backward();
        a.step(0.1);
        a.save(&dir.path().join("opt.safetensors")).unwrap();
        let q = Tensor::from_slice(&[1.0f32, 2.0]).set_requires_grad(true);
        let mut b = AdamW::new(vec![("p".into(), q.shallow_clone())], 0.9, 0.999, 0.0);
        b.load(&dir.path().join("opt.safetensors")).unwrap();
        assert_eq!(b.steps, 1);
        assert!(a.m[0].equal(&b.m[0]) && a.v[0].equal(&b.v[0]));
        let mut c = AdamW::new(vec![("other".into(), q)], 0.9, 0.999, 0.0);
        let e = c.load(&dir.path().join("opt.safetensors")).unwrap_err();
        assert!(e.contains("m.other"), "{e}");
    }
}
