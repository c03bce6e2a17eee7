//! Maze conversations for tokenizer training and measurement: played episodes (scripted
//! policies, wind and shuffling as configured) and synthetic extraction trajectories
//! (docs/protocol.md §3.1).

use super::TokenizerError;
use crate::maze::{
    ChatMessage, EnvConfig, Episode, Maze, MazeConfig, PolicyKind, ScriptedPolicy, SyntheticConfig,
    SyntheticGenerator,
};
use std::sync::Arc;

/// Which conversations to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct MazeTextConfig {
    /// Played episodes; maze `i` has seed `seed + i`. Policies alternate greedy and random.
    pub episodes: usize,
    /// Synthetic trajectories per final-tile class (0 for none).
    pub synthetic_per_class: usize,
    pub seed: u64,
    pub maze: MazeConfig,
    pub env: EnvConfig,
}

impl Default for MazeTextConfig {
    fn default() -> Self {
        MazeTextConfig {
            episodes: 200,
            synthetic_per_class: 20,
            seed: 1,
            maze: MazeConfig::default(),
            env: EnvConfig::default(),
        }
    }
}

/// Every conversation: played episodes first (complete, ending with the last move), then
/// synthetic trajectories (ending with the final move).
pub fn maze_conversations(cfg: &MazeTextConfig) -> Result<Vec<Vec<ChatMessage>>, TokenizerError> {
    let env = Arc::new(cfg.env.clone());
    let mut out = Vec::with_capacity(cfg.episodes + 3 * cfg.synthetic_per_class);
    for i in 0..cfg.episodes {
        let seed = cfg.seed.wrapping_add(i as u64);
        let maze =
            Maze::generate(&cfg.maze, seed).map_err(|e| TokenizerError::Maze(e.to_string()))?;
        let mut ep = Episode::new(&maze, env.clone(), seed)
            .map_err(|e| TokenizerError::Maze(e.to_string()))?;
        let kind = [PolicyKind::Greedy, PolicyKind::Random][i % 2];
        ScriptedPolicy::new(kind, seed).play(&mut ep);
        out.push(ep.messages());
    }
    if cfg.synthetic_per_class > 0 {
        let syn =
            SyntheticConfig { per_class: cfg.synthetic_per_class, ..SyntheticConfig::default() };
        let generator = SyntheticGenerator::new(syn, cfg.maze.clone(), cfg.env.clone())
            .map_err(|e| TokenizerError::Maze(e.to_string()))?;
        for t in generator {
            out.push(t.map_err(|e| TokenizerError::Maze(e.to_string()))?.messages);
        }
    }
    Ok(out)
}
