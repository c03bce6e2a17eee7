//! GPT-OSS's harmony chat format: the official openai/gpt-oss-20b chat template
//! (`tests/data/gpt_oss_chat_template.jinja`, byte for byte the Hub's file after its 2025-08-08
//! update, sha256 a4c9919c…) rendered by wax's `ChatTemplate` equals transformers'
//! `apply_chat_template` on maze conversations, with each `reasoning_effort` (the template's
//! kwarg, `ChatArgs::with("reasoning_effort", …)`; "medium" when absent), with the generation
//! prompt and with a final assistant move; past moves are written in the final channel.
//!
//! The template writes the current date (`strftime_now`: wax's is UTC, transformers' local
//! time, so Python runs with `TZ=UTC`), and wax renders before and after transformers, the
//! comparison repeated if the day changed in between.
//!
//! Needs the project's Python environment (`make bootstrap`); without it the test fails.

#[path = "common/chat_script.rs"]
mod chat_script;
#[path = "common/small_tokenizer.rs"]
mod small_tokenizer;

use std::sync::Arc;

use chat_script::repo_root;
use serde_json::json;
use small_tokenizer::small_tokenizer;
use wax_worker::maze::{
    ChatMessage, EnvConfig, Episode, Maze, MazeConfig, PolicyKind, Role, ScriptedPolicy,
};
use wax_worker::rl::rollout::TurnLayout;
use wax_worker::tokenizer::{
    ChatArgs, ChatTemplate, Message, ReasoningEffort, SpecialTokens, TemplateOptions,
};

/// scripts/fixtures/chat_templates.py on `request` (as `chat_script::transformers`, in UTC).
fn transformers(request: &serde_json::Value, dir: &std::path::Path) -> serde_json::Value {
    let python = repo_root().join(".wax/python");
    assert!(python.exists(), "{} is missing: run `make bootstrap`", python.display());
    let (req, resp) = (dir.join("request.json"), dir.join("response.json"));
    std::fs::write(&req, serde_json::to_vec(request).unwrap()).unwrap();
    let out = std::process::Command::new(&python)
        .arg(repo_root().join("scripts/fixtures/chat_templates.py"))
        .arg(&req)
        .arg(&resp)
        .env("TZ", "UTC")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}; run `make bootstrap`", python.display()));
    assert!(
        out.status.success(),
        "scripts/fixtures/chat_templates.py failed (run `make bootstrap`?):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&std::fs::read(&resp).unwrap()).unwrap()
}

