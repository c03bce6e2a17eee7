//! Chat templates rendered like transformers' `apply_chat_template(..., tokenize=False)`.

use super::TokenizerError;
use super::config::SpecialTokens;
use super::jinja;
use crate::maze::{ChatMessage, Role};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One chat message, `{"role", "content"}` as transformers takes it (any role: `system`,
/// `user`, `assistant`, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Message { role: role.into(), content: content.into() }
    }
    pub fn system(content: impl Into<String>) -> Self {
        Message::new("system", content)
    }
    pub fn user(content: impl Into<String>) -> Self {
        Message::new("user", content)
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Message::new("assistant", content)
    }
}

impl From<&ChatMessage> for Message {
    fn from(m: &ChatMessage) -> Self {
        let role = match m.role {
            Role::User => "user",
            Role::Assistant => "assistant",
        };
        Message::new(role, m.content.clone())
    }
}

/// What a render is asked for besides the messages: `add_generation_prompt` and extra template
/// variables (transformers' `**kwargs`, e.g. `enable_thinking=False`). Extra variables override
/// the special-token variables, as in transformers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatArgs {
    pub add_generation_prompt: bool,
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl ChatArgs {
    pub fn new(add_generation_prompt: bool) -> Self {
        ChatArgs { add_generation_prompt, extra: BTreeMap::new() }
    }
    /// Sets an extra template variable.
    pub fn with(mut self, name: impl Into<String>, value: impl Into<serde_json::Value>) -> Self {
        self.extra.insert(name.into(), value.into());
        self
    }
    /// Qwen3's `enable_thinking` switch.
    pub fn enable_thinking(self, on: bool) -> Self {
        self.with("enable_thinking", on)
    }
}

/// A compiled chat template with its special-token variables.
#[derive(Clone)]
pub struct ChatTemplate {
    name: String,
    source: String,
    special: Vec<(String, String)>,
    env: minijinja::Environment<'static>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("name", &self.name)
            .field("len", &self.source.len())
            .finish()
    }
}

impl ChatTemplate {
    /// Compiles `source`; a syntax error is reported with the template's name.
    pub fn new(
        name: &str,
        source: String,
        special: &SpecialTokens,
    ) -> Result<Self, TokenizerError> {
        let mut env = jinja::environment();
        env.add_template_owned("chat", source.clone())
            .map_err(|e| TokenizerError::Template { name: name.into(), why: describe(&e) })?;
        let special =
            special.variables().into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Ok(ChatTemplate { name: name.into(), source, special, env })
    }

