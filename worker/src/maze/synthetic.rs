//! Synthetic ("off-policy") trajectories for concept-vector extraction (docs/protocol.md §3.1).
//!
//! For each final-tile class and each index `i`, a trajectory of `n` moves is built in a fresh
//! maze: the first `n − 1` moves each step uniformly onto a neighbouring **Path** tile (melted
//! tiles are Mold, so the walk never doubles back), and the last move steps onto a neighbour of
//! the class's role. The final tile is then the only systematic difference between classes.
//!
//! - Lengths cycle through `min_len..=max_len` (1…15), so they are spread evenly.
//! - Final directions cycle through N, E, S, W and are required, so each class is exactly
//!   balanced (the paper only reports near balance; with `balance_final_direction = false` the
//!   last move is drawn uniformly among the suitable neighbours instead).
//! - Mazes come from the training generator with seeds `base_seed`, `base_seed + 1`, … (paper:
//!   474747), one per trajectory; a maze in which no walk is found is discarded and the next
//!   seed is tried. For Gold, a maze is discarded at once when no Gold tile lies at a Path
//!   distance `d ≤ n` with `d ≡ n (mod 2)`.
//! - Trajectories are produced index-major (`i = 0`: Mold, Gold, Path; `i = 1`: …), so asking
//!   for fewer per class yields a prefix of a larger request.
//! - Rendering replays the moves in a calm [`Episode`] (no wind; melting and clause shuffling
//!   as in the environment config), so the messages are exactly what a policy would see.

use super::episode::{EnvConfig, Episode};
use super::generate::{Maze, MazeConfig, MazeError};
use super::geom::{Dir, Pos};
use super::grid::Grid;
use super::render::ChatMessage;
use super::tiles::Tile;
use crate::rng::{Stream, WaxRng};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::Arc;

/// How synthetic trajectories are made. Defaults are the paper's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyntheticConfig {
    /// Trajectories per class (paper: 5000).
    pub per_class: usize,
    /// Seed of the first maze (paper: 474747).
    pub base_seed: u64,
    /// Shortest trajectory, in moves (paper: 1).
    pub min_len: u32,
    /// Longest trajectory, in moves (paper: 15).
    pub max_len: u32,
    /// Final-tile classes, in generation order.
    pub classes: Vec<Tile>,
    /// Require the final move to cycle through N, E, S, W.
    pub balance_final_direction: bool,
    /// Random walks tried in one maze before it is discarded.
    pub walk_attempts: u32,
    /// Mazes tried for one trajectory before giving up with an error.
    pub max_mazes_per_trajectory: u32,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        SyntheticConfig {
            per_class: 5000,
            base_seed: 474_747,
            min_len: 1,
            max_len: 15,
            classes: vec![Tile::Mold, Tile::Gold, Tile::Path],
            balance_final_direction: true,
            walk_attempts: 32,
            max_mazes_per_trajectory: 10_000,
        }
    }
}

/// A synthetic trajectory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyntheticTrajectory {
    /// Role of the final tile.
    pub class: Tile,
    /// Index within the class.
    pub index: usize,
    pub maze_seed: u64,
    /// The moves; the last one enters the class's tile.
    pub moves: Vec<Dir>,
    /// Start, then the position after each move.
    pub positions: Vec<Pos>,
    /// The conversation, ending with the final move (no generation prompt).
    pub messages: Vec<ChatMessage>,
}

impl SyntheticTrajectory {
    pub fn len(&self) -> usize {
        self.moves.len()
    }

    pub fn is_empty(&self) -> bool {
        self.moves.is_empty()
    }

    pub fn final_direction(&self) -> Dir {
        *self.moves.last().expect("a trajectory has at least one move")
    }
}

