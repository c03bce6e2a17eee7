//! Maze generation (docs/protocol.md §1.1, App. J.1).
//!
//! 1. The whole grid starts as Mold (the outermost ring stays Mold for ever).
//! 2. From an interior cell drawn uniformly, a random walk of `L` steps turns every visited
//!    cell into Path. `L` is uniform on `[5·n, 15·n]` for an interior side `n` (490…1470 on the
//!    paper's 100 × 100 grid). The paper does not say how `L` is drawn; uniform is our reading.
//!    A step picks uniformly among the interior neighbours, so the walk never touches the ring.
//! 3. While the interior Mold fraction is at least `mold_fraction_max` (50 %), uniformly chosen
//!    interior Mold cells become Path, stopping at the largest Mold count strictly below it.
//!    If the fraction is below `mold_fraction_min` (10 %; unreachable with the paper's sizes),
//!    uniformly chosen Path cells become Mold until it is not.
//! 4. `max(gold_min, floor(gold_fraction · n_mold))` Gold tiles go on distinct Path cells drawn
//!    uniformly, `n_mold` counting interior Mold — so more Mold means more Gold.
//! 5. The start is the Path cell nearest the grid centre `(width/2, height/2)`, found by
//!    breadth-first search that expands neighbours in the order N, E, S, W.
//!
//! Every draw comes from the maze seed's [`Stream::MazeLayout`]; the same seed and config
//! always give the same maze.

use super::geom::{Dir, Pos};
use super::grid::Grid;
use super::tiles::Tile;
use crate::rng::{Stream, WaxRng};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// How mazes are generated. Defaults are the paper's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MazeConfig {
    /// Grid width including the Mold ring (paper: 100).
    pub width: usize,
    /// Grid height including the Mold ring (paper: 100).
    pub height: usize,
    /// Random-walk length range as multiples of the interior width: `[5, 15]` → 490…1470.
    pub walk_length_factor: [f64; 2],
    /// Flip Mold to Path until the interior Mold fraction is below this (paper: 0.5).
    pub mold_fraction_max: f64,
    /// …and at least this (paper: 0.1).
    pub mold_fraction_min: f64,
    /// Gold count as a fraction of interior Mold cells (paper: 0.20).
    pub gold_fraction: f64,
    /// At least this many Gold tiles (paper: 1).
    pub gold_min: usize,
}

impl Default for MazeConfig {
    fn default() -> Self {
        MazeConfig {
            width: 100,
            height: 100,
            walk_length_factor: [5.0, 15.0],
            mold_fraction_max: 0.5,
            mold_fraction_min: 0.1,
            gold_fraction: 0.20,
            gold_min: 1,
        }
    }
}

/// A maze config that cannot generate mazes, or a maze that could not be generated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MazeError {
    #[error("maze.{field}: {why}")]
    Config { field: &'static str, why: String },
    #[error(
        "maze seed {seed}: {gold} Gold tiles do not fit on {path} Path cells (one must stay free for the start)"
    )]
    TooMuchGold { seed: u64, gold: usize, path: usize },
}

impl MazeConfig {
    /// Checks every field; the error names the offending one.
    pub fn validate(&self) -> Result<(), MazeError> {
        let bad = |field, why: String| Err(MazeError::Config { field, why });
        if self.width < 3 || self.height < 3 {
            return bad(
                "width",
                format!("grid must be at least 3 x 3, got {} x {}", self.width, self.height),
            );
        }
        if self.width > 4096 || self.height > 4096 {
            return bad("width", "grid larger than 4096 x 4096".into());
        }
        let [lo, hi] = self.walk_length_factor;
        if !(lo.is_finite() && hi.is_finite() && 0.0 <= lo && lo <= hi) {
            return bad("walk_length_factor", format!("need 0 <= min <= max, got [{lo}, {hi}]"));
        }
        if !(0.0 < self.mold_fraction_max && self.mold_fraction_max <= 1.0) {
            return bad(
                "mold_fraction_max",
                format!("must be in (0, 1], got {}", self.mold_fraction_max),
            );
        }
        if !(0.0 <= self.mold_fraction_min && self.mold_fraction_min < self.mold_fraction_max) {
            return bad(
                "mold_fraction_min",
                format!("must be in [0, mold_fraction_max), got {}", self.mold_fraction_min),
            );
        }
        if !(0.0..=1.0).contains(&self.gold_fraction) {
            return bad("gold_fraction", format!("must be in [0, 1], got {}", self.gold_fraction));
        }
        Ok(())
    }

    fn interior_width(&self) -> usize {
        self.width - 2
    }

    /// The inclusive range of random-walk lengths.
    pub fn walk_length_range(&self) -> (u64, u64) {
        let n = self.interior_width() as f64;
        let [lo, hi] = self.walk_length_factor;
        ((lo * n).round() as u64, (hi * n).round() as u64)
    }
}

/// A generated maze: the grid in its initial state and the start cell.
#[derive(Debug, Clone, PartialEq)]
pub struct Maze {
    pub seed: u64,
    pub grid: Grid,
    pub start: Pos,
    /// Length of the carving random walk, for statistics.
    pub walk_length: u64,
}

