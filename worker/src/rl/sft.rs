//! The SFT control's data (docs/protocol.md §2.5): high-return trajectories in fresh mazes.
//!
//! Each turn the agent replans with the exact planner (`maze::best_plan`: branch and bound over
//! every move sequence of the remaining turns, with melting, on the current grid) and takes the
//! plan's first move; the wind then acts as in any episode. Without wind the result is an
//! optimal episode; with wind (10% of turns) replanning from wherever the gust left the agent
//! is optimal for the remaining calm turns, so the trajectories maximise Gold and avoid Mold as
//! well as any policy that cannot foresee the wind. The planner's values are windless, so a
//! planned route is never chosen for a gust it cannot know about.

use super::rollout::{Trajectory, TurnLayout};
use crate::maze::{Dir, EnvConfig, Episode, Maze, MazeConfig, best_plan};
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
    let mut t = Trajectory::new(maze.seed, episode_seed, 0);
    while !ep.is_done() {
        let plan = best_plan(ep.grid(), ep.position(), ep.turns_left(), env);
        let action = plan.moves.first().copied().unwrap_or(Dir::N);
        let seg = layout
            .segment(tokenizer, ep.turns_taken() + 1, &ep.user_message())
            .map_err(|e| e.to_string())?;
        t.take_turn(&mut ep, &seg, layout.moves[action.index()], action.index(), 0.0)?;
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
