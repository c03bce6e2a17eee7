//! Synthetic extraction trajectories (docs/protocol.md §3.1): right final tile, Path before it,
//! even lengths, balanced final directions, rendered like the policy's own conversations.

use std::collections::HashMap;
use std::sync::Arc;
use wax_worker::maze::synthetic::SyntheticError;
use wax_worker::maze::{
    ChatMessage, Dir, EnvConfig, Episode, Maze, MazeConfig, Role, SyntheticConfig,
    SyntheticGenerator, SyntheticTrajectory, Tile,
};

fn generate(config: SyntheticConfig, env: EnvConfig) -> Vec<SyntheticTrajectory> {
    SyntheticGenerator::new(config, MazeConfig::default(), env)
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Replays a trajectory on its maze and checks every step's tile.
fn check_tiles(t: &SyntheticTrajectory, env: &EnvConfig) {
    let maze = Maze::generate(&MazeConfig::default(), t.maze_seed).unwrap();
    let calm = EnvConfig { turns: t.len() as u32, wind_probability: 0.0, ..env.clone() };
    let mut ep = Episode::new(&maze, Arc::new(calm), t.maze_seed).unwrap();
    assert_eq!(t.positions[0], maze.start);
    for (i, &d) in t.moves.iter().enumerate() {
        let rec = ep.step(d).unwrap().clone();
        assert_eq!(rec.entered, vec![t.positions[i + 1]]);
        let want = if i + 1 == t.len() { t.class } else { Tile::Path };
        assert_eq!(rec.entered_tiles, vec![want], "{:?} #{} step {}", t.class, t.index, i + 1);
    }
    // The rendered conversation is the one this replay produces.
    assert_eq!(ep.messages(), t.messages);
}

#[test]
fn every_class_ends_on_its_tile_after_path_steps() {
    let env = EnvConfig::default();
    let ts =
        generate(SyntheticConfig { per_class: 300, ..SyntheticConfig::default() }, env.clone());
    assert_eq!(ts.len(), 900);
    for t in &ts {
        check_tiles(t, &env);
    }
    // Index-major order, one fresh maze per trajectory, seeds counting up from 474747.
    assert_eq!(ts[0].class, Tile::Mold);
    assert_eq!(ts[1].class, Tile::Gold);
    assert_eq!(ts[2].class, Tile::Path);
    assert_eq!(ts[0].maze_seed, 474_747);
    let seeds: Vec<u64> = ts.iter().map(|t| t.maze_seed).collect();
    assert!(seeds.windows(2).all(|w| w[0] < w[1]), "one maze per trajectory, increasing");
}

#[test]
fn lengths_are_even_and_final_directions_exactly_balanced() {
    let ts = generate(
        SyntheticConfig { per_class: 600, ..SyntheticConfig::default() },
        EnvConfig::default(),
    );
    for class in [Tile::Mold, Tile::Gold, Tile::Path] {
        let of: Vec<&SyntheticTrajectory> = ts.iter().filter(|t| t.class == class).collect();
        assert_eq!(of.len(), 600);
        let mut by_len: HashMap<usize, usize> = HashMap::new();
        let mut by_dir: HashMap<Dir, usize> = HashMap::new();
        for t in &of {
            *by_len.entry(t.len()).or_default() += 1;
            *by_dir.entry(t.final_direction()).or_default() += 1;
        }
        assert_eq!(by_len.len(), 15, "{class}: lengths 1..=15");
        assert!(by_len.keys().all(|l| (1..=15).contains(l)));
        assert!(by_len.values().all(|&c| c == 40), "{class}: {by_len:?}");
        assert!(Dir::ALL.iter().all(|d| by_dir[d] == 150), "{class}: {by_dir:?}");
    }
}

/// Without forced balance the final directions are balanced only in distribution (like the
/// paper's table): within a chi-square bound.
#[test]
fn unforced_final_directions_are_balanced_in_distribution() {
    let config = SyntheticConfig {
        per_class: 800,
        balance_final_direction: false,
        ..SyntheticConfig::default()
    };
    let ts = generate(config, EnvConfig::default());
    for class in [Tile::Mold, Tile::Gold, Tile::Path] {
        let mut counts = [0f64; 4];
        for t in ts.iter().filter(|t| t.class == class) {
            counts[t.final_direction().index()] += 1.0;
        }
        let chi2: f64 = counts.iter().map(|c| (c - 200.0).powi(2) / 200.0).sum();
        assert!(chi2 < 25.9, "{class}: {counts:?}"); // chi-square(3) at 1 − 1e-5
    }
}

#[test]
fn rendering_matches_the_policy_view_and_ends_on_the_move() {
    let env = EnvConfig::default();
    let ts = generate(SyntheticConfig { per_class: 30, ..SyntheticConfig::default() }, env);
    for t in &ts {
        assert_eq!(t.messages.len(), 2 * t.len());
        for (i, m) in t.messages.iter().enumerate() {
            assert_eq!(m.role, if i % 2 == 0 { Role::User } else { Role::Assistant });
        }
        let last: &ChatMessage = t.messages.last().unwrap();
        assert_eq!(last.content, t.final_direction().letter().to_string());
        // Calm: no message announces wind.
        assert!(t.messages.iter().all(|m| !m.content.contains("strong wind")));
    }
}

#[test]
fn prefixes_are_stable_and_generation_is_deterministic() {
    let small = generate(
        SyntheticConfig { per_class: 20, ..SyntheticConfig::default() },
        EnvConfig::default(),
    );
    let large = generate(
        SyntheticConfig { per_class: 50, ..SyntheticConfig::default() },
        EnvConfig::default(),
    );
    assert_eq!(small[..], large[..60]);
}

#[test]
fn impossible_requests_fail_with_a_clear_error() {
    // Gold everywhere is impossible to reach through Path when there is no Gold at all.
    let maze = MazeConfig { gold_fraction: 0.0, gold_min: 0, ..MazeConfig::default() };
    let config = SyntheticConfig {
        per_class: 1,
        classes: vec![Tile::Gold],
        max_mazes_per_trajectory: 5,
        ..SyntheticConfig::default()
    };
    let err = SyntheticGenerator::new(config, maze, EnvConfig::default())
        .unwrap()
        .next()
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, SyntheticError::Exhausted { class: Tile::Gold, mazes: 5, .. }), "{err}");
    assert!(err.to_string().contains("no Gold trajectory of 1 moves"), "{err}");
    let bad = SyntheticConfig { min_len: 0, ..SyntheticConfig::default() };
    let err =
        SyntheticGenerator::new(bad, MazeConfig::default(), EnvConfig::default()).err().unwrap();
    assert!(err.to_string().starts_with("synthetic.min_len"), "{err}");
}
