use super::*;

#[test]
fn rounding_to_bfloat16_is_round_to_nearest_even() {
    let step = 2f32.powi(-7); // bfloat16 spacing in [1, 2)
    let cases = [
        (1.0, 1.0),
        (1.0 + step / 2.0, 1.0),              // tie, even below
        (1.0 + 1.5 * step, 1.0 + 2.0 * step), // tie, even above
        (1.0 + 0.6 * step, 1.0 + step),       // nearest
        (-(1.0 + 0.4 * step), -1.0),          // sign kept
        (f32::MAX, f32::INFINITY),            // overflows like a cast
        (3.0e-39, f32::from_bits(3.0e-39f32.to_bits().wrapping_add(0x7fff) & 0xffff_0000)),
    ];
    for (x, want) in cases {
        assert_eq!(to_kind(x, true), want, "{x:e}");
        assert_eq!(to_kind(x, false), x);
    }
    assert!(to_kind(f32::NAN, true).is_nan());
}

#[test]
fn the_reference_rotates_pairs_and_normalises_as_the_closed_forms_say() {
    let (hd, rot) = (12usize, 8usize);
    let shape = PrepShape { head_dim: hd, rot, norm: true, bf16: false };
    let x: Vec<f32> = (0..hd).map(|i| (i as f32 * 0.7 - 3.0).sin() * 2.0).collect();
    let w: Vec<f32> = (0..hd).map(|i| 0.5 + i as f32 * 0.1).collect();
    let angles: Vec<f64> = (0..rot / 2).map(|i| 0.3 + i as f64).collect();
    // Rotation's tables: cos twice, and the sine negated in the first half.
    let cos: Vec<f32> = (0..rot).map(|e| angles[e % (rot / 2)].cos() as f32).collect();
    let sin: Vec<f32> = (0..rot)
        .map(|e| {
            let s = angles[e % (rot / 2)].sin() as f32;
            if e < rot / 2 { -s } else { s }
        })
        .collect();
    let eps = 1e-6f32;
    let got = reference_head(shape, &x, Some(&w), eps, &cos, &sin);
    // Closed forms in float64: y = w · x / rms(x); pairs (i, i + rot/2) rotated by angle i.
    let ms: f64 = x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / hd as f64;
    let y: Vec<f64> =
        x.iter().zip(&w).map(|(v, w)| *w as f64 * *v as f64 / (ms + eps as f64).sqrt()).collect();
    let half = rot / 2;
    for i in 0..half {
        let (c, s) = (angles[i].cos(), angles[i].sin());
        let a = y[i] * c - y[i + half] * s;
        let b = y[i] * s + y[i + half] * c;
        assert!((got[i] as f64 - a).abs() < 1e-5, "dim {i}: {} vs {a}", got[i]);
        assert!(
            (got[i + half] as f64 - b).abs() < 1e-5,
            "dim {}: {} vs {b}",
            i + half,
            got[i + half]
        );
    }
    for e in rot..hd {
        assert!((got[e] as f64 - y[e]).abs() < 1e-5, "pass-through dim {e}");
    }
    // Without the norm the input is rotated as it is.
    let plain = reference_head(PrepShape { norm: false, ..shape }, &x, None, eps, &cos, &sin);
    assert!(
        (plain[0] as f64 - (x[0] as f64 * angles[0].cos() - x[half] as f64 * angles[0].sin()))
            .abs()
            < 1e-5
    );
    assert_eq!(&plain[rot..], &x[rot..]);
}

fn good() -> (PrepShape, PrepArgs) {
    let shape = PrepShape { head_dim: 128, rot: 128, norm: true, bf16: true };
    let s = |ptr| Strided { ptr, row: 4096, head: 128 };
    let args = PrepArgs {
        q: s(0x1000),
        k: s(0x1000 + 2 * 2048),
        v: s(0x1000 + 2 * 3072),
        q_weight: 0x2000,
        k_weight: 0x2100,
        eps: 1e-6,
        cos: 0x3000,
        sin: 0x4000,
        slot: 0x5000,
        batch: 512,
        heads: 16,
        kv_heads: 8,
        capacity: 256,
        q_out: 0x6000,
        keys: 0x7000,
        values: 0x8000,
    };
    (shape, args)
}

#[test]
fn bad_shapes_and_arguments_are_rejected_before_the_driver_is_touched() {
    let (shape, args) = good();
    validate(shape, &args).unwrap();
    validate(PrepShape { norm: false, ..shape }, &PrepArgs { q_weight: 0, k_weight: 0, ..args })
        .unwrap();
    let bad_args = [
        PrepArgs { batch: 0, ..args },
        PrepArgs { capacity: 0, ..args },
        PrepArgs { q_weight: 0, ..args },
        PrepArgs { slot: 0x5004, ..args },
        PrepArgs { keys: 0x7001, ..args },
        PrepArgs { eps: f32::NAN, ..args },
        PrepArgs { q: Strided { row: -1, ..args.q }, ..args },
    ];
    for (i, a) in bad_args.iter().enumerate() {
        let e = validate(shape, a).expect_err(&format!("case {i} accepted"));
        assert!(matches!(e, PrepError::BadArgument(_)), "case {i}: {e}");
    }
    for s in [
        PrepShape { head_dim: 0, ..shape },
        PrepShape { head_dim: 300, rot: 300, ..shape },
        PrepShape { rot: 7, ..shape },
        PrepShape { rot: 130, ..shape },
    ] {
        assert!(validate(s, &args).is_err(), "{s:?} accepted");
        assert!(compile_ptx(s).is_err(), "{s:?} compiled");
    }
}

#[test]
fn the_kernel_compiles_with_nvrtc_for_the_model_families() {
    // SAFETY: only tries to dlopen libnvrtc.
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        eprintln!("skipping: libnvrtc not found (set LD_LIBRARY_PATH to CUDA 13's lib dir)");
        return;
    }
    // Qwen3 (norm), Llama (none), GPT-NeoX (partial rotary), an odd head size.
    for (head_dim, rot, norm) in
        [(128, 128, true), (128, 128, false), (128, 32, false), (80, 20, true)]
    {
        for bf16 in [false, true] {
            let shape = PrepShape { head_dim, rot, norm, bf16 };
            let ptx = compile_ptx(shape).unwrap_or_else(|e| panic!("{shape:?}: {e}"));
            assert!(ptx.to_src().contains(&format!(".entry {KERNEL_NAME}")), "{shape:?}");
        }
    }
}
