//! Properties of generation and dynamics over thousands of seeds (docs/protocol.md §1).

use proptest::prelude::*;
use std::sync::Arc;
use wax_worker::maze::{
    ChatFormat, Dir, EnvConfig, Episode, Maze, MazeConfig, PolicyKind, Pos, RenderOptions,
    ScriptedPolicy, Tile, TileMapping, render_chat,
};

const SEEDS: u64 = 2000;

/// Checks every generation invariant of one maze.
fn check_invariants(cfg: &MazeConfig, m: &Maze) {
    let g = &m.grid;
    assert_eq!((g.width(), g.height()), (cfg.width, cfg.height));
    // The outermost ring is Mold.
    for p in g.positions().filter(|&p| !g.is_interior(p)) {
        assert_eq!(g.get(p), Some(Tile::Mold), "seed {}: ring cell {p}", m.seed);
    }
    // Mold fraction in [min, max); Gold = max(gold_min, floor(fraction · Mold)).
    let [path, mold, gold] = g.interior_counts();
    let interior = g.interior_len() as f64;
    let frac = mold as f64 / interior;
    assert!(frac < cfg.mold_fraction_max, "seed {}: Mold fraction {frac}", m.seed);
    assert!(
        frac >= cfg.mold_fraction_min || path + gold <= 1,
        "seed {}: Mold fraction {frac}",
        m.seed
    );
    // …and the largest such count: flipping stops as soon as the bound holds.
    if cfg.width == 100 && cfg.height == 100 {
        assert_eq!(mold, 4801, "seed {}", m.seed);
    }
    let expect_gold = cfg.gold_min.max((cfg.gold_fraction * mold as f64).floor() as usize);
    assert_eq!(gold, expect_gold, "seed {}", m.seed);
    // The walk length lies in its range.
    let (lo, hi) = cfg.walk_length_range();
    assert!((lo..=hi).contains(&m.walk_length), "seed {}", m.seed);
    // The start is a Path cell (not Gold) at minimal distance from the centre. The grid has no
    // obstacles for the search, so BFS distance is Manhattan distance.
    assert_eq!(g.get(m.start), Some(Tile::Path));
    let centre = Pos::new((cfg.width / 2) as i32, (cfg.height / 2) as i32);
    let nearest =
        g.positions().filter(|&p| g.get(p) == Some(Tile::Path)).map(|p| p.manhattan(centre)).min();
    assert_eq!(Some(m.start.manhattan(centre)), nearest, "seed {}", m.seed);
}

