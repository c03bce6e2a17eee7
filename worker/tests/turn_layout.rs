//! The maze's per-turn token layout (`TurnLayout`, shared by rollouts, SFT and extraction)
//! against transformers' `apply_chat_template` of the whole conversation, for real chat
//! templates with and without a default system prompt: the concatenated segments and moves are
//! exactly the template's rendering, and their token ids are the ids of that rendering.
//!
//! Needs the project's Python environment (`make bootstrap`); without it the test fails.

#[path = "common/chat_script.rs"]
mod chat_script;
#[path = "common/small_tokenizer.rs"]
mod small_tokenizer;

use chat_script::{repo_root, transformers};
use serde_json::{Value, json};
use small_tokenizer::small_tokenizer;
use std::sync::Arc;
use wax_worker::maze::ScriptedPolicy;
use wax_worker::maze::{ChatMessage, EnvConfig, Episode, Maze, MazeConfig, PolicyKind, Role};
use wax_worker::rl::rollout::TurnLayout;
use wax_worker::tokenizer::{ChatTemplate, Message, SpecialTokens, TemplateOptions};

fn data(name: &str) -> String {
    std::fs::read_to_string(repo_root().join("worker/tests/data").join(name)).unwrap()
}

/// One real template: name, source, `enable_thinking`, and whether it renders conversations
/// append-only (then the layout must be exact).
struct Case {
    name: &'static str,
    source: String,
    thinking: Option<bool>,
    append_only: bool,
}

fn cases() -> Vec<Case> {
    let qwen3: Value = serde_json::from_str(&data("qwen3_tokenizer_config.json")).unwrap();
    let qwen3 = qwen3["chat_template"].as_str().unwrap().to_string();
    let case = |name, source: &String, thinking, append_only| Case {
        name,
        source: source.clone(),
        thinking,
        append_only,
    };
    vec![
        case("smollm2", &data("smollm2_chat_template.jinja"), None, true),
        case("qwen2.5", &data("qwen2_5_chat_template.jinja"), None, true),
        case("llama3", &data("llama3_chat_template.jinja"), None, true),
        case("qwen3", &qwen3, None, true),
        case("qwen3-thinking-on", &qwen3, Some(true), true),
        // Qwen3 drops the empty think block of past answers: no append-only rendering exists.
        case("qwen3-thinking-off", &qwen3, Some(false), false),
        case("chatml", &wax_worker::tokenizer::BUILTIN_CHATML_TEMPLATE.to_string(), None, true),
    ]
}

/// Played maze conversations cut after a user message (1 turn, 3 turns, the whole episode).
fn conversations() -> Vec<Vec<ChatMessage>> {
    let env = Arc::new(EnvConfig::default());
    let mut out = Vec::new();
    for seed in [3u64, 12, 29] {
        let maze = Maze::generate(&MazeConfig::default(), seed).unwrap();
        let mut ep = Episode::new(&maze, env.clone(), seed).unwrap();
        ScriptedPolicy::new(PolicyKind::Greedy, seed).play(&mut ep);
        let msgs = ep.messages().to_vec();
        let last_user = msgs.iter().rposition(|m| m.role == Role::User).unwrap();
        for end in [1, 5, last_user + 1] {
            out.push(msgs[..end].to_vec());
        }
    }
    out
}

/// The layout's text and token ids of a conversation ending with a user message.
fn layout_render(
    layout: &TurnLayout,
    tok: &wax_worker::tokenizer::Tokenizer,
    conv: &[ChatMessage],
) -> (String, Vec<u32>) {
    let mut text = String::new();
    let mut ids = Vec::new();
    let mut turn = 0u32;
    for m in conv {
        match m.role {
            Role::User => {
                turn += 1;
                text += &layout.segment_text(turn, &m.content).unwrap();
                let seg = layout.segment(tok, turn, &m.content).unwrap();
                ids.extend(seg.iter().map(|&i| i as u32));
            }
            Role::Assistant => {
                text += &m.content;
                let dir = "NESW".find(m.content.as_str()).expect("a move letter");
                ids.push(layout.moves[dir] as u32);
            }
        }
    }
    (text, ids)
}

#[test]
fn segments_are_the_whole_conversation_rendering_of_real_templates() {
    let dir = tempfile::tempdir().unwrap();
    let tok_dir = dir.path().join("builtin");
    let tok = small_tokenizer(&tok_dir);
    let special = SpecialTokens {
        bos: Some("<|endoftext|>".into()),
        eos: Some("<|im_end|>".into()),
        pad: Some("<|endoftext|>".into()),
        ..Default::default()
    };
    let convs = conversations();
    let mut ours = Vec::new();
    let mut requests = Vec::new();
    for case in cases() {
        let template = ChatTemplate::new(case.name, case.source.clone(), &special).unwrap();
        let layout = TurnLayout::new(
            &tok,
            template,
            &TemplateOptions { enable_thinking: case.thinking, reasoning_effort: None },
        )
        .unwrap();
        assert_eq!(layout.matches_whole_conversation(), case.append_only, "{}", case.name);
        // These templates answer right after the generation prompt.
        assert_eq!(layout.answer_header(), "", "{}", case.name);
        for conv in &convs {
            ours.push((case.name, case.append_only, layout_render(&layout, &tok, conv)));
            let messages: Vec<Message> = conv.iter().map(Message::from).collect();
            let kwargs = match case.thinking {
                Some(t) => json!({"enable_thinking": t}),
                None => json!({}),
            };
            requests.push(json!({
                "template": case.source,
                "messages": messages,
                "add_generation_prompt": true,
                "kwargs": kwargs,
            }));
        }
    }
    let py = transformers(
        &json!({
            "tokenizer_dir": tok_dir,
            "loader": "fast",
            "special_tokens": {"bos_token": "<|endoftext|>", "eos_token": "<|im_end|>",
                               "pad_token": "<|endoftext|>"},
            "renders": requests,
        }),
        dir.path(),
    );
    let renders = py["renders"].as_array().unwrap();
    assert_eq!(renders.len(), ours.len());
    let mut exact = 0;
    for (i, ((name, append_only, (text, ids)), reference)) in ours.iter().zip(renders).enumerate() {
        let reference = reference.as_str().unwrap();
        if !append_only {
            // The only difference is the past answers' think blocks the template drops.
            assert_eq!(
                text.replace("<think>\n\n</think>\n\n", ""),
                reference.replace("<think>\n\n</think>\n\n", ""),
                "conversation {i}, {name}"
            );
            continue;
        }
        assert_eq!(
            text, reference,
            "conversation {i}: the {name} layout differs from transformers"
        );
        let whole = tok.encode(reference, false).unwrap();
        assert_eq!(ids, &whole, "conversation {i}: {name} token ids differ from the whole text's");
        exact += 1;
    }
    assert_eq!(exact, 6 * convs.len());
    // A default system prompt is written once, however many turns follow.
    let smollm2 = &ours[convs.len() - 1].2.0;
    assert_eq!(smollm2.matches("You are a helpful AI assistant named SmolLM").count(), 1);
    assert!(smollm2.matches("<|im_start|>user").count() > 5, "{smollm2}");
}
