//! MXFP4 expert weights (GPT-OSS checkpoints) dequantized at load, to what transformers'
//! `convert_moe_packed_tensors` produces.
//!
//! A checkpoint stores each expert matrix as `<name>_blocks` (uint8 `[E, R, G, 16]`: 32 FP4
//! e2m1 values per group, two per byte, the low nibble first) and `<name>_scales` (uint8
//! `[E, R, G]`: one E8M0 exponent per group of 32, biased by 127). Value `j` of group `g` of row
//! `r` is `FP4[nibble] · 2^(scale − 127)`, and the dequantized tensor is `[E, 32·G, R]`: the
//! rows of the stored matrix become columns, which is the `x @ W` layout of transformers'
//! `GptOssExperts` (`gate_up_proj` `[E, H, 2I]` from blocks `[E, 2I, H/32, 16]`, `down_proj`
//! `[E, I, H]` from `[E, H, I/32, 16]`).
//!
//! The arithmetic mirrors transformers': the FP4 value as float32, times `2^(scale − 127)` as
//! libtorch's `ldexp` computes it (a float32 power of two, so `scale = 255` gives infinity),
//! rounded once to the model's kind. Each product is exact in float32 (a 2-bit mantissa times a
//! power of two within float32's range), so the float32 result is unique and the bfloat16 one is
//! its round-to-nearest-even.

use tch::{Device, Kind, Tensor};

use super::error::ModelError;

/// The e2m1 values of the 16 nibbles (sign in bit 3).
pub const FP4_VALUES: [f32; 16] =
    [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0];

/// Bytes per group of 32 FP4 values.
pub const BLOCK_BYTES: i64 = 16;

/// Dequantizes `blocks` (uint8 `[E, R, G, 16]`) with `scales` (uint8 `[E, R, G]`) to
/// `[E, 32·G, R]` of `kind` on `device`, one expert at a time (a 20B model's expert matrix is
/// a few hundred megabytes of float32 while it is converted).
pub fn dequantize(
    blocks: &Tensor,
    scales: &Tensor,
    kind: Kind,
    device: Device,
) -> Result<Tensor, ModelError> {
    let (bs, ss) = (blocks.size(), scales.size());
    if blocks.kind() != Kind::Uint8
        || scales.kind() != Kind::Uint8
        || bs.len() != 4
        || bs[3] != BLOCK_BYTES
        || bs[..3] != ss[..]
    {
        return Err(ModelError::Input(format!(
            "mxfp4: blocks {:?} {bs:?} and scales {:?} {ss:?} must be uint8 [E, R, G, 16] and \
             [E, R, G]",
            blocks.kind(),
            scales.kind()
        )));
    }
    let lut = Tensor::from_slice(&FP4_VALUES).to_device(device);
    let experts: Vec<Tensor> = (0..bs[0])
        .map(|e| {
            let b = blocks.get(e).to_device(device);
            let s = scales.get(e).to_device(device);
            expert(&b, &s, &lut, kind)
        })
        .collect();
    Ok(Tensor::stack(&experts, 0))
}

/// One expert: blocks `[R, G, 16]`, scales `[R, G]` → `[32·G, R]`.
fn expert(blocks: &Tensor, scales: &Tensor, lut: &Tensor, kind: Kind) -> Tensor {
    let (r, g) = (blocks.size()[0], blocks.size()[1]);
    let low = blocks.bitwise_and(0x0F).to_kind(Kind::Int64);
    let high = blocks.bitwise_right_shift_tensor_scalar(4).to_kind(Kind::Int64);
    // Low nibble first: values `2j` and `2j + 1` of a group come from byte `j`.
    let values = Tensor::stack(
        &[lut.index_select(0, &low.reshape([-1])).view([r, g, 16]), {
            lut.index_select(0, &high.reshape([-1])).view([r, g, 16])
        }],
        -1,
    )
    .view([r, g, 2 * BLOCK_BYTES]);
    let exponent = (scales.to_kind(Kind::Int) - 127).unsqueeze(-1);
    values
        .ldexp(&exponent)
        .to_kind(kind)
        .view([r, g * 2 * BLOCK_BYTES])
        .transpose(0, 1)
        .contiguous()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The closed form in f64, element by element.
    fn naive(blocks: &[u8], scales: &[u8], (e, r, g): (usize, usize, usize)) -> Vec<f64> {
        let cols = g * 32;
        let mut out = vec![0.0; e * cols * r];
        for x in 0..e {
            for row in 0..r {
                for grp in 0..g {
                    let scale = 2f64.powi(i32::from(scales[(x * r + row) * g + grp]) - 127);
                    for j in 0..16 {
                        let byte = blocks[((x * r + row) * g + grp) * 16 + j];
                        for (k, nib) in [byte & 0x0F, byte >> 4].into_iter().enumerate() {
                            let col = grp * 32 + 2 * j + k;
                            out[(x * cols + col) * r + row] =
                                f64::from(FP4_VALUES[nib as usize]) * scale;
                        }
                    }
                }
            }
        }
        out
    }

    #[test]
    fn dequantization_is_the_closed_form_transposed() {
        let (e, r, g) = (2usize, 3usize, 2usize);
        let blocks: Vec<u8> = (0..e * r * g * 16).map(|i| (i * 37 + 11) as u8).collect();
        let scales: Vec<u8> = (0..e * r * g).map(|i| (100 + i * 7) as u8).collect();
        let bt = Tensor::from_slice(&blocks).view([e as i64, r as i64, g as i64, 16]);
        let st = Tensor::from_slice(&scales).view([e as i64, r as i64, g as i64]);
        let got = dequantize(&bt, &st, Kind::Float, Device::Cpu).unwrap();
        assert_eq!(got.size(), [e as i64, (g * 32) as i64, r as i64]);
        let got = Vec::<f32>::try_from(got.reshape([-1])).unwrap();
        for (a, b) in got.iter().zip(naive(&blocks, &scales, (e, r, g))) {
            assert_eq!(f64::from(*a), b);
        }
    }

    #[test]
    fn wrong_shapes_and_kinds_are_errors() {
        let b = Tensor::zeros([1, 2, 3, 16], (Kind::Uint8, Device::Cpu));
        let s = Tensor::zeros([1, 2, 3], (Kind::Uint8, Device::Cpu));
        assert!(dequantize(&b, &s, Kind::Float, Device::Cpu).is_ok());
        assert!(dequantize(&b, &s.narrow(2, 0, 2), Kind::Float, Device::Cpu).is_err());
        assert!(dequantize(&b.to_kind(Kind::Int8), &s, Kind::Float, Device::Cpu).is_err());
        assert!(dequantize(&b.narrow(3, 0, 8), &s, Kind::Float, Device::Cpu).is_err());
    }
}
