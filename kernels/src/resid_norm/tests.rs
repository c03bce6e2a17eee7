use super::*;

fn row(width: usize, seed: u32) -> Vec<f32> {
    (0..width).map(|i| ((i as f32 * 0.37 + seed as f32 * 1.3).sin() * 3.0) - 0.2).collect()
}

#[test]
fn every_width_is_covered_by_whole_warps_of_at_most_sixteen_elements() {
    for width in 1..=MAX_WIDTH {
        let s = NormShape { width, bf16: false };
        let (t, e) = (s.threads(), s.per_thread());
        assert!(t.is_multiple_of(32) && (32..=1024).contains(&t), "{width}: {t} threads");
        assert!(t * e >= width && e <= MAX_PER_THREAD, "{width}: {t} × {e}");
        // No thread idles through a whole pass: the last pass reaches thread 0.
        assert!(t * (e - 1) < width, "{width}: {t} × {e}");
    }
    assert!(NormShape { width: MAX_WIDTH + 1, bf16: true }.check().is_err());
    assert!(NormShape { width: 0, bf16: true }.check().is_err());
}

#[test]
fn the_butterfly_sums_its_lanes() {
    let lanes: [f32; 32] = std::array::from_fn(|i| i as f32 * 0.5 - 3.0);
    let want: f32 = lanes.iter().sum();
    assert!((butterfly(lanes) - want).abs() < 1e-4, "{} vs {want}", butterfly(lanes));
    let mut one = [0f32; 32];
    one[17] = 2.5;
    assert_eq!(butterfly(one), 2.5);
}

#[test]
fn the_reference_adds_and_normalises_as_the_closed_forms_say() {
    for width in [1usize, 31, 96, 1024, 1000, 2560] {
        let shape = NormShape { width, bf16: false };
        let (x, a) = (row(width, 1), row(width, 2));
        let w: Vec<f32> = (0..width).map(|i| 0.5 + (i % 7) as f32 * 0.1).collect();
        let eps = 1e-6f32;
        let (s, n) = reference(shape, &x, Some(&a), &w, eps);
        // Closed forms in float64.
        let s64: Vec<f64> = x.iter().zip(&a).map(|(x, a)| *x as f64 + *a as f64).collect();
        let ms = s64.iter().map(|v| v * v).sum::<f64>() / width as f64;
        for e in 0..width {
            assert!((s[e] as f64 - s64[e]).abs() <= 1e-6 * s64[e].abs().max(1.0), "s[{e}]");
            let want = w[e] as f64 * s64[e] / (ms + eps as f64).sqrt();
            assert!(
                (n[e] as f64 - want).abs() < 2e-5 * want.abs().max(1.0),
                "n[{e}] width {width}"
            );
        }
        // Without an addend the row is normed as it is.
        let (s2, n2) = reference(shape, &x, None, &w, eps);
        assert_eq!(s2, x);
        let ms = x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / width as f64;
        let want = w[0] as f64 * x[0] as f64 / (ms + eps as f64).sqrt();
        assert!((n2[0] as f64 - want).abs() < 2e-5 * want.abs().max(1.0));
    }
}

#[test]
fn in_bfloat16_the_reference_rounds_the_sum_the_normalised_row_and_the_product() {
    let width = 1024;
    let shape = NormShape { width, bf16: true };
    let k = |v: f32| element::to_kind(v, true);
    let x: Vec<f32> = row(width, 3).into_iter().map(k).collect();
    let a: Vec<f32> = row(width, 4).into_iter().map(k).collect();
    let w: Vec<f32> = (0..width).map(|i| k(0.9 + (i % 5) as f32 * 0.03)).collect();
    let (s, n) = reference(shape, &x, Some(&a), &w, 1e-6);
    // libtorch's formula with the mean of squares in float64: the normalised row rounded to
    // bfloat16 before the weight multiplies it, the product rounded again.
    let ms = s.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / width as f64;
    let inv = (1.0 / (ms + 1e-6).sqrt()) as f32;
    let mut same = 0;
    for e in 0..width {
        assert_eq!(s[e], k(x[e] + a[e]), "sum {e}: one rounding of the float32 sum");
        same += usize::from(n[e].to_bits() == k(w[e] * k(s[e] * inv)).to_bits());
    }
    // Only the float32 sum's order can move a rounding, rarely.
    assert!(same * 100 >= width * 99, "{same} of {width} equal to the closed form");
    // The float32 reference without the intermediate roundings differs somewhere.
    let (_, plain) = reference(NormShape { bf16: false, ..shape }, &s, None, &w, 1e-6);
    assert!(plain.iter().zip(&n).any(|(p, n)| p != n), "rounding had no effect");
    let worst =
        plain.iter().zip(&n).map(|(p, n)| (p - n).abs() / p.abs().max(1e-3)).fold(0f32, f32::max);
    assert!(worst < 1e-2, "bfloat16 result {worst} away (relative) from float32");
}

fn good() -> (NormShape, NormArgs) {
    let shape = NormShape { width: 1024, bf16: true };
    let args = NormArgs {
        x: 0x1000,
        x_row: 1024,
        a: 0x2000,
        a_row: 1024,
        weight: 0x3000,
        eps: 1e-6,
        rows: 512,
        sum_out: 0x4000,
        normed: 0x5000,
    };
    (shape, args)
}

#[test]
fn bad_shapes_and_arguments_are_rejected_before_the_driver_is_touched() {
    let (shape, args) = good();
    validate(shape, &args).unwrap();
    validate(shape, &NormArgs { a: 0, a_row: 0, sum_out: 0, ..args }).unwrap();
    validate(shape, &NormArgs { x_row: 3072, ..args }).unwrap();
    let bad_args = [
        NormArgs { rows: 0, ..args },
        NormArgs { x: 0, ..args },
        NormArgs { weight: 0, ..args },
        NormArgs { normed: 0, ..args },
        NormArgs { sum_out: 0, ..args },
        NormArgs { x: 0x1001, ..args },
        NormArgs { x_row: 1000, ..args },
        NormArgs { a_row: 1, ..args },
        NormArgs { eps: f32::INFINITY, ..args },
        NormArgs { eps: -1.0, ..args },
    ];
    for (i, a) in bad_args.iter().enumerate() {
        let e = validate(shape, a).expect_err(&format!("case {i} accepted"));
        assert!(matches!(e, NormError::BadArgument(_)), "case {i}: {e}");
    }
    let wide = NormShape { width: MAX_WIDTH + 1, ..shape };
    assert!(validate(wide, &args).is_err());
    assert!(compile_ptx(wide).is_err());
}

#[test]
fn the_kernel_compiles_with_nvrtc_for_the_model_widths() {
    // SAFETY: only tries to dlopen libnvrtc.
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        eprintln!("skipping: libnvrtc not found (set LD_LIBRARY_PATH to CUDA 13's lib dir)");
        return;
    }
    // Qwen3 0.6B / 4B / 8B / 32B, Llama 70B, the builtin ladder, odd widths, the largest.
    for width in [1024, 2560, 4096, 5120, 8192, 128, 256, 33, 1000, MAX_WIDTH] {
        for bf16 in [false, true] {
            let shape = NormShape { width, bf16 };
            let ptx = compile_ptx(shape).unwrap_or_else(|e| panic!("{shape:?}: {e}"));
            assert!(ptx.to_src().contains(&format!(".entry {KERNEL_NAME}")), "{shape:?}");
        }
    }
}
