//! [`super::import`] on small Llama GGUF files written by [`super::testing`]: the snapshot's
//! files, the loaders reading it, the `--out` policy, and the refusals.

use std::path::{Path, PathBuf};

use super::testing::{GgufBuilder, RawTensor, tensor_f32};
use super::types::GgmlType;
use super::value::Value;
use super::{GgufError, MARKER, import};

const HIDDEN: u64 = 256;
const HEADS: u64 = 4;
const KV_HEADS: u64 = 2;
const HEAD_DIM: u64 = HIDDEN / HEADS;
const FFN: u64 = 512;
const LAYERS: u64 = 2;

/// A deterministic byte stream.
fn bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Valid blocks of `ty` with finite, small scales.
fn blocks(ty: GgmlType, dims: &[u64], seed: u64) -> Vec<u8> {
    let n: u64 = dims.iter().product();
    let (be, bb) = (ty.block_elems() as u64, ty.block_bytes());
    let mut data = bytes(seed, (n / be) as usize * bb);
    let small = 0x2000u16.to_le_bytes(); // 2^-7
    for b in data.chunks_mut(bb) {
        match ty {
            GgmlType::Q8_0 | GgmlType::Q4_0 => b[..2].copy_from_slice(&small),
            GgmlType::Q4_1 | GgmlType::Q4_K => {
                b[..2].copy_from_slice(&small);
                b[2..4].copy_from_slice(&small);
            }
            GgmlType::Q6_K => b[208..210].copy_from_slice(&small),
            GgmlType::F16 | GgmlType::BF16 => b.copy_from_slice(&small),
            GgmlType::F32 => b.copy_from_slice(&0.01f32.to_le_bytes()),
        }
    }
    data
}

fn quantized(name: &str, dims: &[u64], ty: GgmlType, seed: u64) -> RawTensor {
    RawTensor {
        name: name.into(),
        dims: dims.to_vec(),
        type_id: ty.id(),
        data: blocks(ty, dims, seed),
    }
}

/// A byte-level vocabulary: three control tokens, the 256 byte characters, two merges.
fn vocab() -> (Vec<String>, Vec<i32>, Vec<String>) {
    let alphabet = super::tokenizer::bytes_to_unicode();
    let mut tokens: Vec<String> =
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>"].map(String::from).to_vec();
    let mut types = vec![3, 3, 3];
    for c in alphabet {
        tokens.push(c.to_string());
        types.push(1);
    }
    tokens.extend(["he".to_string(), "ll".to_string()]);
    types.extend([1, 1]);
    (tokens, types, vec!["h e".into(), "l l".into()])
}

struct Options {
    tied: bool,
    arch: &'static str,
    pre: &'static str,
    /// `llama.feed_forward_length` as written (the tensors are always [`FFN`] wide).
    ffn_meta: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options { tied: true, arch: "llama", pre: "smollm", ffn_meta: FFN }
    }
}

