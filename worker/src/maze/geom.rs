//! Directions, positions and move parsing.
//!
//! Coordinates follow the paper's worked rollout (docs/protocol.md §1.2): a location is `(x, y)`,
//! `x` grows to the East and `y` grows to the South, so N is `y − 1` and W is `x − 1`.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A cardinal direction; also the four actions `N`, `E`, `S`, `W`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Dir {
    N,
    E,
    S,
    W,
}

impl Dir {
    /// All four, in the paper's unshuffled prompt order (north, east, south, west).
    pub const ALL: [Dir; 4] = [Dir::N, Dir::E, Dir::S, Dir::W];

    /// Position of this direction in [`Dir::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The action letter the model emits.
    pub fn letter(self) -> char {
        match self {
            Dir::N => 'N',
            Dir::E => 'E',
            Dir::S => 'S',
            Dir::W => 'W',
        }
    }

    /// Capitalised name, as in the wind announcement ("North").
    pub fn name(self) -> &'static str {
        match self {
            Dir::N => "North",
            Dir::E => "East",
            Dir::S => "South",
            Dir::W => "West",
        }
    }

    /// Lower-case name, as in the neighbour clauses ("to the north").
    pub fn lower_name(self) -> &'static str {
        match self {
            Dir::N => "north",
            Dir::E => "east",
            Dir::S => "south",
            Dir::W => "west",
        }
    }

    pub fn opposite(self) -> Dir {
        match self {
            Dir::N => Dir::S,
            Dir::E => Dir::W,
            Dir::S => Dir::N,
            Dir::W => Dir::E,
        }
    }

    /// `(dx, dy)` of one step.
    pub fn delta(self) -> (i32, i32) {
        match self {
            Dir::N => (0, -1),
            Dir::E => (1, 0),
            Dir::S => (0, 1),
            Dir::W => (-1, 0),
        }
    }

    /// The direction of a one-step displacement, if `(dx, dy)` is one.
    pub fn from_delta(dx: i32, dy: i32) -> Option<Dir> {
        Dir::ALL.into_iter().find(|d| d.delta() == (dx, dy))
    }
}

impl fmt::Display for Dir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.letter())
    }
}

/// A cell of the grid. Signed so that stepping off the grid is representable (and rejected by
/// the grid, not by an overflow).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Pos {
    pub x: i32,
    pub y: i32,
}

impl Pos {
    pub fn new(x: i32, y: i32) -> Pos {
        Pos { x, y }
    }

    /// The neighbouring cell in direction `d`.
    pub fn step(self, d: Dir) -> Pos {
        let (dx, dy) = d.delta();
        Pos { x: self.x + dx, y: self.y + dy }
    }

    /// Manhattan distance.
    pub fn manhattan(self, other: Pos) -> u32 {
        self.x.abs_diff(other.x) + self.y.abs_diff(other.y)
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({}, {})", self.x, self.y)
    }
}

/// How strictly a model's reply is read as a move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MoveParsing {
    /// Exactly one of `N`, `E`, `S`, `W`, surrounding whitespace allowed. What action masking
    /// produces and what the prompt asks for ("Output only N/E/S/W without punctuation").
    #[default]
    Strict,
    /// Also accepts lower case, the full direction word, and surrounding quotes or trailing
    /// punctuation (`"n."`, `North!`). For unconstrained generation by models that ignore the
    /// formatting instruction.
    Lenient,
}

/// A reply that is not a move.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a move (expected one of N/E/S/W, {mode:?} parsing): {reply:?}")]
pub struct MoveParseError {
    pub reply: String,
    pub mode: MoveParsing,
}

/// Reads a model's reply as a move.
pub fn parse_move(reply: &str, mode: MoveParsing) -> Result<Dir, MoveParseError> {
    let err = || MoveParseError { reply: reply.to_string(), mode };
    let trimmed = reply.trim();
    let strict = |s: &str| match s {
        "N" => Some(Dir::N),
        "E" => Some(Dir::E),
        "S" => Some(Dir::S),
        "W" => Some(Dir::W),
        _ => None,
    };
    match mode {
        MoveParsing::Strict => strict(trimmed).ok_or_else(err),
        MoveParsing::Lenient => {
            let core = trimmed
                .trim_matches(|c: char| c.is_ascii_punctuation() || c.is_whitespace())
                .to_ascii_uppercase();
            strict(&core)
                .or_else(|| Dir::ALL.into_iter().find(|d| d.name().eq_ignore_ascii_case(&core)))
                .ok_or_else(err)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_follow_the_papers_example() {
        // docs/protocol.md §1.2: N from (50, 49) lands on (50, 48); wind from the East moves West.
        assert_eq!(Pos::new(50, 49).step(Dir::N), Pos::new(50, 48));
        assert_eq!(Pos::new(50, 46).step(Dir::W), Pos::new(49, 46));
        assert_eq!(Pos::new(1, 1).step(Dir::S), Pos::new(1, 2));
        assert_eq!(Pos::new(1, 1).step(Dir::E), Pos::new(2, 1));
        for d in Dir::ALL {
            assert_eq!(d.opposite().opposite(), d);
            assert_eq!(Pos::new(5, 5).step(d).step(d.opposite()), Pos::new(5, 5));
            let (dx, dy) = d.delta();
            assert_eq!(Dir::from_delta(dx, dy), Some(d));
            assert_eq!(Dir::ALL[d.index()], d);
        }
        assert_eq!(Dir::from_delta(1, 1), None);
    }

    #[test]
    fn strict_parsing_accepts_only_the_letters() {
        assert_eq!(parse_move("N", MoveParsing::Strict), Ok(Dir::N));
        assert_eq!(parse_move(" W\n", MoveParsing::Strict), Ok(Dir::W));
        for bad in ["n", "N.", "North", "", "NE", "X"] {
            assert!(parse_move(bad, MoveParsing::Strict).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn lenient_parsing_accepts_words_case_and_punctuation() {
        assert_eq!(parse_move("n", MoveParsing::Lenient), Ok(Dir::N));
        assert_eq!(parse_move("\"e.\"", MoveParsing::Lenient), Ok(Dir::E));
        assert_eq!(parse_move("South!", MoveParsing::Lenient), Ok(Dir::S));
        assert_eq!(parse_move(" west ", MoveParsing::Lenient), Ok(Dir::W));
        let e = parse_move("go north", MoveParsing::Lenient).unwrap_err();
        assert!(e.to_string().contains("go north"));
    }
}
