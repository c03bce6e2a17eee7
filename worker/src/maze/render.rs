//! The text the policy sees: the per-turn user message and whole conversations.
//!
//! The user message follows App. K of the paper verbatim:
//!
//! ```text
//! You are in a maze. Currently, you’re at location (50, 49). To the north there is 🧾; to the east there is 🗂; to the south there is 🗂; to the west there is 🧾. Where do you move? Output only N/E/S/W without punctuation.
//! ```
//!
//! After a wind turn it is prefixed with `A strong wind from the East blew you West! `. With
//! shuffling on, the four clauses come in a random order each turn; whichever comes first is
//! capitalised ("To the …"), the others are not (the paper does not say; this keeps the
//! sentence well formed).

use super::geom::{Dir, Pos};
use super::tiles::{Tile, TileMapping};
use serde::{Deserialize, Serialize};

/// Which apostrophe "you’re" uses. The paper's web edition shows the typographic one; whether
/// its code used a straight `'` is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Apostrophe {
    /// `’` (U+2019), as printed in the paper.
    #[default]
    Typographic,
    /// `'`.
    Straight,
}

impl Apostrophe {
    fn char(self) -> char {
        match self {
            Apostrophe::Typographic => '\u{2019}',
            Apostrophe::Straight => '\'',
        }
    }
}

/// What the agent is shown at the start of a turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    /// The agent's location.
    pub pos: Pos,
    /// The role of each neighbour, indexed like [`Dir::ALL`]. Cells off the grid (never
    /// reachable with the paper's sizes) are shown as Mold.
    pub neighbours: [Tile; 4],
    /// The order in which the clauses are listed.
    pub order: [Dir; 4],
    /// The displacement of the wind on the previous turn, if it blew.
    pub wind: Option<Dir>,
}

/// The wind announcement for a push in direction `blown`: the wind comes from the opposite side.
pub fn wind_sentence(blown: Dir) -> String {
    format!("A strong wind from the {} blew you {}!", blown.opposite().name(), blown.name())
}

/// The user message for one turn.
pub fn user_message(obs: &Observation, mapping: &TileMapping, apostrophe: Apostrophe) -> String {
    let mut text = String::with_capacity(256);
    if let Some(blown) = obs.wind {
        text.push_str(&wind_sentence(blown));
        text.push(' ');
    }
    text.push_str("You are in a maze. Currently, you");
    text.push(apostrophe.char());
    text.push_str(&format!("re at location ({}, {}). ", obs.pos.x, obs.pos.y));
    for (i, d) in obs.order.iter().enumerate() {
        if i > 0 {
            text.push_str("; t");
        } else {
            text.push('T');
        }
        text.push_str("o the ");
        text.push_str(d.lower_name());
        text.push_str(" there is ");
        text.push_str(mapping.symbol(obs.neighbours[d.index()]));
    }
    text.push_str(". Where do you move? Output only N/E/S/W without punctuation.");
    text
}

/// Who said a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
}

/// One chat message, serialised like the OpenAI/transformers `{"role", "content"}` format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
}

impl ChatMessage {
    pub fn user(content: impl Into<String>) -> Self {
        ChatMessage { role: Role::User, content: content.into() }
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        ChatMessage { role: Role::Assistant, content: content.into() }
    }
}

/// A conversation format. No system prompt is ever added (the paper uses none).
///
/// The model engine renders conversations with the model's own chat template; these two are
/// the formats the paper shows, used for inspection and for models without a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChatFormat {
    /// Qwen's ChatML: `<|im_start|>user\n…<|im_end|>\n<|im_start|>assistant\nN<|im_end|>\n`.
    #[default]
    Chatml,
    /// A plain dialogue for base models: `User: …\nAssistant: N\n` (the paper hints at this
    /// form for Qwen3-4B-Base but does not confirm it).
    Plain,
}

/// How a conversation is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenderOptions {
    /// Open an assistant turn at the end, ready for the model's move.
    pub add_generation_prompt: bool,
    /// Close the last message when it is the assistant's. Vector extraction reads the residual
    /// at the last move letter, so it renders without the final end-of-turn marker.
    pub close_final_assistant: bool,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions { add_generation_prompt: false, close_final_assistant: true }
    }
}

