//! Dequantization of ggml blocks to `f32`: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K and Q6_K.
//!
//! Each value is computed with the same float operations, in the same order, as ggml's
//! reference dequantizers (and gguf-py's, which transformers uses): a scale is widened from
//! half precision exactly and multiplied by the quantized integers, then an offset is added or
//! subtracted. The products are exact in f32 (a half has 11 significant bits, a sub-block
//! scale at most 8 and a quant at most 6), so the only rounding is the offset's, done once as a
//! separate step like theirs (never a fused multiply-add): the results equal theirs bit for
//! bit.
//!
//! Large tensors are split into runs of blocks dequantized in parallel on rayon's pool.

use rayon::prelude::*;

use super::types::GgmlType;

/// Blocks per parallel work item: large enough to amortise scheduling, small enough to spread
/// a 576-wide matrix over every core.
const BLOCKS_PER_TASK: usize = 4096;

/// `src` does not hold whole blocks for `dst`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SizeMismatch {
    pub expected_bytes: usize,
    pub found_bytes: usize,
}

/// Widens an IEEE half-precision value exactly (subnormals, infinities and NaN payloads too).
pub fn f16_to_f32(bits: u16) -> f32 {
    let sign = u32::from(bits >> 15) << 31;
    let exp = u32::from((bits >> 10) & 0x1f);
    let mant = u32::from(bits & 0x3ff);
    let magnitude = match exp {
        // Zero or subnormal: mant * 2^-24 is exact in f32.
        0 => (mant as f32 * (1.0 / 16_777_216.0)).to_bits(),
        0x1f => 0x7f80_0000 | (mant << 13),
        _ => ((exp + 112) << 23) | (mant << 13),
    };
    f32::from_bits(sign | magnitude)
}

fn half_at(b: &[u8], at: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[at], b[at + 1]]))
}

/// Dequantizes `src` (whole blocks of `ty`) into `dst`.
pub fn dequantize(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<(), SizeMismatch> {
    let (be, bb) = (ty.block_elems(), ty.block_bytes());
    let expected_bytes =
        if dst.len().is_multiple_of(be) { dst.len() / be * bb } else { usize::MAX };
    if src.len() != expected_bytes {
        return Err(SizeMismatch { expected_bytes, found_bytes: src.len() });
    }
    let run = |src: &[u8], dst: &mut [f32]| {
        for (b, y) in src.chunks_exact(bb).zip(dst.chunks_exact_mut(be)) {
            match ty {
                GgmlType::F32 => y[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                GgmlType::F16 => y[0] = half_at(b, 0),
                GgmlType::BF16 => {
                    y[0] = f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16)
                }
                GgmlType::Q8_0 => q8_0(b, y),
                GgmlType::Q4_0 => q4_0(b, y),
                GgmlType::Q4_1 => q4_1(b, y),
                GgmlType::Q4_K => q4_k(b, y),
                GgmlType::Q6_K => q6_k(b, y),
            }
        }
    };
    // Plain floats are cheap per element: give each task as many bytes as a quantized run.
    let task_elems = if be == 1 { BLOCKS_PER_TASK * 32 } else { BLOCKS_PER_TASK * be };
    dst.par_chunks_mut(task_elems)
        .zip(src.par_chunks(task_elems / be * bb))
        .for_each(|(d, s)| run(s, d));
    Ok(())
}

/// 32 values: `d` (f16), then 32 signed bytes; `y = q * d`.
fn q8_0(b: &[u8], y: &mut [f32]) {
    let d = half_at(b, 0);
    for (out, &q) in y.iter_mut().zip(&b[2..34]) {
        *out = f32::from(q as i8) * d;
    }
}

/// 32 values: `d`, then 16 bytes whose low nibbles are values 0..16 and high nibbles 16..32;
/// `y = (q - 8) * d`.
fn q4_0(b: &[u8], y: &mut [f32]) {
    let d = half_at(b, 0);
    let qs = &b[2..18];
    for j in 0..16 {
        y[j] = d * f32::from((qs[j] & 0x0f) as i8 - 8);
        y[j + 16] = d * f32::from((qs[j] >> 4) as i8 - 8);
    }
}

/// 32 values: `d`, `m`, then nibbles as in Q4_0; `y = d * q + m`.
fn q4_1(b: &[u8], y: &mut [f32]) {
    let d = half_at(b, 0);
    let m = half_at(b, 2);
    let qs = &b[4..20];
    for j in 0..16 {
        y[j] = d * f32::from(qs[j] & 0x0f) + m;
        y[j + 16] = d * f32::from(qs[j] >> 4) + m;
    }
}

/// The 6-bit scale and min of sub-block `j` (0..8) of a Q4_K super-block, packed in 12 bytes:
/// bytes 0..4 hold the scales of sub-blocks 0..4 (and the top two bits of 4..8), bytes 4..8 the
/// mins likewise, bytes 8..12 the low four bits of the scales and mins of 4..8.
fn k_scale_min(s: &[u8], j: usize) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        ((s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4), (s[j + 4] >> 4) | ((s[j] >> 6) << 4))
    }
}

