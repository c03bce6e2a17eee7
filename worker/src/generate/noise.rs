//! Counter-based random numbers computed on the device.
//!
//! Sampling must be reproducible per sequence — the same (seed, step) gives the same token
//! whatever else is in the batch, on CPU and GPU — and must not synchronise with the host each
//! decode step. libtorch's global generator gives neither. Instead every uniform draw is a pure
//! function of (sequence seed, step, vocabulary index), computed with integer tensor ops:
//! a 32-bit avalanche hash (the "lowbias32" construction: xor-shift, multiply, xor-shift, …)
//! applied in a chain. Multiplication mod 2^32 is done in 16-bit halves, so the int64
//! arithmetic never overflows and every backend computes identical bits.

use tch::{Device, Kind, Tensor};

const MASK32: i64 = 0xffff_ffff;

/// `x · c mod 2^32` for int64 tensors holding values in `0..2^32` and `c < 2^32`, computed in
/// 16-bit halves so that no intermediate reaches 2^63.
fn mul32(x: &Tensor, c: i64) -> Tensor {
    let lo = x.bitwise_and(0xffff);
    let hi = x.bitwise_right_shift_tensor_scalar(16);
    let hi = (hi * c).bitwise_and(0xffff) * 65_536_i64;
    (lo * c + hi).bitwise_and(MASK32)
}

/// One round of a 32-bit avalanche hash (xor-shift-multiply, "lowbias32") on int64 tensors
/// holding values in `0..2^32`.
fn hash32(x: &Tensor) -> Tensor {
    let x = x.bitwise_xor_tensor(&x.bitwise_right_shift_tensor_scalar(16));
    let x = mul32(&x, 0x7feb_352d);
    let x = x.bitwise_xor_tensor(&x.bitwise_right_shift_tensor_scalar(15));
    let x = mul32(&x, 0x846c_a68b);
    x.bitwise_xor_tensor(&x.bitwise_right_shift_tensor_scalar(16))
}

/// Mixes a 64-bit seed (as i64 tensor of any shape) into a 32-bit key.
fn key_of(seed: &Tensor) -> Tensor {
    let lo = seed.bitwise_and(MASK32);
    // Arithmetic shift, then mask: the high word of the two's-complement bits.
    let hi = seed.bitwise_right_shift_tensor_scalar(32).bitwise_and(MASK32);
    hash32(&(hash32(&lo) + 0x9e37_79b9_i64).bitwise_and(MASK32).bitwise_xor_tensor(&hi))
}

/// Uniform draws in the open interval (0, 1), shape `[B, V]`, as float64: element `(b, v)` is a
/// function of `seeds[b]`, `step` and `v` only. 48 random bits per draw.
pub fn uniform(seeds: &Tensor, step: i64, vocab: i64, device: Device) -> Tensor {
    uniform_at(seeds, &Tensor::from(step), vocab, device)
}