/// A two-layer Llama using every supported tensor type.
fn llama_file(o: &Options) -> GgufBuilder {
    let (tokens, types, merges) = vocab();
    let vocab_size = tokens.len() as u64;
    let mut b = GgufBuilder::new();
    let s = |v: &str| Value::String(v.into());
    b.kv("general.architecture", s(o.arch));
    b.kv("general.name", s("tiny"));
    b.kv("llama.block_count", Value::U32(LAYERS as u32));
    b.kv("llama.context_length", Value::U32(512));
    b.kv("llama.embedding_length", Value::U32(HIDDEN as u32));
    b.kv("llama.feed_forward_length", Value::U32(o.ffn_meta as u32));
    b.kv("llama.attention.head_count", Value::U32(HEADS as u32));
    b.kv("llama.attention.head_count_kv", Value::U32(KV_HEADS as u32));
    b.kv("llama.rope.freq_base", Value::F32(10_000.0));
    b.kv("llama.rope.dimension_count", Value::U32(HEAD_DIM as u32));
    b.kv("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-6));
    b.kv("tokenizer.ggml.model", s("gpt2"));
    b.kv("tokenizer.ggml.pre", s(o.pre));
    b.kv("tokenizer.ggml.tokens", Value::Array(8, tokens.iter().map(|t| s(t)).collect()));
    b.kv(
        "tokenizer.ggml.token_type",
        Value::Array(5, types.iter().map(|&t| Value::I32(t)).collect()),
    );
    b.kv("tokenizer.ggml.merges", Value::Array(8, merges.iter().map(|m| s(m)).collect()));
    b.kv("tokenizer.ggml.bos_token_id", Value::U32(1));
    b.kv("tokenizer.ggml.eos_token_id", Value::U32(2));
    b.kv("tokenizer.ggml.padding_token_id", Value::U32(2));
    b.kv("tokenizer.ggml.add_bos_token", Value::Bool(false));
    b.kv(
        "tokenizer.chat_template",
        s("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"),
    );
    b.tensor(quantized("token_embd.weight", &[HIDDEN, vocab_size], GgmlType::Q8_0, 1));
    let norm = vec![1.0f32; HIDDEN as usize];
    for l in 0..LAYERS {
        let seed = 100 * (l + 1);
        b.tensor(tensor_f32(&format!("blk.{l}.attn_norm.weight"), &[HIDDEN], &norm));
        b.tensor(tensor_f32(&format!("blk.{l}.ffn_norm.weight"), &[HIDDEN], &norm));
        let q = format!("blk.{l}.attn_q.weight");
        b.tensor(quantized(&q, &[HIDDEN, HEADS * HEAD_DIM], GgmlType::Q4_K, seed));
        let k = format!("blk.{l}.attn_k.weight");
        b.tensor(quantized(&k, &[HIDDEN, KV_HEADS * HEAD_DIM], GgmlType::Q4_0, seed + 1));
        let v = format!("blk.{l}.attn_v.weight");
        b.tensor(quantized(&v, &[HIDDEN, KV_HEADS * HEAD_DIM], GgmlType::Q4_1, seed + 2));
        let o_ = format!("blk.{l}.attn_output.weight");
        b.tensor(quantized(&o_, &[HEADS * HEAD_DIM, HIDDEN], GgmlType::F16, seed + 3));
        let g = format!("blk.{l}.ffn_gate.weight");
        b.tensor(quantized(&g, &[HIDDEN, FFN], GgmlType::BF16, seed + 4));
        let u = format!("blk.{l}.ffn_up.weight");
        b.tensor(quantized(&u, &[HIDDEN, FFN], GgmlType::Q8_0, seed + 5));
        let d = format!("blk.{l}.ffn_down.weight");
        b.tensor(quantized(&d, &[FFN, HIDDEN], GgmlType::Q6_K, seed + 6));
    }
    b.tensor(tensor_f32("output_norm.weight", &[HIDDEN], &norm));
    if !o.tied {
        b.tensor(quantized("output.weight", &[HIDDEN, vocab_size], GgmlType::Q6_K, 7));
    }
    b
}

fn write(dir: &Path, name: &str, b: &GgufBuilder) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, b.build()).unwrap();
    p
}

fn run(gguf: &Path, out: &Path) -> Result<super::ImportSummary, GgufError> {
    let mut calls = 0;
    let r = import(gguf, out, &mut |p| {
        calls += 1;
        assert_eq!(p.done, calls);
    });
    if let Ok(s) = &r {
        assert_eq!(calls, s.tensors);
    }
    r
}

#[test]
fn a_tiny_llama_imports_and_loads() {
    let _guard = tch::no_grad_guard();
    let tmp = tempfile::tempdir().unwrap();
    for tied in [true, false] {
        let gguf =
            write(tmp.path(), "m.gguf", &llama_file(&Options { tied, ..Default::default() }));
        let out = tmp.path().join(format!("snap-{tied}"));
        let s = run(&gguf, &out).unwrap();
        assert_eq!(s.tensors, 1 + 9 * LAYERS as usize + 1 + usize::from(!tied));
        assert_eq!(s.tied_embeddings, tied);
        assert!(!s.replaced_previous);
        for f in [
            "config.json",
            "generation_config.json",
            "model.safetensors",
            "tokenizer.json",
            "tokenizer_config.json",
            MARKER,
        ] {
            assert!(out.join(f).is_file(), "{f} missing");
        }
        let cfg: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap();
        assert_eq!(cfg["tie_word_embeddings"], tied);
        assert_eq!(cfg["rms_norm_eps"], 1e-6);
        let model = crate::model::Model::load(&out, tch::Device::Cpu, tch::Kind::Float).unwrap();
        assert_eq!(model.config().num_kv_heads, KV_HEADS as i64);
        let tok = crate::tokenizer::Tokenizer::load(&out).unwrap();
        assert_eq!(tok.encode("hello", false).unwrap().len(), 3); // he, ll, o
        assert_eq!(tok.encode("<|im_start|>", false).unwrap(), [1]);
        assert_eq!(tok.eos_ids(), [2]);
        assert!(tok.chat_template().is_some());
    }
}

