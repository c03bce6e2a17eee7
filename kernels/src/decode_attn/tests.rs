use super::*;

/// A small deterministic generator (xorshift64*), enough for test data.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in [-1, 1).
    fn f32(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.f32() * scale).collect()
    }
}

/// Direct attention in float64: softmax over the attended slots, no chunks.
fn direct(a: &HostAttn) -> Vec<f32> {
    let AttnShape { head_dim: hd, group, .. } = a.shape;
    let heads = a.kv_heads * group;
    let mut out = vec![0f32; a.batch * heads * hd];
    for b in 0..a.batch {
        for qh in 0..heads {
            let h = qh / group;
            let row = (b * heads + qh) * hd;
            let q = &a.q[row..row + hd];
            let base = (b * a.kv_heads + h) * a.capacity * hd;
            let attended: Vec<usize> = (0..a.view)
                .filter(|&j| {
                    (j as i64) <= a.slot && (j as i64 == a.slot || a.real[b * a.real_stride + j])
                })
                .collect();
            let scores: Vec<f64> = attended
                .iter()
                .map(|&j| {
                    let k = &a.keys[base + j * hd..base + (j + 1) * hd];
                    let dot: f64 = q.iter().zip(k).map(|(x, y)| *x as f64 * *y as f64).sum();
                    dot * a.scale as f64
                })
                .collect();
            let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
            let total: f64 = weights.iter().sum();
            for e in 0..hd {
                let v: f64 = attended
                    .iter()
                    .zip(&weights)
                    .map(|(&j, w)| w * a.values[base + j * hd + e] as f64)
                    .sum();
                out[row + e] = if total > 0.0 { (v / total) as f32 } else { 0.0 };
            }
        }
    }
    out
}

struct Case {
    shape: AttnShape,
    batch: usize,
    kv_heads: usize,
    capacity: usize,
    view: usize,
    slot: i64,
}

fn run_case(c: &Case, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let mut g = Gen(seed | 1);
    let hd = c.shape.head_dim;
    let heads = c.kv_heads * c.shape.group;
    let q = g.vec(c.batch * heads * hd, 2.0);
    let keys = g.vec(c.batch * c.kv_heads * c.capacity * hd, 2.0);
    let values = g.vec(c.batch * c.kv_heads * c.capacity * hd, 1.0);
    // Row b: its first `b` slots are left padding, then a few scattered pads, and the new token's
    // own slot is never marked real (the step writes it before the mask says so).
    let stride = c.capacity + 3;
    let real: Vec<bool> = (0..c.batch * stride)
        .map(|i| {
            let (b, j) = (i / stride, i % stride);
            j >= b && j % 7 != 3 && j as i64 != c.slot
        })
        .collect();
    let a = HostAttn {
        shape: c.shape,
        q: &q,
        keys: &keys,
        values: &values,
        real: &real,
        slot: c.slot,
        batch: c.batch,
        kv_heads: c.kv_heads,
        capacity: c.capacity,
        real_stride: stride,
        view: c.view,
        scale: 1.0 / (hd as f32).sqrt(),
    };
    (reference(&a).unwrap(), direct(&a))
}

fn max_diff(x: &[f32], y: &[f32]) -> f32 {
    assert_eq!(x.len(), y.len());
    x.iter().zip(y).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max)
}

#[test]
fn the_reference_equals_direct_attention_over_the_attended_slots() {
    let shape = |head_dim, group| AttnShape { head_dim, group, bf16: false };
    let cases = [
        // One chunk, GQA pairs (the Qwen3-0.6B grouping), slot inside the first chunk.
        Case { shape: shape(128, 2), batch: 3, kv_heads: 2, capacity: 64, view: 64, slot: 40 },
        // Several chunks, the slot in the middle one: later chunks are empty.
        Case { shape: shape(64, 1), batch: 4, kv_heads: 3, capacity: 256, view: 256, slot: 150 },
        // A head size that is not a multiple of 32, group 8, a window that is not a multiple
        // of the chunk.
        Case { shape: shape(80, 8), batch: 2, kv_heads: 1, capacity: 200, view: 130, slot: 129 },
        // The first slot: only the new token is attended.
        Case { shape: shape(16, 4), batch: 2, kv_heads: 2, capacity: 128, view: 128, slot: 0 },
        // Chunk boundaries: the slot is the first and the last slot of a chunk.
        Case { shape: shape(32, 2), batch: 2, kv_heads: 1, capacity: 192, view: 192, slot: 64 },
        Case { shape: shape(32, 2), batch: 2, kv_heads: 1, capacity: 192, view: 192, slot: 127 },
        Case { shape: shape(256, 3), batch: 1, kv_heads: 2, capacity: 96, view: 96, slot: 95 },
        // A slot past the window (never the step's case): only the window's real slots count.
        Case { shape: shape(32, 1), batch: 2, kv_heads: 1, capacity: 200, view: 100, slot: 150 },
    ];
    for (i, c) in cases.iter().enumerate() {
        let (got, want) = run_case(c, 17 + i as u64);
        let d = max_diff(&got, &want);
        assert!(d < 2e-6, "case {i}: max |reference − direct| = {d}");
        assert!(got.iter().all(|x| x.is_finite()), "case {i}: non-finite output");
    }
}

