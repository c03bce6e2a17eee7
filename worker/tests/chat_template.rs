//! The Rust chat-template renderer against transformers' `apply_chat_template(tokenize=False)`
//! on real maze conversations, for Qwen3's template, the builtin ChatML template and the plain
//! template; and the Rust tokenizer's ids against transformers' for the same texts.
//!
//! Needs the project's Python environment (`make bootstrap`); without it the test fails.

#[path = "common/chat_script.rs"]
mod chat_script;
#[path = "common/small_tokenizer.rs"]
mod small_tokenizer;

use chat_script::{repo_root, transformers};
use serde_json::{Value, json};
use small_tokenizer::small_tokenizer;
use std::path::PathBuf;
use std::sync::Arc;
use wax_worker::maze::{EnvConfig, Episode, Maze, MazeConfig, PolicyKind, ScriptedPolicy};
use wax_worker::tokenizer::{ChatArgs, ChatTemplate, Message, PlainTemplate, Tokenizer};

/// Played episodes of several seeds, at least one with a wind turn, as chat messages; some
/// with a system message, some cut after a user message, some after an answer.
fn conversations() -> Vec<Vec<Message>> {
    let env = Arc::new(EnvConfig::default());
    let mut out = Vec::new();
    let mut windy = false;
    for seed in [3u64, 12, 29, 41, 57] {
        let maze = Maze::generate(&MazeConfig::default(), seed).unwrap();
        let mut ep = Episode::new(&maze, env.clone(), seed).unwrap();
        ScriptedPolicy::new(PolicyKind::Greedy, seed).play(&mut ep);
        let msgs: Vec<Message> = ep.messages().iter().map(Message::from).collect();
        windy |= msgs.iter().any(|m| m.content.starts_with("A strong wind from the"));
        out.push(msgs.clone());
        out.push(msgs[..7].to_vec());
        let mut with_system = vec![Message::system("You walk a maze. Answer with one letter.")];
        with_system.extend_from_slice(&msgs[..10]);
        out.push(with_system);
    }
    assert!(windy, "the chosen seeds must include a wind turn");
    out
}

