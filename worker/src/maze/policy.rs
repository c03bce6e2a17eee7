//! Scripted policies: reference behaviour for statistics, demos and sanity checks (a language
//! model policy lives with the RL code).

use super::episode::Episode;
use super::geom::Dir;
use super::planner::best_plan;
use super::tiles::Tile;
use crate::rng::{Stream, WaxRng};
use serde::{Deserialize, Serialize};

/// Which scripted policy to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyKind {
    /// Replans the best windless continuation every turn ([`best_plan`]).
    Planner,
    /// Steps onto a neighbouring Gold if there is one, else Path, else anything; ties broken
    /// at random. A one-step lookahead baseline.
    Greedy,
    /// Uniformly random moves.
    Random,
    /// Always N — what an untrained model nearly does (docs/protocol.md §2.3).
    North,
}

impl PolicyKind {
    pub fn name(self) -> &'static str {
        match self {
            PolicyKind::Planner => "planner",
            PolicyKind::Greedy => "greedy",
            PolicyKind::Random => "random",
            PolicyKind::North => "north",
        }
    }
}

/// A scripted policy with its own random stream.
#[derive(Debug, Clone)]
pub struct ScriptedPolicy {
    kind: PolicyKind,
    rng: WaxRng,
}

impl ScriptedPolicy {
    pub fn new(kind: PolicyKind, seed: u64) -> Self {
        ScriptedPolicy { kind, rng: WaxRng::new(seed, Stream::Policy) }
    }

    /// The move for the episode's current state.
    pub fn choose(&mut self, episode: &Episode) -> Dir {
        match self.kind {
            PolicyKind::Planner => {
                let plan = best_plan(
                    episode.grid(),
                    episode.position(),
                    episode.turns_left(),
                    episode.config(),
                );
                plan.moves.first().copied().unwrap_or(Dir::N)
            }
            PolicyKind::Greedy => {
                let mapping = &episode.config().mapping;
                let neighbours = episode.observation().neighbours;
                let best = Tile::ALL
                    .into_iter()
                    .map(|t| mapping.reward(t))
                    .filter(|&r| neighbours.iter().any(|&n| mapping.reward(n) == r))
                    .fold(f64::NEG_INFINITY, f64::max);
                let options: Vec<Dir> = Dir::ALL
                    .into_iter()
                    .filter(|d| mapping.reward(neighbours[d.index()]) == best)
                    .collect();
                *self.rng.choose(&options).expect("at least one neighbour attains the maximum")
            }
            PolicyKind::Random => Dir::ALL[self.rng.index(4)],
            PolicyKind::North => Dir::N,
        }
    }

    /// Plays the episode to its end.
    pub fn play(&mut self, episode: &mut Episode) {
        while !episode.is_done() {
            let d = self.choose(episode);
            episode.step(d).expect("episode not done");
        }
    }
}