#[test]
fn every_row_sees_only_its_own_real_slots() {
    // Changing a key and value the row does not attend (a pad, or a slot after the new token)
    // changes nothing; changing an attended one changes the output.
    let c = Case {
        shape: AttnShape { head_dim: 32, group: 2, bf16: false },
        batch: 2,
        kv_heads: 1,
        capacity: 128,
        view: 128,
        slot: 100,
    };
    let mut g = Gen(99);
    let (hd, heads) = (32, 2);
    let q = g.vec(c.batch * heads * hd, 1.0);
    let keys = g.vec(c.batch * c.capacity * hd, 1.0);
    let values = g.vec(c.batch * c.capacity * hd, 1.0);
    let mut real = vec![true; c.batch * c.capacity];
    real[5] = false; // row 0, slot 5: a pad
    let attn = |keys: &[f32], values: &[f32]| {
        reference(&HostAttn {
            shape: c.shape,
            q: &q,
            keys,
            values,
            real: &real,
            slot: c.slot,
            batch: c.batch,
            kv_heads: c.kv_heads,
            capacity: c.capacity,
            real_stride: c.capacity,
            view: c.view,
            scale: 0.3,
        })
        .unwrap()
    };
    let base = attn(&keys, &values);
    for (slot, changes) in [(5usize, false), (101, false), (127, false), (6, true), (100, true)] {
        let (mut k, mut v) = (keys.clone(), values.clone());
        for e in 0..hd {
            k[slot * hd + e] += 3.0;
            v[slot * hd + e] -= 5.0;
        }
        let row0 = |o: &[f32]| o[..heads * hd].to_vec();
        let d = max_diff(&row0(&attn(&k, &v)), &row0(&base));
        assert_eq!(d > 0.0, changes, "slot {slot}: difference {d}");
    }
}

#[test]
fn the_layout_covers_the_head_with_bounded_registers_and_shared_memory() {
    let layout = |head_dim, group, bf16| Layout::of(AttnShape { head_dim, group, bf16 });
    // Qwen3-0.6B (128, 2 query heads per kv head): groups of 8 lanes, 16 elements (32 bytes of
    // bfloat16) each, 4 slots in flight per warp.
    assert_eq!(layout(128, 2, true), Layout { tpk: 8, e: 16, vec: true });
    assert_eq!(layout(128, 2, false), Layout { tpk: 8, e: 16, vec: true });
    assert_eq!(layout(128, 4, true), Layout { tpk: 16, e: 8, vec: true });
    assert_eq!(layout(128, 8, true), Layout { tpk: 32, e: 4, vec: false });
    assert_eq!(layout(128, 8, false), Layout { tpk: 32, e: 4, vec: true });
    assert_eq!(layout(64, 1, true), Layout { tpk: 4, e: 16, vec: true });
    assert_eq!(layout(80, 8, true), Layout { tpk: 32, e: 3, vec: false });
    assert_eq!(layout(16, 1, false), Layout { tpk: 1, e: 16, vec: true });
    for head_dim in 1..=MAX_HEAD_DIM {
        for group in 1..=MAX_GROUP {
            for bf16 in [false, true] {
                let shape = AttnShape { head_dim, group, bf16 };
                let l = Layout::of(shape);
                assert!(l.tpk.is_power_of_two() && l.tpk <= 32, "{shape:?}: {l:?}");
                assert_eq!(l.e, head_dim.div_ceil(l.tpk), "{shape:?}: {l:?}");
                assert!(l.e <= 16 && group * l.e <= 64, "{shape:?}: {l:?}");
                // Static shared memory: (m, l, acc) of every group and query head, under 48 KB.
                let bytes = l.groups() * group * (head_dim + 2) * 4;
                assert!(bytes <= 48 * 1024, "{shape:?}: {bytes} bytes of shared memory");
                if l.vec {
                    assert_eq!(l.tpk * l.e, head_dim);
                    assert_eq!(l.e as u64 * shape.element_bytes() % 16, 0);
                }
            }
        }
    }
}

