//! The best windless return from any state, found exactly by branch and bound.
//!
//! Wind is random, so "best return" means the best return if no wind blows: the optimum of a
//! deterministic problem — choose `k` moves maximising `Σ reward`, where melting and Gold
//! consumption make revisits worthless. Under wind, [`PlannerPolicy`](super::policy) replans
//! after every turn (receding horizon), which is the natural near-optimal controller: with
//! wind on 10 % of turns, most plans run as computed.
//!
//! **Bound.** Tiles only ever change into Path (consumed Gold) or Mold (melted), so the most a
//! cell can ever be worth is `ub(c) = max` of the rewards of the roles it can still take. A
//! dynamic program over (cell, arrival direction, turns left) maximises `Σ ub` over walks,
//! except that stepping straight back onto the cell just left is valued as what it certainly
//! is — Mold when melting is on. That table, computed once per call on the cells within reach,
//! bounds every node of the search (tiles only get worse as the search goes deeper), and kills
//! the cheap two-cell oscillations that make a plain relaxation useless. Children are searched
//! best bound first, so the first descent is already good and the rest is pruned.
//!
//! The result is exact (tests compare it with brute force over the real [`Episode`]
//! dynamics), for any mapping, melting on or off.
//!
//! [`Episode`]: super::episode::Episode

use super::episode::EnvConfig;
use super::geom::{Dir, Pos};
use super::grid::Grid;
use super::tiles::Tile;

/// A best windless continuation.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The moves, first to last (empty when no turns are left).
    pub moves: Vec<Dir>,
    /// Their windless return, step rewards included.
    pub value: f64,
    /// Search nodes expanded (for benchmarks).
    pub nodes: u64,
}

/// Cell states inside the search window.
const OFF: u8 = 3;

/// The search window: the cells within `turns` steps of the root, stored in a square.
struct Window {
    side: i32,
    origin: Pos,
    cells: Vec<u8>,
}

impl Window {
    fn new(grid: &Grid, root: Pos, radius: i32) -> Window {
        let side = 2 * radius + 1;
        let origin = Pos::new(root.x - radius, root.y - radius);
        let mut cells = vec![OFF; (side * side) as usize];
        for dy in 0..side {
            for dx in 0..side {
                if let Some(t) = grid.get(Pos::new(origin.x + dx, origin.y + dy)) {
                    cells[(dy * side + dx) as usize] = t as u8;
                }
            }
        }
        Window { side, origin, cells }
    }

    fn index(&self, p: Pos) -> usize {
        ((p.y - self.origin.y) * self.side + (p.x - self.origin.x)) as usize
    }
}

fn tile_of(code: u8) -> Tile {
    match code {
        0 => Tile::Path,
        1 => Tile::Mold,
        _ => Tile::Gold,
    }
}

/// Arrival states: the direction of the last move, or none (root, or after blocked moves
/// from the root).
const ARRIVALS: usize = 5;
fn arrival(came: Option<Dir>) -> usize {
    came.map_or(4, Dir::index)
}

struct Search<'a> {
    cfg: &'a EnvConfig,
    win: Window,
    root: Pos,
    radius: i32,
    /// `bound[k][cell * ARRIVALS + arrival]`: the most `k` more turns can earn (step rewards
    /// included), for cells within `radius - k` of the root.
    bound: Vec<Vec<f64>>,
    path: Vec<Dir>,
    best: f64,
    best_moves: Vec<Dir>,
    nodes: u64,
}

