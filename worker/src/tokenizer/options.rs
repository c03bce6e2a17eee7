//! The chat-template switches a maze conversation is rendered with, beyond the messages:
//! Qwen3's `enable_thinking` and GPT-OSS's harmony `reasoning_effort` (transformers passes both
//! to `apply_chat_template` as keyword arguments; templates that do not read them ignore them).

use serde::{Deserialize, Serialize};

use super::ChatArgs;

/// Harmony's reasoning effort, written into the system message (`Reasoning: low`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReasoningEffort {
    Low,
    Medium,
    High,
}

impl ReasoningEffort {
    pub fn name(self) -> &'static str {
        match self {
            ReasoningEffort::Low => "low",
            ReasoningEffort::Medium => "medium",
            ReasoningEffort::High => "high",
        }
    }
}

/// Template switches; unset ones are not passed (the template's default applies).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TemplateOptions {
    /// Qwen3's `enable_thinking`.
    pub enable_thinking: Option<bool>,
    /// GPT-OSS's `reasoning_effort` (the harmony template's default: medium).
    pub reasoning_effort: Option<ReasoningEffort>,
}

impl TemplateOptions {
    /// Each switch from `self`, else from `fallback`.
    pub fn or(self, fallback: TemplateOptions) -> TemplateOptions {
        TemplateOptions {
            enable_thinking: self.enable_thinking.or(fallback.enable_thinking),
            reasoning_effort: self.reasoning_effort.or(fallback.reasoning_effort),
        }
    }

    /// Render arguments with the generation prompt and the switches that are set.
    pub fn chat_args(&self) -> ChatArgs {
        self.args(true)
    }

    /// Render arguments with the switches that are set.
    pub fn args(&self, add_generation_prompt: bool) -> ChatArgs {
        let mut args = ChatArgs::new(add_generation_prompt);
        if let Some(on) = self.enable_thinking {
            args = args.enable_thinking(on);
        }
        if let Some(effort) = self.reasoning_effort {
            args = args.with("reasoning_effort", effort.name());
        }
        args
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_switches_become_template_variables() {
        let none = TemplateOptions::default().chat_args();
        assert!(none.add_generation_prompt && none.extra.is_empty());
        let both = TemplateOptions {
            enable_thinking: Some(false),
            reasoning_effort: Some(ReasoningEffort::High),
        }
        .chat_args();
        assert_eq!(both.extra["enable_thinking"], serde_json::json!(false));
        assert_eq!(both.extra["reasoning_effort"], serde_json::json!("high"));
    }

    #[test]
    fn own_switches_win_over_the_fallback() {
        let mine =
            TemplateOptions { enable_thinking: None, reasoning_effort: Some(ReasoningEffort::Low) };
        let theirs = TemplateOptions {
            enable_thinking: Some(true),
            reasoning_effort: Some(ReasoningEffort::High),
        };
        let merged = mine.or(theirs);
        assert_eq!(merged.enable_thinking, Some(true));
        assert_eq!(merged.reasoning_effort, Some(ReasoningEffort::Low));
        let parsed: ReasoningEffort = serde_json::from_str("\"medium\"").unwrap();
        assert_eq!(parsed, ReasoningEffort::Medium);
        assert!(serde_json::from_str::<ReasoningEffort>("\"max\"").is_err());
    }
}
