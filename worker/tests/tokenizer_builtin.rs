//! The builtin tokenizer: move letters are single tokens, maze phrases compress, transformers
//! loads the saved snapshot and encodes identically, and training is deterministic.
//!
//! Needs the English corpus (Debian python3-doc) and the Python environment (`make bootstrap`).

#[path = "common/chat_script.rs"]
mod chat_script;

use chat_script::transformers;
use serde_json::json;
use std::path::Path;
use wax_worker::maze::{ChatFormat, RenderOptions, render_chat};
use wax_worker::tokenizer::{
    ChatArgs, Corpus, MazeTextConfig, Split, Tokenizer, TrainConfig, TrainReport,
    maze_conversations, maze_phrases, train_builtin, verify_moves,
};

fn small_config() -> TrainConfig {
    TrainConfig {
        vocab_size: 1024,
        english_max_bytes: Some(400_000),
        validation_max_bytes: 100_000,
        maze: MazeTextConfig { episodes: 20, synthetic_per_class: 3, ..MazeTextConfig::default() },
        ..TrainConfig::default()
    }
}

fn train(dir: &Path) -> (Tokenizer, TrainReport) {
    let corpus = Corpus::locate(None).unwrap_or_else(|e| panic!("{e}"));
    train_builtin(&corpus, &small_config(), dir).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn builtin_tokenizer_properties() {
    let dir = tempfile::tempdir().unwrap();
    let tok_dir = dir.path().join("tok");
    let (tok, report) = train(&tok_dir);
    assert_eq!(report.vocab_size, 1024);
    assert!(report.english_bytes >= 400_000 && report.english_documents > 10, "{report:?}");
    assert!(report.moves.answers > 100 && report.moves.endings > 0, "{report:?}");
    let distinct: std::collections::BTreeSet<u32> =
        report.moves.letter_ids.iter().chain(&report.moves.spaced_letter_ids).copied().collect();
    assert_eq!(distinct.len(), 8);
    for (i, letter) in ["N", "E", "S", "W"].iter().enumerate() {
        assert_eq!(tok.encode(letter, false).unwrap(), vec![report.moves.letter_ids[i]]);
        assert_eq!(
            tok.encode(&format!(" {letter}"), false).unwrap(),
            vec![report.moves.spaced_letter_ids[i]]
        );
    }
    // Special and added tokens.
    assert_eq!(tok.token_id("<|endoftext|>"), Some(0));
    assert_eq!(tok.token_id("<|im_start|>"), Some(1));
    assert_eq!(tok.eos_ids(), &[2]);
    assert_eq!(tok.pad_id(), Some(0));
    assert_eq!(tok.encode("<think>\n\n</think>\n\n", false).unwrap().len(), 4);

    // Fresh conversations (other seeds than training) still answer in one token per move.
    let fresh = maze_conversations(&MazeTextConfig {
        episodes: 6,
        synthetic_per_class: 2,
        seed: 9_000,
        ..Default::default()
    })
    .unwrap();
    let check = verify_moves(&tok, &fresh).unwrap();
    assert_eq!(check.letter_ids, report.moves.letter_ids);
    assert!(check.endings >= 6, "{check:?}");

    // The fixed phrases are one token each; a whole user message is a couple of dozen.
    for phrase in maze_phrases() {
        assert_eq!(tok.encode(&phrase, false).unwrap().len(), 1, "{phrase:?} is not one token");
    }
    for conv in &fresh {
        for m in conv.iter().filter(|m| m.role == wax_worker::maze::Role::User) {
            let n = tok.encode(&m.content, false).unwrap().len();
            assert!(n <= 30, "{:?} takes {n} tokens", m.content);
            assert!(m.content.len() as f64 / n as f64 >= 7.0, "{:?}: {n} tokens", m.content);
        }
    }
    assert!(report.chatml_tokens_per_turn < 40.0, "{report:?}");
    assert!(
        (report.chatml_tokens_per_turn - report.plain_tokens_per_turn - 3.0).abs() < 1e-9,
        "ChatML markup costs 3 more tokens a turn than the plain labels: {report:?}"
    );
    assert!(report.validation_bytes_per_token.unwrap() > 2.5, "{report:?}");

    // transformers loads the saved snapshot and encodes (and renders) identically.
    let corpus = Corpus::locate(None).unwrap();
    let mut texts: Vec<String> =
        corpus.documents(Split::Validation).take(3).map(|d| d.unwrap().text).collect();
    let opts = RenderOptions { add_generation_prompt: true, close_final_assistant: true };
    let open = RenderOptions { add_generation_prompt: false, close_final_assistant: false };
    for conv in &fresh {
        texts.push(render_chat(conv, ChatFormat::Chatml, opts));
        texts.push(render_chat(conv, ChatFormat::Plain, open));
    }
    texts.push("Ünïcödé — “quotes” 🧾🗂📐 <|im_end|><think>x</think>\r\n\t 12345 don't".into());
    let messages: Vec<wax_worker::tokenizer::Message> = fresh[0].iter().map(Into::into).collect();
    let rendered = tok
        .chat_template()
        .unwrap()
        .render(&messages, &ChatArgs::new(true).enable_thinking(false))
        .unwrap();
    let py = transformers(
        &json!({
            "tokenizer_dir": tok_dir,
            "loader": "auto",
            "renders": [{"template": null, "messages": messages, "add_generation_prompt": true,
                         "kwargs": {"enable_thinking": false}}],
            "encode": texts,
        }),
        dir.path(),
    );
    assert_eq!(py["renders"][0].as_str().unwrap(), rendered);
    assert_eq!(py["eos_token_id"], json!(2));
    assert_eq!(py["pad_token_id"], json!(0));
    let rust_ids = tok.encode_batch(&texts, false).unwrap();
    for (i, (r, p)) in rust_ids.iter().zip(py["ids"].as_array().unwrap()).enumerate() {
        let p: Vec<u32> = serde_json::from_value(p.clone()).unwrap();
        assert_eq!(r, &p, "text {i}: Rust and transformers encode differently");
        assert_eq!(py["decoded"][i].as_str().unwrap(), texts[i]);
    }
}

#[test]
fn training_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let (_, a) = train(&dir.path().join("a"));
    let (_, b) = train(&dir.path().join("b"));
    assert_eq!(a, b);
    for file in ["tokenizer.json", "tokenizer_config.json"] {
        let x = std::fs::read(dir.path().join("a").join(file)).unwrap();
        let y = std::fs::read(dir.path().join("b").join(file)).unwrap();
        assert!(x == y, "{file} differs between two trainings with the same corpus and seed");
    }
}

#[test]
fn bad_configuration_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = Corpus::locate(None).unwrap_or_else(|e| panic!("{e}"));
    let cfg = TrainConfig { vocab_size: 200, ..small_config() };
    let e = train_builtin(&corpus, &cfg, dir.path()).unwrap_err().to_string();
    assert!(e.contains("vocab_size 200"), "{e}");
}