impl<'a> Search<'a> {
    fn new(grid: &Grid, root: Pos, turns: u32, cfg: &'a EnvConfig) -> Search<'a> {
        let radius = turns as i32;
        let win = Window::new(grid, root, radius);
        let mut s = Search {
            cfg,
            win,
            root,
            radius,
            bound: Vec::new(),
            path: Vec::with_capacity(turns as usize),
            best: f64::NEG_INFINITY,
            best_moves: Vec::new(),
            nodes: 0,
        };
        s.fill_bounds();
        s
    }

    /// The most a cell in state `code` can ever be worth from now on.
    fn upper_value(&self, code: u8) -> f64 {
        let m = &self.cfg.mapping;
        let mut v = m.reward(tile_of(code));
        if code == Tile::Gold as u8 {
            v = v.max(m.reward(Tile::Path));
        }
        if self.cfg.melt {
            v = v.max(m.reward(Tile::Mold));
        }
        v
    }

    /// Value of stepping back onto the cell just left (certain when melting is on).
    fn back_value(&self, code: u8) -> f64 {
        if self.cfg.melt { self.cfg.mapping.reward(Tile::Mold) } else { self.upper_value(code) }
    }

    fn fill_bounds(&mut self) {
        let n = self.win.cells.len();
        let mut bound = vec![vec![0.0; n * ARRIVALS]];
        for k in 1..=self.radius {
            let reach = self.radius - k;
            let prev = &bound[(k - 1) as usize];
            let mut cur = vec![f64::NEG_INFINITY; n * ARRIVALS];
            for dy in -reach..=reach {
                let span = reach - dy.abs();
                for dx in -span..=span {
                    let c = Pos::new(self.root.x + dx, self.root.y + dy);
                    let ci = self.win.index(c);
                    if self.win.cells[ci] == OFF {
                        continue;
                    }
                    for came in [None, Some(Dir::N), Some(Dir::E), Some(Dir::S), Some(Dir::W)] {
                        let mut best = f64::NEG_INFINITY;
                        for d in Dir::ALL {
                            let t = c.step(d);
                            let ti = self.win.index(t);
                            let code = self.win.cells[ti];
                            let v = if code == OFF {
                                prev[ci * ARRIVALS + arrival(came)]
                            } else if came == Some(d.opposite()) {
                                self.back_value(code) + prev[ti * ARRIVALS + arrival(Some(d))]
                            } else {
                                self.upper_value(code) + prev[ti * ARRIVALS + arrival(Some(d))]
                            };
                            best = best.max(v);
                        }
                        cur[ci * ARRIVALS + arrival(came)] = self.cfg.step_reward + best;
                    }
                }
            }
            bound.push(cur);
        }
        self.bound = bound;
    }

    fn dfs(&mut self, pos: Pos, came: Option<Dir>, k: i32, acc: f64) {
        self.nodes += 1;
        if k == 0 {
            if acc > self.best {
                self.best = acc;
                self.best_moves.clone_from(&self.path);
            }
            return;
        }
        let pi = self.win.index(pos);
        let step = self.cfg.step_reward;
        // (bound, direction, target, gain); blocked moves keep position and arrival.
        let mut children: [(f64, Dir, Pos, f64); 4] = [(0.0, Dir::N, pos, 0.0); 4];
        for (slot, d) in children.iter_mut().zip(Dir::ALL) {
            let t = pos.step(d);
            let code = self.win.cells[self.win.index(t)];
            let next = &self.bound[(k - 1) as usize];
            *slot = if code == OFF {
                (acc + step + next[pi * ARRIVALS + arrival(came)], d, pos, 0.0)
            } else {
                let gain = self.cfg.mapping.reward(tile_of(code));
                (
                    acc + step + gain + next[self.win.index(t) * ARRIVALS + arrival(Some(d))],
                    d,
                    t,
                    gain,
                )
            };
        }
        children.sort_by(|a, b| b.0.total_cmp(&a.0));
        for (bound, d, t, gain) in children {
            if bound <= self.best + 1e-9 {
                break;
            }
            self.path.push(d);
            if t == pos {
                self.dfs(pos, came, k - 1, acc + step);
            } else {
                let (pi, ti) = (self.win.index(pos), self.win.index(t));
                let (old_from, old_to) = (self.win.cells[pi], self.win.cells[ti]);
                if self.cfg.melt {
                    self.win.cells[pi] = Tile::Mold as u8;
                }
                if old_to == Tile::Gold as u8 {
                    self.win.cells[ti] = Tile::Path as u8;
                }
                self.dfs(t, Some(d), k - 1, acc + step + gain);
                self.win.cells[pi] = old_from;
                self.win.cells[ti] = old_to;
            }
            self.path.pop();
        }
    }
}

/// The best windless return from `pos` on `grid` with `turns` turns left, and its moves.
pub fn best_plan(grid: &Grid, pos: Pos, turns: u32, cfg: &EnvConfig) -> Plan {
    if turns == 0 {
        return Plan { moves: Vec::new(), value: 0.0, nodes: 0 };
    }
    let mut s = Search::new(grid, pos, turns, cfg);
    s.dfs(pos, None, turns as i32, 0.0);
    Plan { moves: s.best_moves, value: s.best, nodes: s.nodes }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maze::episode::Episode;
    use crate::maze::generate::{Maze, MazeConfig};
    use crate::maze::tiles::TileMapping;
    use crate::rng::{Stream, WaxRng};
    use std::sync::Arc;

    /// The best windless return by trying every move sequence on the real episode dynamics.
    fn brute_force(ep: &Episode, k: u32) -> f64 {
        if k == 0 {
            return ep.total_return();
        }
        Dir::ALL
            .into_iter()
            .map(|d| {
                let mut next = ep.clone();
                next.step_with_wind(d, None).unwrap();
                brute_force(&next, k - 1)
            })
            .fold(f64::NEG_INFINITY, f64::max)
    }

    fn replay(ep: &Episode, moves: &[Dir]) -> f64 {
        let mut e = ep.clone();
        let before = e.total_return();
        for &d in moves {
            e.step_with_wind(d, None).unwrap();
        }
        e.total_return() - before
    }

    #[test]
    fn exact_against_brute_force_on_random_mazes_and_mappings() {
        let maze_cfg = MazeConfig { width: 12, height: 12, ..MazeConfig::default() };
        let mut rng = WaxRng::new(99, Stream::Policy);
        for seed in 0..60u64 {
            let maze = Maze::generate(&maze_cfg, seed).unwrap();
            let mut mapping = TileMapping::office();
            if seed % 3 == 1 {
                // Odd rewards: Mold worth more than Path, Gold worth less than Mold.
                mapping.mold.reward = (rng.unit() * 10.0).round() - 3.0;
                mapping.gold.reward = (rng.unit() * 10.0).round() - 6.0;
                mapping.path.reward = (rng.unit() * 4.0).round() - 2.0;
            }
            let cfg = EnvConfig { turns: 6, melt: seed % 4 != 3, mapping, ..EnvConfig::default() };
            let mut ep = Episode::new(&maze, Arc::new(cfg.clone()), seed).unwrap();
            // Also plan from the middle of an episode.
            if seed % 2 == 0 {
                ep.step_with_wind(Dir::ALL[seed as usize % 4], None).unwrap();
            }
            let k = ep.turns_left();
            let plan = best_plan(ep.grid(), ep.position(), k, &cfg);
            let brute = brute_force(&ep, k) - ep.total_return();
            assert!(
                (plan.value - brute).abs() < 1e-9,
                "seed {seed}: plan {} brute {brute}",
                plan.value
            );
            assert_eq!(plan.moves.len() as u32, k);
            assert!((replay(&ep, &plan.moves) - plan.value).abs() < 1e-9, "seed {seed}");
        }
    }

    #[test]
    fn walls_block_at_the_grid_edge() {
        // A 3x3 grid with only Path and no ring: moving off the grid must be allowed (stay).
        let (grid, start) = Grid::from_ascii("#$#\n#@#\n###").unwrap();
        let cfg = EnvConfig { turns: 3, ..EnvConfig::default() };
        let plan = best_plan(&grid, start, 3, &cfg);
        // Take the Gold (+20), then bump into the edge twice instead of entering Mold.
        assert_eq!(plan.moves, vec![Dir::N, Dir::N, Dir::N]);
        assert!((plan.value - (20.0 - 0.3)).abs() < 1e-9);
        let ep = Episode::from_grid(grid, start, Arc::new(cfg), 0, 0).unwrap();
        assert!((brute_force(&ep, 3) - plan.value).abs() < 1e-9);
    }

    #[test]
    fn zero_turns_is_an_empty_plan() {
        let maze = Maze::generate(&MazeConfig::default(), 1).unwrap();
        let plan = best_plan(&maze.grid, maze.start, 0, &EnvConfig::default());
        assert_eq!((plan.moves.len(), plan.value), (0, 0.0));
    }
}