impl Maze {
    /// Generates the maze for `seed`.
    pub fn generate(config: &MazeConfig, seed: u64) -> Result<Maze, MazeError> {
        config.validate()?;
        let mut rng = WaxRng::new(seed, Stream::MazeLayout);
        let mut grid = Grid::filled(config.width, config.height, Tile::Mold);
        let (iw, ih) = (config.width - 2, config.height - 2);

        // 2. Carve Path with a random walk that stays in the interior.
        let (lo, hi) = config.walk_length_range();
        let walk_length = rng.inclusive(lo, hi);
        let mut at = Pos::new(1 + rng.index(iw) as i32, 1 + rng.index(ih) as i32);
        grid.set(at, Tile::Path);
        let mut options = Vec::with_capacity(4);
        for _ in 0..walk_length {
            options.clear();
            options
                .extend(Dir::ALL.into_iter().map(|d| at.step(d)).filter(|&p| grid.is_interior(p)));
            match rng.choose(&options) {
                Some(&next) => at = next,
                None => break, // a 1 x 1 interior: nowhere to go
            }
            grid.set(at, Tile::Path);
        }

        // 3. Bring the interior Mold fraction into [min, max).
        let interior = grid.interior_len();
        let max_mold =
            ((config.mold_fraction_max * interior as f64).ceil() as usize).saturating_sub(1);
        let min_mold = (config.mold_fraction_min * interior as f64).ceil() as usize;
        let mut mold: Vec<Pos> =
            grid.interior_positions().filter(|&p| grid.get(p) == Some(Tile::Mold)).collect();
        if mold.len() > max_mold {
            let flip = mold.len() - max_mold;
            for &p in rng.sample_front(&mut mold, flip).iter() {
                grid.set(p, Tile::Path);
            }
        } else if mold.len() < min_mold {
            let mut path: Vec<Pos> =
                grid.interior_positions().filter(|&p| grid.get(p) == Some(Tile::Path)).collect();
            let flip = (min_mold - mold.len()).min(path.len().saturating_sub(1));
            for &p in rng.sample_front(&mut path, flip).iter() {
                grid.set(p, Tile::Mold);
            }
        }

        // 4. Gold on Path, in proportion to the interior Mold.
        let [_, n_mold, _] = grid.interior_counts();
        let gold = config.gold_min.max((config.gold_fraction * n_mold as f64).floor() as usize);
        let mut path: Vec<Pos> =
            grid.interior_positions().filter(|&p| grid.get(p) == Some(Tile::Path)).collect();
        if gold >= path.len() {
            return Err(MazeError::TooMuchGold { seed, gold, path: path.len() });
        }
        for &p in rng.sample_front(&mut path, gold).iter() {
            grid.set(p, Tile::Gold);
        }

        // 5. Start on the Path cell nearest the centre.
        let start =
            nearest_path(&grid, Pos::new((config.width / 2) as i32, (config.height / 2) as i32))
                .expect("at least one Path cell remains after Gold placement");
        Ok(Maze { seed, grid, start, walk_length })
    }
}

/// Breadth-first search from `from` over the whole grid (expanding N, E, S, W) for the first
/// Path cell.
pub fn nearest_path(grid: &Grid, from: Pos) -> Option<Pos> {
    let mut seen = vec![false; grid.width() * grid.height()];
    let idx = |p: Pos| p.y as usize * grid.width() + p.x as usize;
    let mut queue = VecDeque::from([from]);
    seen[idx(from)] = true;
    while let Some(p) = queue.pop_front() {
        if grid.get(p) == Some(Tile::Path) {
            return Some(p);
        }
        for d in Dir::ALL {
            let q = p.step(d);
            if grid.contains(q) && !seen[idx(q)] {
                seen[idx(q)] = true;
                queue.push_back(q);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_sizes() {
        let c = MazeConfig::default();
        assert_eq!(c.walk_length_range(), (490, 1470));
        let m = Maze::generate(&c, 1).unwrap();
        let [path, mold, gold] = m.grid.interior_counts();
        assert_eq!(path + mold + gold, 98 * 98);
        // The walk covers at most 1471 of 9604 cells, so flipping always runs and stops at
        // the largest Mold count below 50 %: 4801.
        assert_eq!(mold, 4801);
        assert_eq!(gold, 960);
        assert!((490..=1470).contains(&m.walk_length));
    }

    #[test]
    fn nearest_path_prefers_north_on_ties() {
        let (g, _) = Grid::from_ascii(
            "
            #####
            #...#
            #.#.#
            #.@.#
            #####
            ",
        )
        .unwrap();
        // From (2, 2) — a Mold cell — the N, E, S, W neighbours are (2,1), (3,2), (2,3), (1,2);
        // all Path, so N wins.
        assert_eq!(nearest_path(&g, Pos::new(2, 2)), Some(Pos::new(2, 1)));
    }

    #[test]
    fn invalid_configs_name_the_field() {
        let mut c = MazeConfig { gold_fraction: 1.5, ..MazeConfig::default() };
        assert!(Maze::generate(&c, 0).unwrap_err().to_string().starts_with("maze.gold_fraction"));
        c = MazeConfig { width: 2, ..MazeConfig::default() };
        assert!(c.validate().unwrap_err().to_string().contains("at least 3 x 3"));
        c = MazeConfig { walk_length_factor: [3.0, 1.0], ..MazeConfig::default() };
        assert!(c.validate().unwrap_err().to_string().contains("walk_length_factor"));
        c = MazeConfig { mold_fraction_min: 0.6, ..MazeConfig::default() };
        assert!(c.validate().unwrap_err().to_string().contains("mold_fraction_min"));
        // Tiny grid with Gold everywhere: refused with the seed.
        c = MazeConfig {
            width: 3,
            height: 3,
            gold_fraction: 1.0,
            gold_min: 5,
            ..MazeConfig::default()
        };
        assert!(matches!(Maze::generate(&c, 9), Err(MazeError::TooMuchGold { seed: 9, .. })));
    }
}