#[test]
fn splits_cover_the_window() {
    assert_eq!(splits(1), 1);
    assert_eq!(splits(CHUNK), 1);
    assert_eq!(splits(CHUNK + 1), 2);
    assert_eq!(splits(128), 128 / CHUNK);
    assert_eq!(splits(2048), 2048 / CHUNK);
}

fn good() -> (AttnShape, AttnArgs) {
    let shape = AttnShape { head_dim: 128, group: 2, bf16: true };
    let args = AttnArgs {
        q: 0x1000,
        keys: 0x2000,
        values: 0x3000,
        real: 0x4001,
        slot: 0x5000,
        part_acc: 0x6000,
        part_ml: 0x7000,
        out: 0x8000,
        batch: 512,
        kv_heads: 8,
        capacity: 256,
        real_stride: 256,
        view: 128,
        scale: 0.088,
    };
    (shape, args)
}

#[test]
fn bad_shapes_and_arguments_are_rejected_before_the_driver_is_touched() {
    let (shape, args) = good();
    validate(shape, &args).unwrap();
    // One chunk needs no scratch buffers.
    validate(shape, &AttnArgs { view: 64, part_acc: 0, part_ml: 0, ..args }).unwrap();
    let bad_args = [
        AttnArgs { view: 0, ..args },
        AttnArgs { view: 257, ..args },
        AttnArgs { real_stride: 100, ..args },
        AttnArgs { batch: 0, ..args },
        AttnArgs { q: 0, ..args },
        AttnArgs { keys: 0x2001, ..args },
        AttnArgs { slot: 0x5004, ..args },
        AttnArgs { part_acc: 0, ..args },
        AttnArgs { part_ml: 0x7002, ..args },
        AttnArgs { scale: f32::NAN, ..args },
    ];
    for (i, a) in bad_args.iter().enumerate() {
        let e = validate(shape, a).expect_err(&format!("case {i} accepted"));
        assert!(matches!(e, AttnError::BadArgument(_)), "case {i}: {e}");
    }
    for s in [
        AttnShape { head_dim: 0, ..shape },
        AttnShape { head_dim: 512, ..shape },
        AttnShape { group: 0, ..shape },
        AttnShape { group: 16, ..shape },
    ] {
        assert!(validate(s, &args).is_err(), "{s:?} accepted");
        assert!(compile_ptx(s).is_err(), "{s:?} compiled");
    }
}

#[test]
fn the_source_states_the_shape_and_the_constants_of_this_module() {
    let src = source(AttnShape { head_dim: 96, group: 4, bf16: true });
    assert!(src.starts_with("#define WAX_HD 96\n#define WAX_GROUP 4\n#define WAX_BF16 1\n"));
    assert!(src.contains(&format!("#define WAX_CHUNK {CHUNK}\n")));
    assert!(src.contains(&format!("#define WAX_WARPS {WARPS}\n")));
    assert!(src.contains(ATTEND_NAME) && src.contains(MERGE_NAME));
}

fn nvrtc_present() -> bool {
    // SAFETY: only tries to dlopen libnvrtc.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

#[test]
fn the_kernels_compile_with_nvrtc_for_every_kind_and_the_shapes_of_the_model_families() {
    if !nvrtc_present() {
        eprintln!("skipping: libnvrtc not found (set LD_LIBRARY_PATH to CUDA 13's lib dir)");
        return;
    }
    for (head_dim, group) in [(128, 2), (128, 4), (128, 8), (64, 1), (80, 8), (256, 1), (16, 3)] {
        for bf16 in [false, true] {
            let shape = AttnShape { head_dim, group, bf16 };
            let ptx = compile_ptx(shape).unwrap_or_else(|e| panic!("{shape:?}: {e}"));
            let text = ptx.to_src();
            for name in [ATTEND_NAME, MERGE_NAME] {
                assert!(text.contains(&format!(".entry {name}")), "{shape:?}: no entry {name}");
            }
        }
    }
}