/// Renders a conversation as one string.
pub fn render_chat(messages: &[ChatMessage], format: ChatFormat, options: RenderOptions) -> String {
    let mut out = String::new();
    let last = messages.len().saturating_sub(1);
    for (i, m) in messages.iter().enumerate() {
        let open_end = i == last && m.role == Role::Assistant && !options.close_final_assistant;
        match (format, m.role) {
            (ChatFormat::Chatml, role) => {
                let role = if role == Role::User { "user" } else { "assistant" };
                out.push_str(&format!("<|im_start|>{role}\n{}", m.content));
                if !open_end {
                    out.push_str("<|im_end|>\n");
                }
            }
            (ChatFormat::Plain, Role::User) => out.push_str(&format!("User: {}\n", m.content)),
            (ChatFormat::Plain, Role::Assistant) => {
                out.push_str(&format!("Assistant: {}", m.content));
                if !open_end {
                    out.push('\n');
                }
            }
        }
    }
    if options.add_generation_prompt {
        out.push_str(match format {
            ChatFormat::Chatml => "<|im_start|>assistant\n",
            ChatFormat::Plain => "Assistant:",
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app_k_turn1() -> Observation {
        Observation {
            pos: Pos::new(50, 49),
            neighbours: [Tile::Path, Tile::Mold, Tile::Mold, Tile::Path],
            order: Dir::ALL,
            wind: None,
        }
    }

    #[test]
    fn user_message_is_verbatim_app_k() {
        // docs/protocol.md §1.6 [VERBATIM].
        assert_eq!(
            user_message(&app_k_turn1(), &TileMapping::office(), Apostrophe::Typographic),
            "You are in a maze. Currently, you’re at location (50, 49). To the north there is 🧾; \
             to the east there is 🗂; to the south there is 🗂; to the west there is 🧾. Where do \
             you move? Output only N/E/S/W without punctuation."
        );
        let straight = user_message(&app_k_turn1(), &TileMapping::office(), Apostrophe::Straight);
        assert!(straight.contains("you're at location"));
    }

    #[test]
    fn wind_prefix_and_shuffled_capitalisation() {
        let obs = Observation {
            wind: Some(Dir::W),
            order: [Dir::S, Dir::N, Dir::W, Dir::E],
            ..app_k_turn1()
        };
        let text = user_message(&obs, &TileMapping::office(), Apostrophe::Typographic);
        assert!(text.starts_with(
            "A strong wind from the East blew you West! You are in a maze. Currently, you’re at \
             location (50, 49). To the south there is 🗂; to the north there is 🧾; to the west \
             there is 🧾; to the east there is 🗂. Where do you move?"
        ));
        assert_eq!(wind_sentence(Dir::S), "A strong wind from the North blew you South!");
    }

    #[test]
    fn chatml_and_plain_rendering() {
        let msgs =
            [ChatMessage::user("hi"), ChatMessage::assistant("N"), ChatMessage::user("again")];
        let with_prompt = RenderOptions { add_generation_prompt: true, ..RenderOptions::default() };
        assert_eq!(
            render_chat(&msgs, ChatFormat::Chatml, with_prompt),
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nN<|im_end|>\n\
             <|im_start|>user\nagain<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(
            render_chat(&msgs, ChatFormat::Plain, with_prompt),
            "User: hi\nAssistant: N\nUser: again\nAssistant:"
        );
        let open = RenderOptions { add_generation_prompt: false, close_final_assistant: false };
        assert_eq!(
            render_chat(&msgs[..2], ChatFormat::Chatml, open),
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nN"
        );
        assert_eq!(render_chat(&msgs[..2], ChatFormat::Plain, open), "User: hi\nAssistant: N");
        let json = serde_json::to_string(&msgs[1]).unwrap();
        assert_eq!(json, r#"{"role":"assistant","content":"N"}"#);
    }
}
