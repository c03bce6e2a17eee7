//! Generation statistics over many mazes (`wax maze stats`).

use super::episode::{EnvConfig, Episode};
use super::generate::{Maze, MazeConfig, MazeError};
use super::geom::{Dir, Pos};
use super::grid::Grid;
use super::planner::best_plan;
use super::policy::{PolicyKind, ScriptedPolicy};
use super::tiles::Tile;
use rayon::prelude::*;
use serde::Serialize;
use std::collections::VecDeque;
use std::fmt::{self, Write as _};
use std::sync::Arc;

/// Order statistics and moments of a sample.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub n: usize,
    pub mean: f64,
    /// Sample standard deviation (n − 1 denominator); 0 for fewer than two values.
    pub sd: f64,
    pub min: f64,
    pub p05: f64,
    pub p50: f64,
    pub p95: f64,
    pub max: f64,
}

impl Summary {
    /// Summarises `values` (quantiles by linear interpolation between order statistics, like
    /// NumPy's default). `None` for an empty sample.
    pub fn of(values: &[f64]) -> Option<Summary> {
        if values.is_empty() {
            return None;
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let mean = v.iter().sum::<f64>() / n as f64;
        let var = if n > 1 {
            v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64
        } else {
            0.0
        };
        let q = |p: f64| {
            let h = p * (n - 1) as f64;
            let (lo, hi) = (h.floor() as usize, h.ceil() as usize);
            v[lo] + (h - lo as f64) * (v[hi] - v[lo])
        };
        Some(Summary {
            n,
            mean,
            sd: var.sqrt(),
            min: v[0],
            p05: q(0.05),
            p50: q(0.5),
            p95: q(0.95),
            max: v[n - 1],
        })
    }
}

/// Per-maze measurements.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MazeMeasure {
    pub seed: u64,
    /// Interior fractions of Path, Mold, Gold.
    pub fractions: [f64; 3],
    pub gold: usize,
    pub walk_length: u64,
    pub start_offset_from_centre: u32,
    /// Gold within `turns` moves of the start, whatever lies between.
    pub gold_within_turns: usize,
    /// Gold reachable within `turns` moves without entering Mold.
    pub gold_reachable_clean: usize,
    /// Moves to the nearest Gold without entering Mold (`None`: none within `turns`).
    pub nearest_gold_clean: Option<u32>,
    /// Best windless return from the start.
    pub best_return: Option<f64>,
    pub planner_nodes: Option<u64>,
    /// Return of each scripted policy on one windy episode (episode seed = maze seed).
    pub policy_returns: Vec<(PolicyKind, f64)>,
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct StatsRequest {
    pub mazes: usize,
    pub first_seed: u64,
    pub maze: MazeConfig,
    pub env: EnvConfig,
    /// Compute the best windless return (exact search; the slowest part).
    pub best_return: bool,
    /// Scripted policies to play one episode with per maze.
    pub policies: Vec<PolicyKind>,
}

/// Aggregated statistics.
#[derive(Debug, Clone, Serialize)]
pub struct MazeStats {
    pub mazes: usize,
    pub first_seed: u64,
    pub turns: u32,
    pub path_fraction: Summary,
    pub mold_fraction: Summary,
    pub gold_fraction: Summary,
    pub gold_count: Summary,
    pub walk_length: Summary,
    pub start_offset_from_centre: Summary,
    pub gold_within_turns: Summary,
    pub gold_reachable_clean: Summary,
    /// Share of mazes with some Gold reachable without entering Mold within `turns` moves.
    pub share_with_clean_gold: f64,
    pub nearest_gold_clean: Option<Summary>,
    pub best_return: Option<Summary>,
    /// Histogram of best returns: (lower edge, count), bins of `best_return_bin_width`.
    pub best_return_histogram: Vec<(f64, usize)>,
    pub best_return_bin_width: f64,
    pub planner_nodes: Option<Summary>,
    pub policy_returns: Vec<(PolicyKind, Summary)>,
}

/// Measures one maze.
pub fn measure(
    maze: &Maze,
    env: &Arc<EnvConfig>,
    best_return: bool,
    policies: &[PolicyKind],
) -> MazeMeasure {
    let interior = maze.grid.interior_len() as f64;
    let counts = maze.grid.interior_counts();
    let centre = Pos::new((maze.grid.width() / 2) as i32, (maze.grid.height() / 2) as i32);
    let turns = env.turns;
    let gold_within_turns = maze
        .grid
        .positions()
        .filter(|&p| maze.grid.get(p) == Some(Tile::Gold) && p.manhattan(maze.start) <= turns)
        .count();
    let clean = clean_gold_distances(&maze.grid, maze.start, turns);
    let plan = best_return.then(|| best_plan(&maze.grid, maze.start, turns, env));
    let policy_returns = policies
        .iter()
        .map(|&kind| {
            let mut ep = Episode::new(maze, env.clone(), maze.seed).expect("validated config");
            ScriptedPolicy::new(kind, maze.seed).play(&mut ep);
            (kind, ep.total_return())
        })
        .collect();
    MazeMeasure {
        seed: maze.seed,
        fractions: counts.map(|c| c as f64 / interior),
        gold: counts[Tile::Gold.index()],
        walk_length: maze.walk_length,
        start_offset_from_centre: maze.start.manhattan(centre),
        gold_within_turns,
        gold_reachable_clean: clean.len(),
        nearest_gold_clean: clean.iter().copied().min(),
        best_return: plan.as_ref().map(|p| p.value),
        planner_nodes: plan.as_ref().map(|p| p.nodes),
        policy_returns,
    }
}

/// Move distances to every Gold reachable within `limit` moves without entering Mold.
fn clean_gold_distances(grid: &Grid, start: Pos, limit: u32) -> Vec<u32> {
    let mut depth = vec![u32::MAX; grid.width() * grid.height()];
    let idx = |p: Pos| p.y as usize * grid.width() + p.x as usize;
    depth[idx(start)] = 0;
    let mut queue = VecDeque::from([start]);
    let mut found = Vec::new();
    while let Some(p) = queue.pop_front() {
        let dp = depth[idx(p)];
        if dp >= limit {
            continue;
        }
        for d in Dir::ALL {
            let q = p.step(d);
            let tile = grid.get(q);
            if matches!(tile, Some(Tile::Path | Tile::Gold)) && depth[idx(q)] == u32::MAX {
                depth[idx(q)] = dp + 1;
                if tile == Some(Tile::Gold) {
                    found.push(dp + 1);
                }
                queue.push_back(q);
            }
        }
    }
    found
}

/// Runs the request over mazes `first_seed..first_seed + mazes`, in parallel, calling
/// `progress` once per finished maze.
pub fn collect(request: &StatsRequest, progress: impl Fn() + Sync) -> Result<MazeStats, MazeError> {
    request.maze.validate()?;
    request.env.validate().map_err(|e| MazeError::Config { field: "env", why: e.to_string() })?;
    let env = Arc::new(request.env.clone());
    let measures: Vec<MazeMeasure> = (0..request.mazes as u64)
        .into_par_iter()
        .map(|i| {
            let maze = Maze::generate(&request.maze, request.first_seed.wrapping_add(i))?;
            let m = measure(&maze, &env, request.best_return, &request.policies);
            progress();
            Ok(m)
        })
        .collect::<Result<_, MazeError>>()?;
    Ok(aggregate(request, &measures))
}

fn aggregate(request: &StatsRequest, ms: &[MazeMeasure]) -> MazeStats {
    let col =
        |f: &dyn Fn(&MazeMeasure) -> Option<f64>| ms.iter().filter_map(f).collect::<Vec<f64>>();
    let sum = |f: &dyn Fn(&MazeMeasure) -> Option<f64>| Summary::of(&col(f));
    let must = |f: &dyn Fn(&MazeMeasure) -> Option<f64>| sum(f).expect("at least one maze");
    let best = col(&|m| m.best_return);
    let width = 20.0;
    let mut histogram: Vec<(f64, usize)> = Vec::new();
    for &b in &best {
        let edge = (b / width).floor() * width;
        match histogram.iter_mut().find(|(e, _)| *e == edge) {
            Some((_, c)) => *c += 1,
            None => histogram.push((edge, 1)),
        }
    }
    histogram.sort_by(|a, b| a.0.total_cmp(&b.0));
    MazeStats {
        mazes: ms.len(),
        first_seed: request.first_seed,
        turns: request.env.turns,
        path_fraction: must(&|m| Some(m.fractions[0])),
        mold_fraction: must(&|m| Some(m.fractions[1])),
        gold_fraction: must(&|m| Some(m.fractions[2])),
        gold_count: must(&|m| Some(m.gold as f64)),
        walk_length: must(&|m| Some(m.walk_length as f64)),
        start_offset_from_centre: must(&|m| Some(m.start_offset_from_centre as f64)),
        gold_within_turns: must(&|m| Some(m.gold_within_turns as f64)),
        gold_reachable_clean: must(&|m| Some(m.gold_reachable_clean as f64)),
        share_with_clean_gold: ms.iter().filter(|m| m.gold_reachable_clean > 0).count() as f64
            / ms.len() as f64,
        nearest_gold_clean: sum(&|m| m.nearest_gold_clean.map(f64::from)),
        best_return: Summary::of(&best),
        best_return_histogram: histogram,
        best_return_bin_width: width,
        planner_nodes: sum(&|m| m.planner_nodes.map(|n| n as f64)),
        policy_returns: request
            .policies
            .iter()
            .map(|&k| {
                let r = col(&|m| m.policy_returns.iter().find(|(p, _)| *p == k).map(|(_, r)| *r));
                (k, Summary::of(&r).expect("at least one maze"))
            })
            .collect(),
    }
}

impl fmt::Display for MazeStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} mazes (seeds {}..{}), {} turns per episode",
            self.mazes,
            self.first_seed,
            self.first_seed + self.mazes as u64,
            self.turns
        )?;
        writeln!(
            f,
            "{:<40} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
            "", "mean", "sd", "min", "p5", "median", "p95", "max"
        )?;
        let row = |f: &mut fmt::Formatter<'_>, name: &str, s: &Summary| {
            writeln!(
                f,
                "{name:<40} {:>9.3} {:>8.3} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
                s.mean, s.sd, s.min, s.p05, s.p50, s.p95, s.max
            )
        };
        row(f, "interior Path fraction", &self.path_fraction)?;
        row(f, "interior Mold fraction", &self.mold_fraction)?;
        row(f, "interior Gold fraction", &self.gold_fraction)?;
        row(f, "Gold tiles", &self.gold_count)?;
        row(f, "carving walk length", &self.walk_length)?;
        row(f, "start: moves from the centre", &self.start_offset_from_centre)?;
        row(f, &format!("Gold within {} moves", self.turns), &self.gold_within_turns)?;
        row(
            f,
            &format!("Gold within {} moves, avoiding Mold", self.turns),
            &self.gold_reachable_clean,
        )?;
        if let Some(s) = &self.nearest_gold_clean {
            row(f, "moves to nearest Gold, avoiding Mold", s)?;
        }
        writeln!(
            f,
            "mazes with Gold reachable avoiding Mold: {:.1} %",
            100.0 * self.share_with_clean_gold
        )?;
        if let Some(s) = &self.best_return {
            row(f, "best windless return (exact)", s)?;
        }
        if let Some(s) = &self.planner_nodes {
            row(f, "planner search nodes", s)?;
        }
        for (kind, s) in &self.policy_returns {
            row(f, &format!("return, {} policy (windy)", kind.name()), s)?;
        }
        if !self.best_return_histogram.is_empty() {
            writeln!(f, "\nbest windless return")?;
            let top = self.best_return_histogram.iter().map(|(_, c)| *c).max().unwrap_or(1);
            for (edge, count) in &self.best_return_histogram {
                let bar = "#".repeat((50 * count).div_ceil(top));
                let mut label = String::new();
                let _ =
                    write!(label, "[{:>6.0}, {:>6.0})", edge, edge + self.best_return_bin_width);
                writeln!(f, "{label} {count:>6} {bar}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_matches_numpy_conventions() {
        // numpy: mean 2.5, std(ddof=1) 1.2909944, percentile 5 → 1.15, 50 → 2.5, 95 → 3.85.
        let s = Summary::of(&[4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!((s.n, s.min, s.max), (4, 1.0, 4.0));
        assert!((s.mean - 2.5).abs() < 1e-12);
        assert!((s.sd - 1.290_994_448_735_805_6).abs() < 1e-12);
        assert!((s.p05 - 1.15).abs() < 1e-12);
        assert!((s.p50 - 2.5).abs() < 1e-12);
        assert!((s.p95 - 3.85).abs() < 1e-12);
        assert_eq!(Summary::of(&[]), None);
        assert_eq!(Summary::of(&[7.0]).unwrap().sd, 0.0);
    }

    #[test]
    fn clean_distances_avoid_mold() {
        let (g, start) = Grid::from_ascii(
            "
            #######
            #@.#$.#
            #.#...#
            #$....#
            #######
            ",
        )
        .unwrap();
        // (1,3) Gold at 2 moves; (4,1) Gold around the wall: (1,1)→(1,2)→(1,3)→(2,3)→(3,3)→(3,2)→(4,2)→(4,1) = 7.
        let mut d = clean_gold_distances(&g, start, 15);
        d.sort();
        assert_eq!(d, vec![2, 7]);
        assert_eq!(clean_gold_distances(&g, start, 6), vec![2]);
    }
}
