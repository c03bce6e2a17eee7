//! One episode in a maze: dynamics, rewards and the conversation (docs/protocol.md §1.3–1.8).
//!
//! A turn, for a chosen direction `d` from position `p`:
//! 1. the agent enters `p + d`; the tile it left (`p`) melts into Mold;
//! 2. with probability `wind_probability` the wind then pushes it one more cell in a uniformly
//!    drawn direction (possibly straight back onto the melted tile); the intermediate cell melts
//!    too (`melt_wind_intermediate`; App. K's Table 25 shows it melted);
//! 3. the turn's reward is `step_reward + Σ reward(entered tile)` over the one or two cells
//!    entered; entering Gold consumes it (the cell is Path until the agent leaves and it melts);
//! 4. the next user message announces the wind, if it blew.
//!
//! An episode lasts exactly `turns` turns (15 in the paper); the return is the undiscounted sum
//! of turn rewards. A move off the grid — impossible with the paper's sizes, where the Mold
//! ring is 49 cells from the start and an episode moves at most 30 — leaves the agent in place,
//! enters nothing and melts nothing.
//!
//! Wind draws two numbers every turn, whether or not it blows, so the wind schedule depends on
//! the episode seed alone and not on the actions: rollouts of one group that share a seed meet
//! the same weather.

use super::generate::Maze;
use super::geom::{Dir, Pos};
use super::grid::Grid;
use super::render::{self, Apostrophe, ChatMessage, Observation};
use super::tiles::{Tile, TileMapping};
use crate::rng::{Stream, WaxRng};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Episode rules. Defaults are the paper's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnvConfig {
    /// Turns per episode (paper: 15; GPT-OSS: 11).
    pub turns: u32,
    /// Probability of wind on each turn (paper: 0.1).
    pub wind_probability: f64,
    /// Tiles the agent leaves become Mold (paper: on).
    pub melt: bool,
    /// On a wind turn, the tile reached by the chosen move melts too (paper: not stated; its
    /// worked rollout shows it melted).
    pub melt_wind_intermediate: bool,
    /// List the four neighbour clauses in a random order each turn (paper: on in training).
    pub shuffle_directions: bool,
    /// Reward charged every turn whatever the tile (paper: −0.1).
    pub step_reward: f64,
    /// Symbols and rewards of the tile roles (paper: `"office"`).
    pub mapping: TileMapping,
    /// The apostrophe in "you’re".
    pub apostrophe: Apostrophe,
}

impl Default for EnvConfig {
    fn default() -> Self {
        EnvConfig {
            turns: 15,
            wind_probability: 0.1,
            melt: true,
            melt_wind_intermediate: true,
            shuffle_directions: true,
            step_reward: -0.1,
            mapping: TileMapping::office(),
            apostrophe: Apostrophe::Typographic,
        }
    }
}

/// Invalid episode rules, or a step the episode cannot take.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EpisodeError {
    #[error("env.{field}: {why}")]
    Config { field: &'static str, why: String },
    #[error("the episode is over after {turns} turns; no further moves are accepted")]
    Finished { turns: u32 },
}

impl EnvConfig {
    /// Checks every field; the error names the offending one.
    pub fn validate(&self) -> Result<(), EpisodeError> {
        let bad = |field, why: String| Err(EpisodeError::Config { field, why });
        if self.turns == 0 || self.turns > 10_000 {
            return bad("turns", format!("must be in 1..=10000, got {}", self.turns));
        }
        if !(0.0..=1.0).contains(&self.wind_probability) {
            return bad(
                "wind_probability",
                format!("must be in [0, 1], got {}", self.wind_probability),
            );
        }
        if !self.step_reward.is_finite() {
            return bad("step_reward", format!("must be finite, got {}", self.step_reward));
        }
        self.mapping
            .validate()
            .map_err(|e| EpisodeError::Config { field: "mapping", why: e.to_string() })
    }
}

/// What happened on one turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TurnRecord {
    /// 1-based turn number.
    pub turn: u32,
    /// What the agent was shown before choosing.
    pub observation: Observation,
    /// The chosen move.
    pub action: Dir,
    /// The wind's push after the move, if it blew.
    pub wind: Option<Dir>,
    /// Cells entered this turn, in order (one, or two on a wind turn; none if blocked).
    pub entered: Vec<Pos>,
    /// Their roles at the moment of entering.
    pub entered_tiles: Vec<Tile>,
    /// Position at the end of the turn.
    pub end: Pos,
    /// Gold consumed this turn (Δg) and Mold entered (Δℓ).
    pub gold: u32,
    pub mold: u32,
    /// `step_reward + Σ reward(entered)`.
    pub reward: f64,
    /// Return so far, this turn included.
    pub cumulative: f64,
}

/// An episode in progress.
#[derive(Debug, Clone)]
pub struct Episode {
    config: Arc<EnvConfig>,
    grid: Grid,
    pos: Pos,
    /// The cell the agent left last (already melted), for planners.
    left: Option<Pos>,
    wind_rng: WaxRng,
    order_rng: WaxRng,
    observation: Observation,
    history: Vec<TurnRecord>,
    total: f64,
    maze_seed: u64,
    episode_seed: u64,
}

impl Episode {
    /// Starts an episode on `maze` whose wind and clause order come from `episode_seed`.
    pub fn new(
        maze: &Maze,
        config: Arc<EnvConfig>,
        episode_seed: u64,
    ) -> Result<Episode, EpisodeError> {
        Episode::from_grid(maze.grid.clone(), maze.start, config, maze.seed, episode_seed)
    }