fn template_source() -> String {
    let path = repo_root().join("worker/tests/data/gpt_oss_chat_template.jinja");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// GPT-OSS's special tokens (the template itself names none).
fn special() -> SpecialTokens {
    SpecialTokens {
        bos: Some("<|startoftext|>".into()),
        eos: Some("<|return|>".into()),
        pad: Some("<|endoftext|>".into()),
        ..Default::default()
    }
}

/// Played maze conversations cut after a user message (1 turn, 3 turns, the whole episode), and
/// one ending with the assistant's move.
fn conversations() -> Vec<(Vec<ChatMessage>, bool)> {
    let env = Arc::new(EnvConfig::default());
    let mut out = Vec::new();
    for seed in [3u64, 12, 29] {
        let maze = Maze::generate(&MazeConfig::default(), seed).unwrap();
        let mut ep = Episode::new(&maze, env.clone(), seed).unwrap();
        ScriptedPolicy::new(PolicyKind::Greedy, seed).play(&mut ep);
        let msgs = ep.messages().to_vec();
        let last_user = msgs.iter().rposition(|m| m.role == Role::User).unwrap();
        for end in [1, 5, last_user + 1] {
            out.push((msgs[..end].to_vec(), true));
        }
        out.push((msgs[..6].to_vec(), false));
    }
    out
}

const EFFORTS: [Option<&str>; 4] = [None, Some("low"), Some("medium"), Some("high")];

fn args(generation_prompt: bool, effort: Option<&str>) -> ChatArgs {
    let args = ChatArgs::new(generation_prompt);
    match effort {
        Some(e) => args.with("reasoning_effort", e),
        None => args,
    }
}

/// Every (conversation, effort) rendering by wax, in order.
fn wax_renders(template: &ChatTemplate) -> Vec<String> {
    let mut out = Vec::new();
    for (conv, prompt) in conversations() {
        for effort in EFFORTS {
            out.push(template.render_maze(&conv, &args(prompt, effort)).unwrap());
        }
    }
    out
}

#[test]
fn harmony_renders_maze_conversations_as_transformers_does() {
    let template = ChatTemplate::new("gpt-oss", template_source(), &special()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tok_dir = dir.path().join("builtin");
    // transformers needs a tokenizer to render with; any will do.
    let _tok = small_tokenizer(&tok_dir);
    let mut requests = Vec::new();
    for (conv, prompt) in conversations() {
        let messages: Vec<Message> = conv.iter().map(Message::from).collect();
        for effort in EFFORTS {
            let kwargs = match effort {
                Some(e) => json!({"reasoning_effort": e}),
                None => json!({}),
            };
            requests.push(json!({
                "template": template.source(),
                "messages": messages,
                "add_generation_prompt": prompt,
                "kwargs": kwargs,
            }));
        }
    }
    let request = json!({
        "tokenizer_dir": tok_dir,
        "loader": "fast",
        "special_tokens": {"bos_token": "<|startoftext|>", "eos_token": "<|return|>",
                           "pad_token": "<|endoftext|>"},
        "renders": requests,
    });
    let (ours, reference) = loop {
        let before = wax_renders(&template);
        let py = transformers(&request, dir.path());
        if wax_renders(&template) == before {
            let renders: Vec<String> = py["renders"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect();
            break (before, renders);
        }
        // The date changed while transformers rendered: once more.
    };
    assert_eq!(ours.len(), reference.len());
    for (i, (a, b)) in ours.iter().zip(&reference).enumerate() {
        assert_eq!(a, b, "rendering {i} differs from transformers");
    }

    // What the renderings hold: the effort line, moves in the final channel, the prompt.
    let (conv, _) = &conversations()[1];
    let moves: Vec<&str> =
        conv.iter().filter(|m| m.role == Role::Assistant).map(|m| m.content.as_str()).collect();
    for (effort, text) in EFFORTS.iter().zip(&ours[4..8]) {
        assert!(text.contains(&format!("Reasoning: {}\n\n", effort.unwrap_or("medium"))));
        assert!(text.starts_with("<|start|>system<|message|>You are ChatGPT"), "{text}");
        assert!(text.ends_with("<|end|><|start|>assistant"), "{text}");
        for m in &moves {
            let written = format!("<|start|>assistant<|channel|>final<|message|>{m}<|end|>");
            assert!(text.contains(&written), "{text}");
        }
    }
    // A conversation ending with the move (no generation prompt): the training form, where the
    // last answer closes with `<|return|>`.
    let (conv, prompt) = &conversations()[3];
    assert!(!prompt);
    let last_move = &conv.last().unwrap().content;
    let text = &ours[3 * EFFORTS.len()];
    let closing = format!("<|start|>assistant<|channel|>final<|message|>{last_move}<|return|>");
    assert!(text.ends_with(&closing), "{text}");
}

/// `TurnLayout` on the harmony template: the generation prompt ends at `<|start|>assistant` and
/// the template writes an answer as `<|start|>assistant<|channel|>final<|message|>MOVE<|end|>`,
/// so every segment ends with the answer header `<|channel|>final<|message|>` and the move is
/// sampled in the final channel. Segments and moves concatenate to the template's rendering of
/// the whole conversation (plus the header the next move will follow), for every effort.
#[test]
fn turn_layout_on_harmony_writes_moves_in_the_final_channel() {
    let dir = tempfile::tempdir().unwrap();
    let tok = small_tokenizer(&dir.path().join("builtin"));
    let template = ChatTemplate::new("gpt-oss", template_source(), &special()).unwrap();
    let header = "<|channel|>final<|message|>";
    for effort in [None, Some(ReasoningEffort::Low), Some(ReasoningEffort::High)] {
        let options = TemplateOptions { enable_thinking: None, reasoning_effort: effort };
        let layout = TurnLayout::new(&tok, template.clone(), &options).unwrap();
        assert!(layout.matches_whole_conversation());
        assert_eq!(layout.answer_header(), header);
        for (conv, prompt) in conversations() {
            if !prompt {
                continue;
            }
            let mut text = String::new();
            let mut turn = 0u32;
            for m in &conv {
                match m.role {
                    Role::User => {
                        turn += 1;
                        let segment = layout.segment_text(turn, &m.content).unwrap();
                        assert!(segment.ends_with(&format!("<|start|>assistant{header}")));
                        text += &segment;
                    }
                    Role::Assistant => text += &m.content,
                }
            }
            let whole = template.render_maze(&conv, &options.chat_args()).unwrap();
            assert_eq!(text, whole + header);
            let level = effort.map_or("medium", |e| e.name());
            assert!(text.contains(&format!("Reasoning: {level}\n\n")), "{text}");
        }
    }
}

/// The template's other inputs render as in transformers too: a system message (the developer
/// instructions), function tools with every parameter shape its TypeScript rendering handles,
/// the builtin browser and python tools, and a `model_identity`. (Assistant tool calls and tool
/// results need message fields wax's `Message` does not carry; they are not rendered here.)
#[test]
fn harmony_developer_message_and_tools_render_as_transformers_does() {
    let template = ChatTemplate::new("gpt-oss", template_source(), &special()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tok_dir = dir.path().join("builtin");
    let _tok = small_tokenizer(&tok_dir);
    let tools = json!([{
        "type": "function",
        "function": {
            "name": "move",
            "description": "Moves in the maze.",
            "parameters": {
                "type": "object",
                "properties": {
                    "direction": {"type": "string", "enum": ["N", "E", "S", "W"],
                                  "description": "Where to go."},
                    "steps": {"type": "integer", "default": 1},
                    "speed": {"type": "number", "nullable": true},
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "path": {"type": "array", "items": {"type": "object",
                             "properties": {"x": {"type": "integer"}}, "required": ["x"]}},
                    "note": {"type": ["string", "null"]},
                    "either": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
                    "flag": {"type": "boolean", "default": false}
                },
                "required": ["direction"]
            }
        }
    }, {
        "type": "function",
        "function": {"name": "look", "description": "Looks around."}
    }]);
    let messages = vec![
        Message::system("Answer with one letter."),
        Message::user("Where do you move?"),
        Message::assistant("N"),
        Message::user("And now?"),
    ];
    let cases = [
        json!({"tools": tools}),
        json!({"builtin_tools": ["browser", "python"], "reasoning_effort": "high"}),
        json!({"tools": tools, "builtin_tools": ["python"], "model_identity": "You are a maze bot."}),
        json!({}),
    ];
    let render = || -> Vec<String> {
        cases
            .iter()
            .map(|kwargs| {
                let mut args = ChatArgs::new(true);
                for (k, v) in kwargs.as_object().unwrap() {
                    args = args.with(k.clone(), v.clone());
                }
                template.render(&messages, &args).unwrap()
            })
            .collect()
    };
    let requests: Vec<_> = cases
        .iter()
        .map(|kwargs| {
            json!({
                "template": template.source(),
                "messages": messages,
                "add_generation_prompt": true,
                "kwargs": kwargs,
            })
        })
        .collect();
    let request = json!({"tokenizer_dir": tok_dir, "loader": "fast", "renders": requests});
    let (ours, py) = loop {
        let before = render();
        let py = transformers(&request, dir.path());
        if render() == before {
            break (before, py);
        }
    };
    for (i, (a, b)) in ours.iter().zip(py["renders"].as_array().unwrap()).enumerate() {
        assert_eq!(a, b.as_str().unwrap(), "case {i} differs from transformers");
    }
    assert!(ours[0].contains(
        "<|start|>developer<|message|># Instructions\n\nAnswer with one letter.\n\n# Tools"
    ));
    assert!(ours[1].contains("## browser") && ours[1].contains("## python"));
}