/// [`uniform`] with the step in a tensor: a 0-dim (or one-element) int64 tensor on the CPU or on
/// `device`. A device tensor keeps the step out of the recorded work, so one captured CUDA graph
/// serves every step.
pub fn uniform_at(seeds: &Tensor, step: &Tensor, vocab: i64, device: Device) -> Tensor {
    let key = key_of(&seeds.to_device(device).to_kind(Kind::Int64));
    // As a 0-dim tensor the step combines with `key` on any device (a CPU 0-dim tensor acts as a
    // scalar; a one-element 1-d CPU tensor would be a device mismatch on CUDA).
    let scalar: [i64; 0] = [];
    let step = step.reshape(scalar).bitwise_and(MASK32);
    let key = hash32(&(key + step).bitwise_and(MASK32)).unsqueeze(1);
    let idx = Tensor::arange(vocab, (Kind::Int64, device)).unsqueeze(0);
    let a = hash32(&(&key + &idx).bitwise_and(MASK32));
    let b = hash32(&(a.bitwise_xor_tensor(&key) + 0x6a09_e667_i64).bitwise_and(MASK32));
    // 24 high bits of each hash → 48 bits; +0.5 keeps the value strictly inside (0, 1).
    let hi = a.bitwise_right_shift_tensor_scalar(8).to_kind(Kind::Double);
    let lo = b.bitwise_right_shift_tensor_scalar(8).to_kind(Kind::Double);
    (hi * 16_777_216.0 + lo + 0.5) / 281_474_976_710_656.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seeds(v: &[i64]) -> Tensor {
        Tensor::from_slice(v)
    }

    /// The hash equals the same function computed with u32 wrapping arithmetic.
    #[test]
    fn hash_matches_a_scalar_reference() {
        fn reference(mut x: u32) -> u32 {
            x ^= x >> 16;
            x = x.wrapping_mul(0x7feb_352d);
            x ^= x >> 15;
            x = x.wrapping_mul(0x846c_a68b);
            x ^ (x >> 16)
        }
        let xs: Vec<i64> = [0u32, 1, 2, 0xffff, 0x1_0000, 0xdead_beef, u32::MAX, 0x8000_0000]
            .iter()
            .map(|&x| i64::from(x))
            .collect();
        let got = Vec::<i64>::try_from(&hash32(&Tensor::from_slice(&xs))).unwrap();
        for (x, h) in xs.iter().zip(got) {
            assert_eq!(h, i64::from(reference(*x as u32)), "hash of {x:#x}");
        }
    }

    #[test]
    fn draws_depend_only_on_seed_step_and_index() {
        let a = uniform(&seeds(&[7, 8, 9]), 3, 50, Device::Cpu);
        let b = uniform(&seeds(&[9, 7]), 3, 50, Device::Cpu);
        assert!(a.get(0).equal(&b.get(1)));
        assert!(a.get(2).equal(&b.get(0)));
        let c = uniform(&seeds(&[7]), 4, 50, Device::Cpu);
        assert!(!a.get(0).equal(&c.get(0)), "the step must change the draws");
        // Large and negative seeds are distinct keys.
        let d = uniform(&seeds(&[-1, i64::MAX, i64::MIN, 1 << 32]), 0, 8, Device::Cpu);
        for i in 0..4 {
            for j in 0..i {
                assert!(!d.get(i).equal(&d.get(j)), "seeds {i} and {j} collide");
            }
        }
    }

    #[test]
    fn uniform_moments_and_bins_match_the_uniform_distribution() {
        // 64 seeds × 4096 indices = 262,144 draws.
        let s: Vec<i64> = (0..64).map(|i| i * 1_000_003 + 11).collect();
        let u = uniform(&seeds(&s), 17, 4096, Device::Cpu).flatten(0, 1);
        let n = u.size()[0] as f64;
        let mean = u.mean(Kind::Double).double_value(&[]);
        let var = u.var(false).double_value(&[]);
        assert!((mean - 0.5).abs() < 4.0 * (1.0 / 12.0 / n).sqrt(), "mean {mean}");
        assert!((var - 1.0 / 12.0).abs() < 0.002, "variance {var}");
        assert!(u.min().double_value(&[]) > 0.0 && u.max().double_value(&[]) < 1.0);
        // Chi-square over 64 equal bins; 63 degrees of freedom, p = 1e-4 critical value ≈ 116.
        let bins = (u * 64.0).floor().to_kind(Kind::Int64).bincount::<Tensor>(None, 64);
        let expected = n / 64.0;
        let chi2: f64 = Vec::<i64>::try_from(&bins)
            .unwrap()
            .iter()
            .map(|&c| (c as f64 - expected).powi(2) / expected)
            .sum();
        assert!(chi2 < 116.0, "chi-square {chi2}");
    }

    #[test]
    fn neighbouring_indices_are_uncorrelated() {
        let s: Vec<i64> = (0..32).collect();
        let u = uniform(&seeds(&s), 0, 2048, Device::Cpu);
        let x = u.narrow(1, 0, 2047).flatten(0, 1);
        let y = u.narrow(1, 1, 2047).flatten(0, 1);
        let xc = &x - x.mean(Kind::Double);
        let yc = &y - y.mean(Kind::Double);
        let r = (&xc * &yc).sum(Kind::Double).double_value(&[])
            / ((&xc * &xc).sum(Kind::Double).double_value(&[])
                * (&yc * &yc).sum(Kind::Double).double_value(&[]))
            .sqrt();
        // n ≈ 65k: |r| < 4/sqrt(n) ≈ 0.016 unless correlated.
        assert!(r.abs() < 0.016, "lag-1 correlation {r}");
    }
}