    /// Starts an episode on any grid (hand-drawn layouts, tests, replays).
    pub fn from_grid(
        grid: Grid,
        start: Pos,
        config: Arc<EnvConfig>,
        maze_seed: u64,
        episode_seed: u64,
    ) -> Result<Episode, EpisodeError> {
        config.validate()?;
        let mut episode = Episode {
            grid,
            pos: start,
            left: None,
            wind_rng: WaxRng::new(episode_seed, Stream::Wind),
            order_rng: WaxRng::new(episode_seed, Stream::ClauseOrder),
            observation: Observation {
                pos: start,
                neighbours: [Tile::Mold; 4],
                order: Dir::ALL,
                wind: None,
            },
            history: Vec::with_capacity(config.turns as usize),
            total: 0.0,
            maze_seed,
            episode_seed,
            config,
        };
        episode.observation = episode.observe(None);
        Ok(episode)
    }

    fn observe(&mut self, wind: Option<Dir>) -> Observation {
        let mut order = Dir::ALL;
        if self.config.shuffle_directions {
            self.order_rng.shuffle(&mut order);
        }
        let neighbours = self.grid.neighbours(self.pos).map(|t| t.unwrap_or(Tile::Mold));
        Observation { pos: self.pos, neighbours, order, wind }
    }

    pub fn config(&self) -> &EnvConfig {
        &self.config
    }

    /// The grid as it is now (melted and consumed tiles included).
    pub fn grid(&self) -> &Grid {
        &self.grid
    }

    pub fn position(&self) -> Pos {
        self.pos
    }

    /// The cell the agent left most recently, if any.
    pub fn last_left(&self) -> Option<Pos> {
        self.left
    }

    pub fn maze_seed(&self) -> u64 {
        self.maze_seed
    }

    pub fn episode_seed(&self) -> u64 {
        self.episode_seed
    }

    /// Turns taken so far.
    pub fn turns_taken(&self) -> u32 {
        self.history.len() as u32
    }

    pub fn turns_left(&self) -> u32 {
        self.config.turns - self.turns_taken()
    }

    pub fn is_done(&self) -> bool {
        self.turns_left() == 0
    }

    /// Undiscounted return so far.
    pub fn total_return(&self) -> f64 {
        self.total
    }

    pub fn history(&self) -> &[TurnRecord] {
        &self.history
    }

    /// What the agent is shown now (after the last turn: the state it ended in).
    pub fn observation(&self) -> &Observation {
        &self.observation
    }

    /// The user message for the current turn.
    pub fn user_message(&self) -> String {
        render::user_message(&self.observation, &self.config.mapping, self.config.apostrophe)
    }

    /// Takes one turn, with the wind drawn from the episode's seed.
    pub fn step(&mut self, action: Dir) -> Result<&TurnRecord, EpisodeError> {
        if self.is_done() {
            return Err(EpisodeError::Finished { turns: self.config.turns });
        }
        let blows = self.wind_rng.unit() < self.config.wind_probability;
        let direction = Dir::ALL[self.wind_rng.index(4)];
        self.step_with_wind(action, blows.then_some(direction))
    }

    /// Takes one turn with a given wind (`None`: calm). For replays and scripted tests; an
    /// episode driven this way never touches its wind stream.
    pub fn step_with_wind(
        &mut self,
        action: Dir,
        wind: Option<Dir>,
    ) -> Result<&TurnRecord, EpisodeError> {
        if self.is_done() {
            return Err(EpisodeError::Finished { turns: self.config.turns });
        }
        let mut entered = Vec::with_capacity(2);
        let mut entered_tiles = Vec::with_capacity(2);
        let (mut gold, mut mold) = (0, 0);
        let mut reward = self.config.step_reward;
        let mut moved_by_wind = None;
        for (i, d) in std::iter::once(action).chain(wind).enumerate() {
            let from = self.pos;
            let to = from.step(d);
            let Some(tile) = self.grid.get(to) else { continue };
            let melts = self.config.melt
                && (i == 0 || self.config.melt_wind_intermediate || entered.is_empty());
            if melts {
                self.grid.set(from, Tile::Mold);
            }
            match tile {
                Tile::Gold => {
                    gold += 1;
                    self.grid.set(to, Tile::Path);
                }
                Tile::Mold => mold += 1,
                Tile::Path => {}
            }
            reward += self.config.mapping.reward(tile);
            entered.push(to);
            entered_tiles.push(tile);
            self.left = Some(from);
            self.pos = to;
            if i == 1 {
                moved_by_wind = Some(d);
            }
        }
        self.total += reward;
        let record = TurnRecord {
            turn: self.turns_taken() + 1,
            observation: self.observation.clone(),
            action,
            wind,
            entered,
            entered_tiles,
            end: self.pos,
            gold,
            mold,
            reward,
            cumulative: self.total,
        };
        self.history.push(record);
        self.observation = self.observe(moved_by_wind);
        Ok(self.history.last().expect("just pushed"))
    }

    /// The conversation so far: for every turn taken, the user message and the move; then,
    /// unless the episode is over, the pending user message.
    pub fn messages(&self) -> Vec<ChatMessage> {
        let cfg = &self.config;
        let mut out = Vec::with_capacity(2 * self.history.len() + 1);
        for t in &self.history {
            out.push(ChatMessage::user(render::user_message(
                &t.observation,
                &cfg.mapping,
                cfg.apostrophe,
            )));
            out.push(ChatMessage::assistant(t.action.letter().to_string()));
        }
        if !self.is_done() {
            out.push(ChatMessage::user(self.user_message()));
        }
        out
    }
}
