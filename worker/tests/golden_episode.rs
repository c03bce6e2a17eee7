//! Pins the exact text of a seeded episode. The golden file is the ChatML conversation of maze
//! 12 played by the planner (its fifth turn is windy); `wax maze sample --seed 12` prints the
//! same bytes. Regenerate deliberately with `WAX_UPDATE_GOLDEN=1 cargo test -p wax-worker
//! --test golden_episode` and review the diff: any change alters what every model sees.

use std::sync::Arc;
use wax_worker::maze::{
    ChatFormat, EnvConfig, Episode, Maze, MazeConfig, PolicyKind, RenderOptions, Role,
    ScriptedPolicy, render_chat,
};

const SEED: u64 = 12;
const GOLDEN: &str = "tests/golden/maze12_planner.chatml";

fn episode() -> Episode {
    let maze = Maze::generate(&MazeConfig::default(), SEED).unwrap();
    let mut ep = Episode::new(&maze, Arc::new(EnvConfig::default()), SEED).unwrap();
    ScriptedPolicy::new(PolicyKind::Planner, SEED).play(&mut ep);
    ep
}

#[test]
fn seeded_episode_renders_exactly_as_pinned() {
    let text = render_chat(&episode().messages(), ChatFormat::Chatml, RenderOptions::default());
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(GOLDEN);
    if std::env::var_os("WAX_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    let golden = std::fs::read_to_string(&path).expect("golden file exists");
    assert_eq!(text, golden, "rendered episode differs from {GOLDEN}");
}

/// The golden text follows docs/protocol.md §1.6 line by line: alternating ChatML user and
/// assistant blocks, no system prompt, every user message built from the verbatim template, every
/// assistant message one move letter.
#[test]
fn golden_text_follows_the_protocol_format() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(GOLDEN);
    let golden = std::fs::read_to_string(path).unwrap();
    let blocks: Vec<&str> = golden.split_terminator("<|im_end|>\n").collect();
    assert_eq!(blocks.len(), 30, "15 user + 15 assistant messages");
    let mut winds = 0;
    for (i, block) in blocks.iter().enumerate() {
        if i % 2 == 1 {
            let letter = block.strip_prefix("<|im_start|>assistant\n").expect("assistant block");
            assert!(["N", "E", "S", "W"].contains(&letter), "{letter:?}");
            continue;
        }
        let mut msg = block.strip_prefix("<|im_start|>user\n").expect("user block");
        if let Some(rest) = msg.strip_prefix("A strong wind from the ") {
            winds += 1;
            let (from, rest) = rest.split_once(" blew you ").unwrap();
            let (to, rest) = rest.split_once("! ").unwrap();
            let opposite =
                [("North", "South"), ("South", "North"), ("East", "West"), ("West", "East")];
            assert!(opposite.contains(&(from, to)), "{from} → {to}");
            msg = rest;
        }
        let rest = msg.strip_prefix("You are in a maze. Currently, you’re at location (").unwrap();
        let (coords, rest) = rest.split_once("). ").unwrap();
        let (x, y) = coords.split_once(", ").unwrap();
        assert!(x.parse::<u32>().is_ok() && y.parse::<u32>().is_ok(), "{coords}");
        let clauses = rest
            .strip_suffix(". Where do you move? Output only N/E/S/W without punctuation.")
            .unwrap();
        let clauses: Vec<&str> = clauses.split("; ").collect();
        assert_eq!(clauses.len(), 4);
        let mut dirs = Vec::new();
        for (j, c) in clauses.iter().enumerate() {
            let c = c.strip_prefix(if j == 0 { "To the " } else { "to the " }).unwrap();
            let (dir, symbol) = c.split_once(" there is ").unwrap();
            assert!(["🧾", "🗂", "📐"].contains(&symbol), "{symbol}");
            dirs.push(dir);
        }
        dirs.sort();
        assert_eq!(dirs, ["east", "north", "south", "west"]);
    }
    assert!(winds >= 1, "the pinned episode includes a wind turn");
    let roles: Vec<Role> = episode().messages().iter().map(|m| m.role).collect();
    assert_eq!(roles.len(), 30);
}