/// 256 values: `d`, `dmin`, 12 bytes of scales and mins, 128 bytes of nibbles. Each 64-value
/// chunk reads 32 bytes: low nibbles are its first sub-block, high nibbles its second;
/// `y = (d * scale) * q - dmin * min`.
fn q4_k(b: &[u8], y: &mut [f32]) {
    let d = half_at(b, 0);
    let dmin = half_at(b, 2);
    let scales = &b[4..16];
    let qs = &b[16..144];
    for chunk in 0..4 {
        let q = &qs[chunk * 32..chunk * 32 + 32];
        let (sc1, m1) = k_scale_min(scales, 2 * chunk);
        let (sc2, m2) = k_scale_min(scales, 2 * chunk + 1);
        let (d1, min1) = (d * f32::from(sc1), dmin * f32::from(m1));
        let (d2, min2) = (d * f32::from(sc2), dmin * f32::from(m2));
        let out = &mut y[chunk * 64..chunk * 64 + 64];
        for l in 0..32 {
            out[l] = d1 * f32::from(q[l] & 0x0f) - min1;
            out[l + 32] = d2 * f32::from(q[l] >> 4) - min2;
        }
    }
}

/// 256 values: 128 bytes of low nibbles, 64 bytes of high bit pairs, 16 signed scales, `d`.
/// Each 128-value half reads 64 low-nibble bytes and 32 high-pair bytes; value `l + 32 k` of
/// the half takes pair `k` of byte `l`. `y = (d * scale[i / 16]) * (q - 32)`.
fn q6_k(b: &[u8], y: &mut [f32]) {
    let d = half_at(b, 208);
    let (ql_all, qh_all, sc) = (&b[0..128], &b[128..192], &b[192..208]);
    for half in 0..2 {
        let ql = &ql_all[half * 64..half * 64 + 64];
        let qh = &qh_all[half * 32..half * 32 + 32];
        let out = &mut y[half * 128..half * 128 + 128];
        let scales = &sc[half * 8..half * 8 + 8];
        for l in 0..32 {
            let h = qh[l];
            let q = [
                (ql[l] & 0x0f) | ((h & 3) << 4),
                (ql[l + 32] & 0x0f) | (((h >> 2) & 3) << 4),
                (ql[l] >> 4) | (((h >> 4) & 3) << 4),
                (ql[l + 32] >> 4) | (((h >> 6) & 3) << 4),
            ];
            for (k, &qk) in q.iter().enumerate() {
                let i = l + 32 * k;
                let scale = d * f32::from(scales[i / 16] as i8);
                out[i] = scale * f32::from(qk as i8 - 32);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE_HALF: [u8; 2] = 0x3800u16.to_le_bytes(); // 0.5 in f16
    const MINUS_TWO: [u8; 2] = 0xc000u16.to_le_bytes(); // -2.0
    const QUARTER: [u8; 2] = 0x3400u16.to_le_bytes(); // 0.25

    fn run(ty: GgmlType, block: &[u8]) -> Vec<f32> {
        let mut y = vec![f32::NAN; ty.block_elems() * block.len() / ty.block_bytes()];
        dequantize(ty, block, &mut y).unwrap();
        y
    }

    #[test]
    fn half_precision_widens_exactly() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x03ff), 1023.0 * 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x0400), 2f32.powi(-14));
        assert_eq!(f16_to_f32(0x8000).to_bits(), (-0.0f32).to_bits());
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
        assert_eq!(f16_to_f32(0xfc00), f32::NEG_INFINITY);
        assert!(f16_to_f32(0x7e00).is_nan());
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
        // Every half value round-trips through f64 arithmetic on its fields.
        for bits in 0..=u16::MAX {
            let (s, e, m) = (bits >> 15, (bits >> 10) & 31, bits & 1023);
            if e == 31 {
                continue;
            }
            let mag = if e == 0 {
                f64::from(m) * 2f64.powi(-24)
            } else {
                (1.0 + f64::from(m) / 1024.0) * 2f64.powi(i32::from(e) - 15)
            };
            let want = if s == 1 { -mag } else { mag };
            assert_eq!(f64::from(f16_to_f32(bits)), want, "{bits:#06x}");
        }
    }

    #[test]
    fn plain_float_types() {
        let f32s: Vec<u8> = [1.5f32, -0.0, 7.25].iter().flat_map(|v| v.to_le_bytes()).collect();
        let y = run(GgmlType::F32, &f32s);
        assert_eq!(y[0], 1.5);
        assert_eq!(y[1].to_bits(), (-0.0f32).to_bits());
        assert_eq!(y[2], 7.25);
        let f16s = [0x3c00u16, 0xc000, 0x3400].map(u16::to_le_bytes).concat();
        assert_eq!(run(GgmlType::F16, &f16s), [1.0, -2.0, 0.25]);
        // bf16 is the top half of an f32.
        let bf16s = [0x3f80u16, 0xc0a0, 0x3e80].map(u16::to_le_bytes).concat();
        assert_eq!(run(GgmlType::BF16, &bf16s), [1.0, -5.0, 0.25]);
    }

    #[test]
    fn q8_0_is_scale_times_signed_byte() {
        let mut b = ONE_HALF.to_vec();
        b.extend((0..32).map(|i| (i as i8 * 4 - 64) as u8));
        let y = run(GgmlType::Q8_0, &b);
        let want: Vec<f32> = (0..32).map(|i| (i as f32 * 4.0 - 64.0) * 0.5).collect();
        assert_eq!(y, want);
    }

    #[test]
    fn q4_0_centres_nibbles_on_eight() {
        let mut b = MINUS_TWO.to_vec();
        // Byte j: low nibble j, high nibble 15 - j.
        b.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        let y = run(GgmlType::Q4_0, &b);
        for j in 0..16 {
            assert_eq!(y[j], -2.0 * (j as f32 - 8.0), "low {j}");
            assert_eq!(y[j + 16], -2.0 * (7.0 - j as f32), "high {j}");
        }
    }

    #[test]
    fn q4_1_adds_the_minimum() {
        let mut b = QUARTER.to_vec();
        b.extend(MINUS_TWO);
        b.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        let y = run(GgmlType::Q4_1, &b);
        for j in 0..16 {
            assert_eq!(y[j], 0.25 * j as f32 - 2.0);
            assert_eq!(y[j + 16], 0.25 * (15 - j) as f32 - 2.0);
        }
    }

    /// Packs Q4_K's eight (scale, min) pairs into its 12 bytes.
    fn pack_k_scales(sc: [u8; 8], m: [u8; 8]) -> [u8; 12] {
        let mut s = [0u8; 12];
        for j in 0..4 {
            s[j] = (sc[j] & 63) | ((sc[j + 4] >> 4) << 6);
            s[j + 4] = (m[j] & 63) | ((m[j + 4] >> 4) << 6);
            s[j + 8] = (sc[j + 4] & 15) | ((m[j + 4] & 15) << 4);
        }
        s
    }

    #[test]
    fn q4_k_scale_packing_round_trips() {
        let sc = [0, 1, 17, 63, 5, 33, 48, 63];
        let m = [63, 2, 40, 7, 62, 16, 0, 31];
        let s = pack_k_scales(sc, m);
        for j in 0..8 {
            assert_eq!(k_scale_min(&s, j), (sc[j], m[j]), "sub-block {j}");
        }
    }

    #[test]
    fn q4_k_applies_each_sub_blocks_scale_and_min() {
        let sc = [1, 2, 3, 4, 40, 50, 60, 63];
        let m = [0, 1, 2, 3, 33, 44, 55, 62];
        let mut b = ONE_HALF.to_vec(); // d
        b.extend(QUARTER); // dmin
        b.extend(pack_k_scales(sc, m));
        // Chunk c, byte l: low nibble (l + c) % 16, high nibble (3 * l + c) % 16.
        for c in 0..4 {
            b.extend((0..32).map(|l| (((l + c) % 16) | (((3 * l + c) % 16) << 4)) as u8));
        }
        assert_eq!(b.len(), 144);
        let y = run(GgmlType::Q4_K, &b);
        for c in 0..4 {
            for l in 0..32 {
                let (lo, hi) = (((l + c) % 16) as f32, ((3 * l + c) % 16) as f32);
                let (s1, m1) = (f32::from(sc[2 * c]), f32::from(m[2 * c]));
                let (s2, m2) = (f32::from(sc[2 * c + 1]), f32::from(m[2 * c + 1]));
                assert_eq!(y[64 * c + l], 0.5 * s1 * lo - 0.25 * m1, "chunk {c} low {l}");
                assert_eq!(y[64 * c + 32 + l], 0.5 * s2 * hi - 0.25 * m2, "chunk {c} high {l}");
            }
        }
    }

    #[test]
    fn q6_k_assembles_six_bit_values() {
        // Value i of the super-block is q(i) = (5 * i + 3) % 64, scale of group g is g - 8.
        let q = |i: usize| ((5 * i + 3) % 64) as u8;
        let mut ql = [0u8; 128];
        let mut qh = [0u8; 64];
        for half in 0..2 {
            for l in 0..32 {
                for k in 0..4 {
                    let v = q(half * 128 + l + 32 * k);
                    let byte = half * 64 + l + if k % 2 == 1 { 32 } else { 0 };
                    ql[byte] |= (v & 15) << if k >= 2 { 4 } else { 0 };
                    qh[half * 32 + l] |= (v >> 4) << (2 * k);
                }
            }
        }
        let mut b = ql.to_vec();
        b.extend(qh);
        b.extend((0..16).map(|g| (g as i8 - 8) as u8));
        b.extend(MINUS_TWO);
        assert_eq!(b.len(), 210);
        let y = run(GgmlType::Q6_K, &b);
        for (i, &v) in y.iter().enumerate() {
            let scale = (i / 16) as f32 - 8.0;
            assert_eq!(v, -2.0 * scale * (f32::from(q(i)) - 32.0), "value {i}");
        }
    }

    #[test]
    fn many_blocks_split_across_tasks_keep_their_order() {
        let blocks = BLOCKS_PER_TASK * 2 + 3;
        let mut src = Vec::new();
        for i in 0..blocks {
            src.extend(0x3c00u16.to_le_bytes());
            src.extend((0..32).map(|j| ((i + j) % 100) as u8));
        }
        let mut y = vec![0.0; blocks * 32];
        dequantize(GgmlType::Q8_0, &src, &mut y).unwrap();
        for i in [0, BLOCKS_PER_TASK - 1, BLOCKS_PER_TASK, blocks - 1] {
            for j in 0..32 {
                assert_eq!(y[i * 32 + j], ((i + j) % 100) as f32);
            }
        }
    }

    #[test]
    fn wrong_sizes_are_reported() {
        let mut y = vec![0.0; 64];
        let e = dequantize(GgmlType::Q4_0, &[0; 35], &mut y).unwrap_err();
        assert_eq!(e, SizeMismatch { expected_bytes: 36, found_bytes: 35 });
        let mut y = vec![0.0; 33];
        assert!(dequantize(GgmlType::Q4_0, &[0; 36], &mut y).is_err());
    }
}
