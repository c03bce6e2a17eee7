//! The paper's maze (docs/protocol.md §1): a 100 × 100 grid of office-emoji tiles, walked for 15
//! turns by a policy that sees only its coordinates and four neighbours.
//!
//! - [`generate`]: seeded maze generation ([`Maze::generate`]).
//! - [`episode`]: the dynamics — wind, melting, rewards — and the conversation.
//! - [`render`]: the exact prompt text and chat formats.
//! - [`tiles`]: tile roles and the tile-to-reward mapping (data, not code).
//! - [`planner`]: the exact best windless return from any state.
//! - [`policy`]: scripted policies (planner, greedy, random, always-North).
//! - [`synthetic`]: the off-policy trajectories used to extract concept vectors.
//! - [`stats`]: generation statistics.
//! - [`settings`]: the `[maze]`, `[env]`, `[synthetic]` settings file.

pub mod episode;
pub mod generate;
pub mod geom;
pub mod grid;
pub mod planner;
pub mod policy;
pub mod render;
pub mod settings;
pub mod stats;
pub mod synthetic;
pub mod tiles;

pub use episode::{EnvConfig, Episode, EpisodeError, TurnRecord};
pub use generate::{Maze, MazeConfig, MazeError};
pub use geom::{Dir, MoveParseError, MoveParsing, Pos, parse_move};
pub use grid::Grid;
pub use planner::{Plan, best_plan};
pub use policy::{PolicyKind, ScriptedPolicy};
pub use render::{
    Apostrophe, ChatFormat, ChatMessage, Observation, RenderOptions, Role, render_chat,
};
pub use settings::MazeSettings;
pub use synthetic::{SyntheticConfig, SyntheticGenerator, SyntheticTrajectory};
pub use tiles::{Tile, TileMapping, TileSpec};