/// Why synthetic trajectories could not be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SyntheticError {
    #[error("synthetic.{field}: {why}")]
    Config { field: &'static str, why: String },
    #[error(transparent)]
    Maze(#[from] MazeError),
    #[error(
        "no {class} trajectory of {len} moves ending {dir} in {mazes} mazes from seed {first_seed}; \
         the maze config leaves too few such tiles near the start"
    )]
    Exhausted { class: Tile, len: u32, dir: String, mazes: u32, first_seed: u64 },
}

/// Counters of a generation run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SyntheticStats {
    pub trajectories: usize,
    pub mazes_generated: u64,
    pub mazes_rejected_early: u64,
    pub mazes_rejected_no_walk: u64,
}

impl SyntheticConfig {
    pub fn validate(&self) -> Result<(), SyntheticError> {
        let bad = |field, why: String| Err(SyntheticError::Config { field, why });
        if self.min_len == 0 || self.min_len > self.max_len {
            return bad(
                "min_len",
                format!("need 1 <= min_len <= max_len, got {}..={}", self.min_len, self.max_len),
            );
        }
        if self.classes.is_empty() {
            return bad("classes", "at least one class is needed".into());
        }
        if self.walk_attempts == 0 || self.max_mazes_per_trajectory == 0 {
            return bad(
                "walk_attempts",
                "walk_attempts and max_mazes_per_trajectory must be positive".into(),
            );
        }
        Ok(())
    }

    /// Length and required final direction of trajectory `index` of any class.
    pub fn target(&self, index: usize) -> (u32, Option<Dir>) {
        let span = (self.max_len - self.min_len + 1) as usize;
        let len = self.min_len + (index % span) as u32;
        (len, self.balance_final_direction.then(|| Dir::ALL[index % 4]))
    }
}

/// Produces the trajectories of a [`SyntheticConfig`] one by one.
pub struct SyntheticGenerator {
    config: SyntheticConfig,
    maze: MazeConfig,
    env: Arc<EnvConfig>,
    next_seed: u64,
    next: usize,
    stats: SyntheticStats,
}

impl SyntheticGenerator {
    /// Validates all three configs. The environment config supplies melting, shuffling and the
    /// mapping; its wind and turn count are ignored (trajectories are calm and of their own
    /// length).
    pub fn new(
        config: SyntheticConfig,
        maze: MazeConfig,
        env: EnvConfig,
    ) -> Result<Self, SyntheticError> {
        config.validate()?;
        maze.validate()?;
        env.validate().map_err(|e| SyntheticError::Config { field: "env", why: e.to_string() })?;
        let env = EnvConfig { wind_probability: 0.0, ..env };
        Ok(SyntheticGenerator {
            next_seed: config.base_seed,
            config,
            maze,
            env: Arc::new(env),
            next: 0,
            stats: SyntheticStats::default(),
        })
    }

    /// Total number of trajectories this generator yields.
    pub fn total(&self) -> usize {
        self.config.per_class * self.config.classes.len()
    }

    pub fn stats(&self) -> &SyntheticStats {
        &self.stats
    }

    fn make(&mut self, class: Tile, index: usize) -> Result<SyntheticTrajectory, SyntheticError> {
        let (len, dir) = self.config.target(index);
        let first_seed = self.next_seed;
        for _ in 0..self.config.max_mazes_per_trajectory {
            let seed = self.next_seed;
            self.next_seed = self.next_seed.wrapping_add(1);
            self.stats.mazes_generated += 1;
            let maze = Maze::generate(&self.maze, seed)?;
            if class == Tile::Gold && !gold_within(&maze.grid, maze.start, len) {
                self.stats.mazes_rejected_early += 1;
                continue;
            }
            let mut rng = WaxRng::new(seed, Stream::SyntheticWalk);
            let walk = (0..self.config.walk_attempts).find_map(|_| {
                random_walk(&maze.grid, maze.start, len, class, dir, self.env.melt, &mut rng)
            });
            let Some(moves) = walk else {
                self.stats.mazes_rejected_no_walk += 1;
                continue;
            };
            return Ok(self.render(class, index, &maze, moves));
        }
        Err(SyntheticError::Exhausted {
            class,
            len,
            dir: dir.map_or("anywhere".into(), |d| format!("with {d}")),
            mazes: self.config.max_mazes_per_trajectory,
            first_seed,
        })
    }