    /// The builtin ChatML template ([`BUILTIN_CHATML_TEMPLATE`]).
    pub fn builtin_chatml(special: &SpecialTokens) -> Result<Self, TokenizerError> {
        ChatTemplate::new("builtin-chatml", BUILTIN_CHATML_TEMPLATE.to_string(), special)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The Jinja source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders `messages`. Errors (including `raise_exception`) name the template.
    pub fn render(&self, messages: &[Message], args: &ChatArgs) -> Result<String, TokenizerError> {
        let mut ctx: BTreeMap<String, minijinja::Value> = BTreeMap::new();
        for (k, v) in &self.special {
            ctx.insert(k.clone(), minijinja::Value::from(v.as_str()));
        }
        for (k, v) in &args.extra {
            ctx.insert(k.clone(), minijinja::Value::from(minijinja::value::Serde(v)));
        }
        ctx.insert("messages".into(), minijinja::Value::from(minijinja::value::Serde(messages)));
        ctx.insert(
            "add_generation_prompt".into(),
            minijinja::Value::from(args.add_generation_prompt),
        );
        let tmpl = self
            .env
            .get_template("chat")
            .map_err(|e| TokenizerError::Template { name: self.name.clone(), why: describe(&e) })?;
        tmpl.render(ctx)
            .map_err(|e| TokenizerError::Template { name: self.name.clone(), why: describe(&e) })
    }

    /// Renders the maze's own message type.
    pub fn render_maze(
        &self,
        messages: &[ChatMessage],
        args: &ChatArgs,
    ) -> Result<String, TokenizerError> {
        let msgs: Vec<Message> = messages.iter().map(Message::from).collect();
        self.render(&msgs, args)
    }
}

fn describe(e: &minijinja::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// The builtin tokenizer's chat template: ChatML as Qwen3 renders plain conversations, without
/// tools and without rewriting earlier assistant turns' reasoning. With
/// `add_generation_prompt` it opens an assistant turn, and `enable_thinking=false` appends an
/// empty think block there, as Qwen3 does.
pub const BUILTIN_CHATML_TEMPLATE: &str = "{%- for message in messages %}
    {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
    {%- if enable_thinking is defined and enable_thinking is false %}
        {{- '<think>\\n\\n</think>\\n\\n' }}
    {%- endif %}
{%- endif %}";

/// A plain dialogue for base models: `User: …\nAssistant: …\n`, the labels and separators
/// configurable. [`PlainTemplate::to_jinja`] writes it as a Jinja chat template, so Rust and
/// transformers render it from the same text. Defaults reproduce the maze's
/// [`ChatFormat::Plain`](crate::maze::ChatFormat::Plain).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlainTemplate {
    /// Written before a system message's content (default: nothing).
    pub system_prefix: String,
    /// Written before a user message's content (default `"User: "`).
    pub user_prefix: String,
    /// Written before an assistant message's content (default `"Assistant: "`).
    pub assistant_prefix: String,
    /// Written after every message (default `"\n"`).
    pub separator: String,
    /// Written for `add_generation_prompt` (default `"Assistant:"`; the move then follows as
    /// `" N"`).
    pub generation_prompt: String,
}

impl Default for PlainTemplate {
    fn default() -> Self {
        PlainTemplate {
            system_prefix: String::new(),
            user_prefix: "User: ".into(),
            assistant_prefix: "Assistant: ".into(),
            separator: "\n".into(),
            generation_prompt: "Assistant:".into(),
        }
    }
}

/// A Jinja string literal that both Jinja2 and minijinja read back as `s`.
fn jinja_literal(s: &str) -> String {
    let mut out = String::from("'");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

impl PlainTemplate {
    /// The template as Jinja. Messages with other roles are rejected with `raise_exception`.
    pub fn to_jinja(&self) -> String {
        let sep = jinja_literal(&self.separator);
        format!(
            "{{%- for message in messages %}}\n\
             {{%- if message.role == 'system' %}}{{{{- {sys} + message.content + {sep} }}}}\n\
             {{%- elif message.role == 'user' %}}{{{{- {user} + message.content + {sep} }}}}\n\
             {{%- elif message.role == 'assistant' %}}{{{{- {asst} + message.content + {sep} }}}}\n\
             {{%- else %}}{{{{- raise_exception('plain template: unsupported role ' + message.role) }}}}\n\
             {{%- endif %}}\n\
             {{%- endfor %}}\n\
             {{%- if add_generation_prompt %}}{{{{- {gen} }}}}{{%- endif %}}",
            sys = jinja_literal(&self.system_prefix),
            user = jinja_literal(&self.user_prefix),
            asst = jinja_literal(&self.assistant_prefix),
            gen = jinja_literal(&self.generation_prompt),
        )
    }

    /// Compiles [`PlainTemplate::to_jinja`].
    pub fn compile(&self, special: &SpecialTokens) -> Result<ChatTemplate, TokenizerError> {
        ChatTemplate::new("builtin-plain", self.to_jinja(), special)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maze::{ChatFormat, RenderOptions, render_chat};

    fn maze_msgs() -> Vec<ChatMessage> {
        vec![
            ChatMessage::user("hi 'there'\\"),
            ChatMessage::assistant("N"),
            ChatMessage::user("again"),
        ]
    }

    #[test]
    fn builtin_templates_match_the_maze_renderer() {
        let special = SpecialTokens::default();
        let chatml = ChatTemplate::builtin_chatml(&special).unwrap();
        let plain = PlainTemplate::default().compile(&special).unwrap();
        for gen_prompt in [false, true] {
            let opts =
                RenderOptions { add_generation_prompt: gen_prompt, close_final_assistant: true };
            let args = ChatArgs::new(gen_prompt);
            assert_eq!(
                chatml.render_maze(&maze_msgs(), &args).unwrap(),
                render_chat(&maze_msgs(), ChatFormat::Chatml, opts)
            );
            assert_eq!(
                plain.render_maze(&maze_msgs(), &args).unwrap(),
                render_chat(&maze_msgs(), ChatFormat::Plain, opts)
            );
        }
        let think = chatml
            .render_maze(&maze_msgs()[..1], &ChatArgs::new(true).enable_thinking(false))
            .unwrap();
        assert!(think.ends_with("<|im_start|>assistant\n<think>\n\n</think>\n\n"), "{think}");
        let on = chatml
            .render_maze(&maze_msgs()[..1], &ChatArgs::new(true).enable_thinking(true))
            .unwrap();
        assert!(on.ends_with("<|im_start|>assistant\n"), "{on}");
    }

    #[test]
    fn plain_template_is_configurable_and_rejects_unknown_roles() {
        let t = PlainTemplate {
            system_prefix: "### ".into(),
            user_prefix: "Q: ".into(),
            assistant_prefix: "A: ".into(),
            separator: "\n\n".into(),
            generation_prompt: "A:".into(),
        };
        let c = t.compile(&SpecialTokens::default()).unwrap();
        let msgs = [Message::system("rules"), Message::user("x"), Message::assistant("y")];
        assert_eq!(
            c.render(&msgs, &ChatArgs::new(true)).unwrap(),
            "### rules\n\nQ: x\n\nA: y\n\nA:"
        );
        let err = c.render(&[Message::new("tool", "z")], &ChatArgs::new(false)).unwrap_err();
        assert!(err.to_string().contains("unsupported role tool"), "{err}");
    }

    #[test]
    fn special_tokens_and_python_methods_are_available() {
        let special = SpecialTokens {
            bos: Some("<s>".into()),
            eos: Some("</s>".into()),
            ..Default::default()
        };
        let src = "{{ bos_token }}{% for m in messages %}{{ m.content.strip().upper() }}{% if m.content.startswith(' a') %}!{% endif %}{% endfor %}{{ eos_token }}";
        let t = ChatTemplate::new("t", src.into(), &special).unwrap();
        assert_eq!(t.render(&[Message::user(" ab ")], &ChatArgs::default()).unwrap(), "<s>AB!</s>");
        let bad = ChatTemplate::new("broken", "{% if %}".into(), &special).unwrap_err();
        assert!(bad.to_string().contains("chat template `broken`"), "{bad}");
    }
}