#[test]
fn paper_mazes_satisfy_the_generation_invariants() {
    let cfg = MazeConfig::default();
    for seed in 0..SEEDS {
        check_invariants(&cfg, &Maze::generate(&cfg, seed).unwrap());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Other sizes and fractions keep the same invariants.
    #[test]
    fn any_valid_config_satisfies_the_invariants(
        seed in any::<u64>(),
        width in 5usize..60,
        height in 5usize..60,
        max in 0.2f64..0.9,
        min_share in 0.0f64..0.9,
        gold_fraction in 0.0f64..0.3,
    ) {
        let cfg = MazeConfig {
            width,
            height,
            mold_fraction_max: max,
            mold_fraction_min: max * min_share,
            gold_fraction,
            ..MazeConfig::default()
        };
        if let Ok(m) = Maze::generate(&cfg, seed) {
            check_invariants(&cfg, &m);
        }
    }

    /// The same seed always gives the same maze and the same episode.
    #[test]
    fn same_seed_same_maze_and_episode(seed in any::<u64>(), policy_seed in any::<u64>()) {
        let cfg = MazeConfig::default();
        let a = Maze::generate(&cfg, seed).unwrap();
        let b = Maze::generate(&cfg, seed).unwrap();
        prop_assert_eq!(&a, &b);
        let play = |m: &Maze| {
            let mut ep = Episode::new(m, Arc::new(EnvConfig::default()), seed).unwrap();
            ScriptedPolicy::new(PolicyKind::Random, policy_seed).play(&mut ep);
            ep
        };
        let (x, y) = (play(&a), play(&b));
        prop_assert_eq!(x.history(), y.history());
        prop_assert_eq!(x.messages(), y.messages());
        prop_assert_ne!(&a.grid, &Maze::generate(&cfg, seed.wrapping_add(1)).unwrap().grid);
    }
}

/// Plays `episodes` random episodes and checks the dynamics turn by turn.
#[test]
fn melting_rewards_and_wind_announcements_hold_on_every_turn() {
    let env = Arc::new(EnvConfig::default());
    let mapping = &env.mapping;
    for seed in 0..300u64 {
        let maze = Maze::generate(&MazeConfig::default(), seed).unwrap();
        let mut ep = Episode::new(&maze, env.clone(), seed).unwrap();
        let mut policy = ScriptedPolicy::new(PolicyKind::Random, seed);
        let mut gold_left = maze.grid.interior_counts()[Tile::Gold.index()];
        while !ep.is_done() {
            let before = ep.grid().clone();
            let from = ep.position();
            let obs = ep.observation().clone();
            // The observation shows the current grid around the agent.
            for d in Dir::ALL {
                assert_eq!(Some(obs.neighbours[d.index()]), before.get(from.step(d)));
            }
            let rec = ep.step(policy.choose(&ep)).unwrap().clone();
            // Reward = step cost + what was entered; Δg and Δℓ count Gold and Mold entered.
            let expect =
                env.step_reward + rec.entered_tiles.iter().map(|&t| mapping.reward(t)).sum::<f64>();
            assert!((rec.reward - expect).abs() < 1e-12);
            assert_eq!(
                rec.gold as usize,
                rec.entered_tiles.iter().filter(|&&t| t == Tile::Gold).count()
            );
            assert_eq!(
                rec.mold as usize,
                rec.entered_tiles.iter().filter(|&&t| t == Tile::Mold).count()
            );
            // The entered tiles are what the grid held before the turn (the wind's cell after
            // the first move's melting, which only matters if the wind pushes straight back).
            assert_eq!(rec.entered[0], from.step(rec.action));
            assert_eq!(rec.entered_tiles[0], before.get(rec.entered[0]).unwrap());
            // Melting: every cell left this turn is Mold now.
            let mut left = vec![from];
            left.extend(rec.entered.iter().take(rec.entered.len() - 1));
            for p in left {
                assert_eq!(
                    ep.grid().get(p),
                    Some(Tile::Mold),
                    "seed {seed} turn {}: {p} left",
                    rec.turn
                );
            }
            // Consumed Gold disappears from the grid and is never counted twice.
            gold_left -= rec.gold as usize;
            assert_eq!(ep.grid().interior_counts()[Tile::Gold.index()], gold_left);
            // The wind is announced on the next message exactly when it blew, by its push.
            if let Some(w) = rec.wind {
                assert_eq!(rec.entered.len(), 2);
                assert_eq!(rec.entered[1], rec.entered[0].step(w));
            }
            if !ep.is_done() {
                assert_eq!(ep.observation().wind, rec.wind);
                let msg = ep.user_message();
                match rec.wind {
                    Some(w) => assert!(msg.starts_with(&format!(
                        "A strong wind from the {} blew you {}! You are in a maze.",
                        w.opposite().name(),
                        w.name()
                    ))),
                    None => assert!(msg.starts_with("You are in a maze.")),
                }
            }
        }
        let sum: f64 = ep.history().iter().map(|t| t.reward).sum();
        assert!((ep.total_return() - sum).abs() < 1e-9);
        assert_eq!(ep.turns_taken(), 15);
        assert!(ep.step(Dir::N).is_err(), "a finished episode refuses moves");
    }
}

/// Wind frequency and direction match the configured probability (binomial and chi-square
/// bounds with false-alarm probability below 1e-5).
#[test]
fn wind_frequency_is_within_binomial_bounds() {
    for p in [0.1, 0.35] {
        let env = Arc::new(EnvConfig { wind_probability: p, ..EnvConfig::default() });
        let maze = Maze::generate(&MazeConfig::default(), 0).unwrap();
        let (mut turns, mut winds, mut dirs) = (0u64, 0u64, [0u64; 4]);
        for seed in 0..4000u64 {
            let mut ep = Episode::new(&maze, env.clone(), seed).unwrap();
            ScriptedPolicy::new(PolicyKind::North, seed).play(&mut ep);
            for t in ep.history() {
                turns += 1;
                if let Some(w) = t.wind {
                    winds += 1;
                    dirs[w.index()] += 1;
                }
            }
        }
        let mean = turns as f64 * p;
        let sd = (turns as f64 * p * (1.0 - p)).sqrt();
        assert!((winds as f64 - mean).abs() < 4.5 * sd, "p={p}: {winds} winds in {turns} turns");
        let e = winds as f64 / 4.0;
        let chi2: f64 = dirs.iter().map(|&c| (c as f64 - e).powi(2) / e).sum();
        assert!(chi2 < 25.9, "p={p}: wind directions {dirs:?}"); // chi-square(3) at 1 − 1e-5
    }
}

/// The wind schedule depends on the episode seed only, not on the moves.
#[test]
fn wind_schedule_is_independent_of_actions() {
    let maze = Maze::generate(&MazeConfig::default(), 5).unwrap();
    let env = Arc::new(EnvConfig { wind_probability: 0.5, ..EnvConfig::default() });
    let winds = |kind| {
        let mut ep = Episode::new(&maze, env.clone(), 77).unwrap();
        ScriptedPolicy::new(kind, 1).play(&mut ep);
        ep.history().iter().map(|t| t.wind).collect::<Vec<_>>()
    };
    assert_eq!(winds(PolicyKind::North), winds(PolicyKind::Random));
    assert_eq!(winds(PolicyKind::North), winds(PolicyKind::Planner));
}

fn play_with(mapping: TileMapping, seed: u64) -> Episode {
    let maze = Maze::generate(&MazeConfig::default(), seed).unwrap();
    let env = EnvConfig { mapping, wind_probability: 0.3, ..EnvConfig::default() };
    let mut ep = Episode::new(&maze, Arc::new(env), seed).unwrap();
    // The same moves for both mappings: a seeded random policy ignores the text.
    ScriptedPolicy::new(PolicyKind::Random, seed).play(&mut ep);
    ep
}

/// The paper's swap (Mold and Gold emoji exchanged) relabels the tiles and nothing else: same
/// maze, moves, wind, positions and per-role rewards; the text differs exactly by the symbol
/// exchange; so the reward carried by each *symbol* is what changed.
#[test]
fn swapping_the_mapping_changes_rewards_per_symbol_and_nothing_else() {
    let office = TileMapping::office();
    let swapped = office.with_symbols_swapped(Tile::Mold, Tile::Gold);
    assert_eq!(swapped, TileMapping::preset("office-swapped").unwrap());
    for seed in 0..300u64 {
        let (a, b) = (play_with(office.clone(), seed), play_with(swapped.clone(), seed));
        for (x, y) in a.history().iter().zip(b.history()) {
            assert_eq!(
                (x.action, x.wind, &x.entered, &x.entered_tiles),
                (y.action, y.wind, &y.entered, &y.entered_tiles)
            );
            assert_eq!(x.reward, y.reward);
        }
        let text =
            |e: &Episode| render_chat(&e.messages(), ChatFormat::Chatml, RenderOptions::default());
        let exchanged: String = text(&a).replace("🗂", "\0").replace("📐", "🗂").replace('\0', "📐");
        assert_eq!(exchanged, text(&b), "seed {seed}");
        assert_ne!(text(&a), text(&b));
    }
    // The reward a symbol carries has flipped.
    assert_eq!(office.reward(office.tile_of("📐").unwrap()), 20.0);
    assert_eq!(swapped.reward(swapped.tile_of("📐").unwrap()), -10.0);
}

/// Changing only reward values changes only rewards and returns: same text, same moves.
#[test]
fn changing_reward_values_changes_only_rewards() {
    let office = TileMapping::office();
    let mut other = office.clone();
    other.gold.reward = 5.0;
    other.mold.reward = -1.0;
    other.path.reward = 0.25;
    for seed in 0..300u64 {
        let (a, b) = (play_with(office.clone(), seed), play_with(other.clone(), seed));
        assert_eq!(a.messages(), b.messages());
        for (x, y) in a.history().iter().zip(b.history()) {
            assert_eq!(
                (x.action, x.wind, &x.entered_tiles, x.gold, x.mold),
                (y.action, y.wind, &y.entered_tiles, y.gold, y.mold)
            );
            let expect = -0.1 + y.entered_tiles.iter().map(|&t| other.reward(t)).sum::<f64>();
            assert!((y.reward - expect).abs() < 1e-12);
        }
    }
}