    fn render(
        &mut self,
        class: Tile,
        index: usize,
        maze: &Maze,
        moves: Vec<Dir>,
    ) -> SyntheticTrajectory {
        let env = Arc::new(EnvConfig { turns: moves.len() as u32, ..(*self.env).clone() });
        let mut ep = Episode::new(maze, env, maze.seed).expect("validated config");
        let mut positions = vec![maze.start];
        for &d in &moves {
            positions
                .push(ep.step_with_wind(d, None).expect("episode has exactly these turns").end);
        }
        debug_assert_eq!(ep.history().last().map(|t| t.entered_tiles[0]), Some(class));
        self.stats.trajectories += 1;
        SyntheticTrajectory {
            class,
            index,
            maze_seed: maze.seed,
            moves,
            positions,
            messages: ep.messages(),
        }
    }
}

impl Iterator for SyntheticGenerator {
    type Item = Result<SyntheticTrajectory, SyntheticError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.total() {
            return None;
        }
        let k = self.config.classes.len();
        let (index, class) = (self.next / k, self.config.classes[self.next % k]);
        self.next += 1;
        Some(self.make(class, index))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.total() - self.next;
        (left, Some(left))
    }
}

/// Whether some Gold lies at Path distance `d <= len` with `d ≡ len (mod 2)` from `start`.
fn gold_within(grid: &Grid, start: Pos, len: u32) -> bool {
    let mut depth = vec![u32::MAX; grid.width() * grid.height()];
    let idx = |p: Pos| p.y as usize * grid.width() + p.x as usize;
    depth[idx(start)] = 0;
    let mut queue = VecDeque::from([start]);
    while let Some(p) = queue.pop_front() {
        let dp = depth[idx(p)];
        if dp >= len {
            continue;
        }
        for d in Dir::ALL {
            let q = p.step(d);
            match grid.get(q) {
                Some(Tile::Gold) if (dp + 1) % 2 == len % 2 => return true,
                Some(Tile::Path) if depth[idx(q)] == u32::MAX => {
                    depth[idx(q)] = dp + 1;
                    queue.push_back(q);
                }
                _ => {}
            }
        }
    }
    false
}

/// One attempt: `len − 1` uniform steps onto Path, then a step onto `class` (in direction
/// `dir` when given). Visited cells count as Mold once left if `melt`.
fn random_walk(
    grid: &Grid,
    start: Pos,
    len: u32,
    class: Tile,
    dir: Option<Dir>,
    melt: bool,
    rng: &mut WaxRng,
) -> Option<Vec<Dir>> {
    let mut visited: Vec<Pos> = Vec::with_capacity(len as usize);
    let mut at = start;
    let tile = |p: Pos, at: Pos, visited: &[Pos]| {
        if melt && p != at && visited.contains(&p) { Some(Tile::Mold) } else { grid.get(p) }
    };
    let mut moves = Vec::with_capacity(len as usize);
    let mut options = Vec::with_capacity(4);
    for _ in 1..len {
        options.clear();
        options.extend(
            Dir::ALL.into_iter().filter(|&d| tile(at.step(d), at, &visited) == Some(Tile::Path)),
        );
        let &d = rng.choose(&options)?;
        visited.push(at);
        at = at.step(d);
        moves.push(d);
    }
    visited.push(at);
    let last = match dir {
        Some(d) => (tile(at.step(d), at, &visited) == Some(class)).then_some(d)?,
        None => {
            options.clear();
            options.extend(
                Dir::ALL.into_iter().filter(|&d| tile(at.step(d), at, &visited) == Some(class)),
            );
            *rng.choose(&options)?
        }
    };
    moves.push(last);
    Some(moves)
}
