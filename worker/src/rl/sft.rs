//! The SFT control's data (PROTOCOL.md §2.5): high-return trajectories in fresh mazes.
//!
//! Each turn the agent replans with the exact planner (`maze::best_plan`: branch and bound over
//! every move sequence of the remaining turns, with melting, on the current grid) and takes the
//! plan's first move; the wind then acts as in any episode. Without wind the result is an
//! optimal episode; with wind (10% of turns) replanning from wherever the gust left the agent
//! is optimal for the remaining calm turns, so the trajectories maximise Gold and avoid Mold as
//! well as any policy that cannot foresee the wind. The planner's values are windless, so a
//! planned route is never chosen for a gust it cannot know about.

use super::rollout::{Decision, Trajectory, TurnLayout};
use crate::maze::{Dir, EnvConfig, Episode, Maze, MazeConfig, Tile, best_plan};
use crate::tokenizer::Tokenizer;
use std::sync::Arc;

/// Plays one planner episode and lays it out as tokens. `old_logp` is 0 (not sampled).
pub fn planner_trajectory(
    maze: &Maze,
    env: &Arc<EnvConfig>,
    episode_seed: u64,
    tokenizer: &Tokenizer,
    layout: &TurnLayout,
) -> Result<Trajectory, String> {
    let mut ep = Episode::new(maze, env.clone(), episode_seed).map_err(|e| e.to_string())?;
    let mut t = Trajectory {
        maze_seed: maze.seed,
        episode_seed,
        group: 0,
        tokens: Vec::new(),
        decisions: Vec::new(),
        ret: 0.0,
        gold: 0,
        mold: 0,
        path: 0,
        truncated: false,
    };
    while !ep.is_done() {
        let plan = best_plan(ep.grid(), ep.position(), ep.turns_left(), env);
        let action = plan.moves.first().copied().unwrap_or(Dir::N);
        let seg = layout
            .segment(tokenizer, ep.turns_taken() + 1, &ep.user_message())
            .map_err(|e| e.to_string())?;
        t.tokens.extend_from_slice(&seg);
        let pos = t.tokens.len() - 1;
        t.tokens.push(layout.moves[action.index()]);
        let classes = ep.observation().neighbours.map(|x: Tile| x as i64);
        let rec = ep.step(action).map_err(|e| e.to_string())?;
        for tile in &rec.entered_tiles {
            match tile {
                Tile::Gold => t.gold += 1,
                Tile::Mold => t.mold += 1,
                Tile::Path => t.path += 1,
            }
        }
        t.ret += rec.reward;
        t.decisions.push(Decision {
            pos,
            action: action.index(),
            old_logp: 0.0,
            classes,
            reward: rec.reward,
        });
    }
    Ok(t)
}

/// `n` planner trajectories; trajectory `i` plays maze `maze_seed(i)` with episode seed
/// `episode_seed(i)`.
pub fn planner_dataset(
    n: usize,
    maze_cfg: &MazeConfig,
    env: &Arc<EnvConfig>,
    seeds: impl Fn(usize) -> (u64, u64),
    tokenizer: &Tokenizer,
    layout: &TurnLayout,
) -> Result<Vec<Trajectory>, String> {
    (0..n)
        .map(|i| {
            let (ms, es) = seeds(i);
            let maze = Maze::generate(maze_cfg, ms).map_err(|e| e.to_string())?;
            planner_trajectory(&maze, env, es, tokenizer, layout)
        })
        .collect()
}