#[test]
fn q_and_k_rows_are_restored_to_hugging_face_order() {
    let tmp = tempfile::tempdir().unwrap();
    let gguf = write(tmp.path(), "m.gguf", &llama_file(&Options::default()));
    let out = tmp.path().join("snap");
    run(&gguf, &out).unwrap();
    let f = super::GgufFile::open(&gguf).unwrap();
    let st_bytes = std::fs::read(out.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&st_bytes).unwrap();
    let floats = |b: &[u8]| -> Vec<f32> {
        b.chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
    };
    for (gguf_name, hf, heads) in [
        ("blk.1.attn_q.weight", "model.layers.1.self_attn.q_proj.weight", HEADS),
        ("blk.0.attn_k.weight", "model.layers.0.self_attn.k_proj.weight", KV_HEADS),
    ] {
        let info = f.tensor(gguf_name).unwrap();
        let mut stored = vec![0.0; info.n_elements as usize];
        super::dequant::dequantize(info.ggml_type().unwrap(), f.tensor_bytes(info), &mut stored)
            .unwrap();
        let written = floats(st.tensor(hf).unwrap().data());
        let cols = HIDDEN as usize;
        let half = HEAD_DIM as usize / 2;
        for h in 0..heads as usize {
            for i in 0..half {
                for j in 0..2 {
                    let hf_row = h * HEAD_DIM as usize + j * half + i;
                    let gguf_row = h * HEAD_DIM as usize + 2 * i + j;
                    assert_eq!(
                        written[hf_row * cols..(hf_row + 1) * cols],
                        stored[gguf_row * cols..(gguf_row + 1) * cols],
                        "{hf} head {h} row {i},{j}"
                    );
                }
            }
        }
    }
    // Other tensors are written as stored.
    let info = f.tensor("blk.0.attn_v.weight").unwrap();
    let mut stored = vec![0.0; info.n_elements as usize];
    super::dequant::dequantize(GgmlType::Q4_1, f.tensor_bytes(info), &mut stored).unwrap();
    assert_eq!(floats(st.tensor("model.layers.0.self_attn.v_proj.weight").unwrap().data()), stored);
}

#[test]
fn out_is_created_replaced_or_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let gguf = write(tmp.path(), "m.gguf", &llama_file(&Options::default()));
    // An empty directory is used; nested parents are created.
    let empty = tmp.path().join("a/b/empty");
    std::fs::create_dir_all(&empty).unwrap();
    run(&gguf, &empty).unwrap();
    // An earlier import is replaced.
    std::fs::write(empty.join("stale.txt"), "x").unwrap();
    let s = run(&gguf, &empty).unwrap();
    assert!(s.replaced_previous);
    assert!(!empty.join("stale.txt").exists());
    // Anything else is refused and left alone.
    let busy = tmp.path().join("busy");
    std::fs::create_dir(&busy).unwrap();
    std::fs::write(busy.join("notes.txt"), "keep me").unwrap();
    let e = run(&gguf, &busy).unwrap_err().to_string();
    assert!(e.contains("busy") && e.contains("not empty"), "{e}");
    assert_eq!(std::fs::read_to_string(busy.join("notes.txt")).unwrap(), "keep me");
    let file = tmp.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let e = run(&gguf, &file).unwrap_err().to_string();
    assert!(e.contains("not a directory"), "{e}");
    // No staging directories are left behind.
    let hidden: Vec<_> = std::fs::read_dir(tmp.path().join("a/b"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(hidden.is_empty(), "{hidden:?}");
}

#[test]
fn unsupported_files_are_refused_with_what_is_supported() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let check = |b: &GgufBuilder, want: &[&str]| {
        let gguf = write(tmp.path(), "bad.gguf", b);
        let e = run(&gguf, &out).unwrap_err().to_string();
        for w in want {
            assert!(e.contains(w), "{w:?} not in: {e}");
        }
        assert!(!out.exists(), "a refused import wrote {}", out.display());
    };
    check(
        &llama_file(&Options { arch: "qwen9", ..Default::default() }),
        &["bad.gguf", "`qwen9`", "supported: llama"],
    );
    check(
        &llama_file(&Options { pre: "mystery", ..Default::default() }),
        &["tokenizer.ggml.pre", "`mystery`", "smollm", "llama-bpe"],
    );
    check(
        &llama_file(&Options { ffn_meta: 768, ..Default::default() }),
        &["blk.0.ffn_gate.weight", "shape [512, 256]", "implies [768, 256]"],
    );
    let mut b = llama_file(&Options::default());
    b.kv("llama.expert_count", Value::U32(8));
    check(&b, &["mixture-of-experts"]);
    b = llama_file(&Options::default());
    b.tensor(tensor_f32("rope_freqs.weight", &[HEAD_DIM / 2], &[1.0; 32]));
    check(&b, &["rope_freqs.weight", "rope scaling"]);
    b = llama_file(&Options::default());
    b.tensor(tensor_f32("blk.0.attn_q.bias", &[HIDDEN], &[0.0; 256]));
    check(&b, &["blk.0.attn_k.bias", "missing"]);
    b = llama_file(&Options::default());
    b.tensor(tensor_f32("blk.1.attn_q.bias", &[HIDDEN], &[0.0; 256]));
    check(&b, &["blk.1.attn_q.bias", "unexpected"]);
    b = llama_file(&Options::default());
    b.kv("llama.rope.scaling.type", Value::String("yarn".into()));
    check(&b, &["yarn", "supported: none, linear"]);
    // A quant type that cannot be dequantized.
    let mut b = llama_file(&Options::default());
    b.tensor(RawTensor {
        name: "output.weight".into(),
        dims: vec![HIDDEN, 261],
        type_id: 13, // Q5_K
        data: vec![0; 176 * 261],
    });
    check(&b, &["output.weight", "Q5_K", "Q4_K, Q6_K"]);
}