fn qwen3_config() -> Value {
    let path = repo_root().join("worker/tests/data/qwen3_tokenizer_config.json");
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

#[test]
fn renders_and_ids_match_transformers() {
    let dir = tempfile::tempdir().unwrap();
    let tok_dir = dir.path().join("builtin");
    let tok = small_tokenizer(&tok_dir);

    // Qwen3's template, loaded the way a snapshot ships it.
    let qwen_dir = dir.path().join("qwen3");
    std::fs::create_dir_all(&qwen_dir).unwrap();
    std::fs::copy(tok_dir.join("tokenizer.json"), qwen_dir.join("tokenizer.json")).unwrap();
    std::fs::write(
        qwen_dir.join("tokenizer_config.json"),
        serde_json::to_vec(&qwen3_config()).unwrap(),
    )
    .unwrap();
    let qwen = Tokenizer::load(&qwen_dir).unwrap();
    let qwen_template = qwen.chat_template().expect("the Qwen3 config has a chat template");
    assert_eq!(qwen_template.source(), qwen3_config()["chat_template"].as_str().unwrap());
    assert_eq!(qwen.eos_ids(), &[tok.token_id("<|im_end|>").unwrap()]);
    assert_eq!(qwen.pad_id(), tok.token_id("<|endoftext|>"));

    let builtin = tok.chat_template().expect("the builtin tokenizer has a chat template");
    let plain: ChatTemplate = PlainTemplate::default().compile(tok.special_tokens()).unwrap();
    let templates: [(&str, &ChatTemplate); 3] =
        [("qwen3", qwen_template), ("chatml", builtin), ("plain", &plain)];

    let convs = conversations();
    let mut rust = Vec::new();
    let mut requests = Vec::new();
    for (name, template) in templates {
        for conv in &convs {
            for gen_prompt in [false, true] {
                for thinking in [None, Some(false), Some(true)] {
                    let mut args = ChatArgs::new(gen_prompt);
                    let mut kwargs = json!({});
                    if let Some(t) = thinking {
                        args = args.enable_thinking(t);
                        kwargs["enable_thinking"] = json!(t);
                    }
                    rust.push((name, template.render(conv, &args).unwrap()));
                    requests.push(json!({
                        "template": template.source(),
                        "messages": conv,
                        "add_generation_prompt": gen_prompt,
                        "kwargs": kwargs,
                    }));
                }
            }
        }
    }
    let texts: Vec<&str> = rust.iter().map(|(_, t)| t.as_str()).collect();
    let request = json!({
        "tokenizer_dir": tok_dir,
        "loader": "fast",
        "special_tokens": {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
        "renders": requests,
        "encode": texts,
    });
    let py = transformers(&request, dir.path());
    let py_renders = py["renders"].as_array().unwrap();
    assert_eq!(py_renders.len(), rust.len());
    for (i, ((name, r), p)) in rust.iter().zip(py_renders).enumerate() {
        assert_eq!(
            r,
            p.as_str().unwrap(),
            "render {i} with the {name} template differs from transformers"
        );
    }
    // The switches matter: Qwen3 adds the empty think block only with enable_thinking=false.
    let think = "<|im_start|>assistant\n<think>\n\n</think>\n\n";
    let qwen_user_last =
        qwen_template.render(&convs[1], &ChatArgs::new(true).enable_thinking(false)).unwrap();
    assert!(qwen_user_last.ends_with(think), "{qwen_user_last}");
    let qwen_default = qwen_template.render(&convs[1], &ChatArgs::new(true)).unwrap();
    assert!(qwen_default.ends_with("<|im_end|>\n<|im_start|>assistant\n"), "{qwen_default}");
    assert!(rust.iter().any(|(_, t)| t.contains("A strong wind from the")));

    let py_ids = py["ids"].as_array().unwrap();
    let rust_ids = tok.encode_batch(&texts, false).unwrap();
    for (i, (r, p)) in rust_ids.iter().zip(py_ids).enumerate() {
        let p: Vec<u32> = serde_json::from_value(p.clone()).unwrap();
        assert_eq!(r, &p, "token ids of text {i} differ from transformers");
        assert_eq!(
            tok.decode(r, false).unwrap(),
            texts[i],
            "decode of text {i} does not round-trip"
        );
    }
}

#[test]
fn snapshot_loading_variants() {
    let dir = tempfile::tempdir().unwrap();
    let tok_dir = dir.path().join("builtin");
    let tok = small_tokenizer(&tok_dir);
    let json = std::fs::read(tok_dir.join("tokenizer.json")).unwrap();
    let snapshot = |name: &str, config: Option<Value>, extra: &[(&str, &str)]| -> PathBuf {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("tokenizer.json"), &json).unwrap();
        if let Some(c) = config {
            std::fs::write(d.join("tokenizer_config.json"), serde_json::to_vec(&c).unwrap())
                .unwrap();
        }
        for (file, text) in extra {
            std::fs::write(d.join(file), text).unwrap();
        }
        d
    };
    // AddedToken objects, a list of named templates, generation_config eos ids.
    let d = snapshot(
        "list",
        Some(json!({
            "eos_token": {"content": "<|im_end|>", "special": true},
            "pad_token": {"content": "<|endoftext|>"},
            "chat_template": [{"name": "default", "template": "{{ eos_token }}"},
                              {"name": "tool_use", "template": "T{{ messages|length }}"}]
        })),
        &[("generation_config.json", r#"{"eos_token_id": [2, 0]}"#)],
    );
    let t = Tokenizer::load(&d).unwrap();
    assert_eq!(t.eos_ids(), &[2, 0]);
    assert_eq!(t.pad_id(), Some(0));
    let msgs = [Message::user("x")];
    assert_eq!(
        t.chat_template().unwrap().render(&msgs, &ChatArgs::default()).unwrap(),
        "<|im_end|>"
    );
    assert_eq!(
        t.chat_template_named("tool_use").unwrap().render(&msgs, &ChatArgs::default()).unwrap(),
        "T1"
    );
    assert!(t.chat_template_named("nope").unwrap_err().to_string().contains("default, tool_use"));

    // chat_template.jinja wins over the config's template; no config at all is fine.
    let d = snapshot("jinja", None, &[("chat_template.jinja", "J{{ messages[0].content }}\n")]);
    let t = Tokenizer::load(&d).unwrap();
    assert_eq!(t.chat_template().unwrap().render(&msgs, &ChatArgs::default()).unwrap(), "Jx");
    assert!(t.eos_ids().is_empty() && t.pad_id().is_none());

    // Bad inputs are errors naming the file and field.
    let d = snapshot("bad_eos", Some(json!({"eos_token": "<|nope|>"})), &[]);
    let e = Tokenizer::load(&d).unwrap_err().to_string();
    assert!(
        e.contains("tokenizer_config.json") && e.contains("eos_token") && e.contains("<|nope|>"),
        "{e}"
    );
    let d = snapshot("bad_tmpl", Some(json!({"chat_template": 5})), &[]);
    let e = Tokenizer::load(&d).unwrap_err().to_string();
    assert!(e.contains("field `chat_template`"), "{e}");
    let d = snapshot("bad_syntax", Some(json!({"chat_template": "{% for %}"})), &[]);
    assert!(Tokenizer::load(&d).unwrap_err().to_string().contains("chat template `default`"));
    let d = snapshot("bad_json", None, &[("tokenizer_config.json", "{oops")]);
    assert!(Tokenizer::load(&d).unwrap_err().to_string().contains("invalid JSON"));
    let e = Tokenizer::load(dir.path().join("missing")).unwrap_err().to_string();
    assert!(e.contains("tokenizer.json"), "{e}");
    drop(tok);
}
