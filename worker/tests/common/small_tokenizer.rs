//! A small builtin tokenizer (vocabulary 1,024; fast to train) for the tokenizer tests.
#![allow(dead_code)]

use std::path::Path;
use wax_worker::tokenizer::{Corpus, MazeTextConfig, Tokenizer, TrainConfig, train_builtin};

/// Trains it into `dir`.
pub fn small_tokenizer(dir: &Path) -> Tokenizer {
    let corpus = Corpus::locate(None).unwrap_or_else(|e| panic!("{e}"));
    let cfg = TrainConfig {
        vocab_size: 1024,
        english_max_bytes: Some(300_000),
        validation_max_bytes: 0,
        maze: MazeTextConfig { episodes: 16, synthetic_per_class: 2, ..MazeTextConfig::default() },
        ..TrainConfig::default()
    };
    train_builtin(&corpus, &cfg, dir).unwrap_or_else(|e| panic!("{e}")).0
}
