//! Replays the paper's worked rollout (App. K, Table 25; docs/protocol.md §1.9) on a grid rebuilt
//! from the table's neighbour columns: every prompt's neighbours, the wind announcement and
//! every cumulative return must match the paper.

use std::sync::Arc;
use wax_worker::maze::{Dir, EnvConfig, Episode, Grid, Pos, Tile, TileMapping};

/// Initial tiles implied by the table (cells it never shows stay Mold).
const CELLS: &[(i32, i32, char)] = &[
    (50, 49, 'P'),
    (50, 48, 'P'),
    (49, 49, 'P'),
    (50, 47, 'G'),
    (51, 48, 'P'),
    (50, 46, 'P'),
    (49, 46, 'P'),
    (49, 45, 'P'),
    (48, 46, 'G'),
    (48, 47, 'P'),
    (48, 48, 'P'),
    (48, 49, 'G'),
    (47, 49, 'G'),
    (47, 50, 'G'),
    (46, 49, 'P'),
    (47, 51, 'G'),
    (46, 50, 'P'),
    (47, 52, 'P'),
    (46, 51, 'G'),
    (46, 52, 'G'),
    (45, 51, 'P'),
    (45, 52, 'G'),
    (45, 53, 'P'),
    (45, 50, 'P'),
    (44, 51, 'G'),
];

/// One row of Table 25: position, N E S W symbols, move, cumulative return.
type Row = ((i32, i32), [&'static str; 4], Dir, f64);

/// Table 25. Turn 3's move is followed by wind pushing the agent West.
const TABLE_25: &[Row] = &[
    ((50, 49), ["🧾", "🗂", "🗂", "🧾"], Dir::N, -0.1),
    ((50, 48), ["📐", "🧾", "🗂", "🗂"], Dir::N, 19.8),
    ((50, 47), ["🧾", "🗂", "🗂", "🗂"], Dir::N, 19.7),
    ((49, 46), ["🧾", "🗂", "🗂", "📐"], Dir::W, 39.6),
    ((48, 46), ["🗂", "🗂", "🧾", "🗂"], Dir::S, 39.5),
    ((48, 47), ["🗂", "🗂", "🧾", "🗂"], Dir::S, 39.4),
    ((48, 48), ["🗂", "🗂", "📐", "🗂"], Dir::S, 59.3),
    ((48, 49), ["🗂", "🧾", "🗂", "📐"], Dir::W, 79.2),
    ((47, 49), ["🗂", "🗂", "📐", "🧾"], Dir::S, 99.1),
    ((47, 50), ["🗂", "🗂", "📐", "🧾"], Dir::S, 119.0),
    ((47, 51), ["🗂", "🗂", "🧾", "📐"], Dir::W, 138.9),
    ((46, 51), ["🧾", "🗂", "📐", "🧾"], Dir::S, 158.8),
    ((46, 52), ["🗂", "🧾", "🗂", "📐"], Dir::W, 178.7),
    ((45, 52), ["🧾", "🗂", "🧾", "🗂"], Dir::N, 178.6),
    ((45, 51), ["🧾", "🗂", "🗂", "📐"], Dir::W, 198.5),
];

#[test]
fn table_25_is_reproduced_turn_by_turn() {
    let mut grid = Grid::filled(100, 100, Tile::Mold);
    for &(x, y, c) in CELLS {
        grid.set(Pos::new(x, y), if c == 'G' { Tile::Gold } else { Tile::Path });
    }
    // App. K turns shuffling off for readability.
    let config = EnvConfig { shuffle_directions: false, ..EnvConfig::default() };
    let mapping = TileMapping::office();
    let mut ep = Episode::from_grid(grid, Pos::new(50, 49), Arc::new(config), 0, 0).unwrap();
    for (i, &((x, y), symbols, action, cumulative)) in TABLE_25.iter().enumerate() {
        let turn = i + 1;
        let obs = ep.observation().clone();
        assert_eq!(obs.pos, Pos::new(x, y), "turn {turn} position");
        let shown = obs.neighbours.map(|t| mapping.symbol(t));
        assert_eq!(shown, symbols, "turn {turn} neighbours");
        let message = ep.user_message();
        if turn == 4 {
            assert!(
                message
                    .starts_with("A strong wind from the East blew you West! You are in a maze."),
                "{message}"
            );
        } else {
            assert!(message.starts_with("You are in a maze."), "turn {turn}: {message}");
        }
        let wind = (turn == 3).then_some(Dir::W);
        let record = ep.step_with_wind(action, wind).unwrap();
        assert!(
            (record.cumulative - cumulative).abs() < 1e-9,
            "turn {turn}: {} vs {cumulative}",
            record.cumulative
        );
    }
    assert!(ep.is_done());
    assert!((ep.total_return() - 198.5).abs() < 1e-9);
    // Ten Gold tiles were taken (turns 2, 4, 7–13 but 14, 15), none of them twice.
    let gold: u32 = ep.history().iter().map(|t| t.gold).sum();
    assert_eq!(gold, 10);
    assert_eq!(ep.history().iter().map(|t| t.mold).sum::<u32>(), 0);
}
