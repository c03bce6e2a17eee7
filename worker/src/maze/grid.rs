//! The tile grid.

use super::geom::{Dir, Pos};
use super::tiles::Tile;
use std::fmt::Write as _;

/// A rectangular grid of tile roles, row-major, `(0, 0)` at the north-west corner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grid {
    width: usize,
    height: usize,
    cells: Vec<Tile>,
}

/// A grid drawn as text could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AsciiGridError {
    #[error("line {line}, column {column}: unknown tile character {found:?} (use . # $ @)")]
    UnknownChar { line: usize, column: usize, found: char },
    #[error("line {line} has {found} cells, expected {expected} like line 1")]
    Ragged { line: usize, found: usize, expected: usize },
    #[error("the grid needs exactly one start '@', found {0}")]
    Start(usize),
    #[error("the grid is empty")]
    Empty,
}

impl Grid {
    /// A grid of one tile.
    pub fn filled(width: usize, height: usize, tile: Tile) -> Grid {
        Grid { width, height, cells: vec![tile; width * height] }
    }

    pub fn width(&self) -> usize {
        self.width
    }

    pub fn height(&self) -> usize {
        self.height
    }

    pub fn contains(&self, p: Pos) -> bool {
        p.x >= 0 && p.y >= 0 && (p.x as usize) < self.width && (p.y as usize) < self.height
    }

    /// Cells not on the outermost ring.
    pub fn is_interior(&self, p: Pos) -> bool {
        p.x >= 1 && p.y >= 1 && (p.x as usize) < self.width - 1 && (p.y as usize) < self.height - 1
    }

    fn offset(&self, p: Pos) -> usize {
        p.y as usize * self.width + p.x as usize
    }

    /// The tile at `p`, `None` off the grid.
    pub fn get(&self, p: Pos) -> Option<Tile> {
        self.contains(p).then(|| self.cells[self.offset(p)])
    }

    /// Sets the tile at `p`.
    ///
    /// # Panics
    /// If `p` is off the grid (a bug in the caller, never a user input).
    pub fn set(&mut self, p: Pos, tile: Tile) {
        assert!(self.contains(p), "Grid::set off the grid at {p}");
        let i = self.offset(p);
        self.cells[i] = tile;
    }

    /// The tile in each direction from `p` (`None` off the grid), indexed like [`Dir::ALL`].
    pub fn neighbours(&self, p: Pos) -> [Option<Tile>; 4] {
        Dir::ALL.map(|d| self.get(p.step(d)))
    }

    /// Every position, row by row.
    pub fn positions(&self) -> impl Iterator<Item = Pos> + '_ {
        (0..self.height as i32).flat_map(move |y| (0..self.width as i32).map(move |x| Pos { x, y }))
    }

    /// Interior positions, row by row.
    pub fn interior_positions(&self) -> impl Iterator<Item = Pos> + '_ {
        self.positions().filter(|&p| self.is_interior(p))
    }

    /// How many interior cells hold each role, indexed by [`Tile::index`].
    pub fn interior_counts(&self) -> [usize; 3] {
        let mut counts = [0; 3];
        for p in self.interior_positions() {
            counts[self.cells[self.offset(p)].index()] += 1;
        }
        counts
    }

    /// Number of interior cells.
    pub fn interior_len(&self) -> usize {
        self.width.saturating_sub(2) * self.height.saturating_sub(2)
    }

    /// Reads a grid drawn with `.` Path, `#` Mold, `$` Gold and `@` the start (a Path cell).
    /// Blank lines and surrounding whitespace are ignored. Returns the grid and the start.
    pub fn from_ascii(text: &str) -> Result<(Grid, Pos), AsciiGridError> {
        let rows: Vec<(usize, &str)> = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim()))
            .filter(|(_, l)| !l.is_empty())
            .collect();
        let Some(&(_, first)) = rows.first() else {
            return Err(AsciiGridError::Empty);
        };
        let width = first.chars().count();
        let mut cells = Vec::with_capacity(width * rows.len());
        let mut starts = Vec::new();
        for (y, &(line, row)) in rows.iter().enumerate() {
            let found = row.chars().count();
            if found != width {
                return Err(AsciiGridError::Ragged { line, found, expected: width });
            }
            for (x, c) in row.chars().enumerate() {
                cells.push(match c {
                    '.' => Tile::Path,
                    '#' => Tile::Mold,
                    '$' => Tile::Gold,
                    '@' => {
                        starts.push(Pos::new(x as i32, y as i32));
                        Tile::Path
                    }
                    found => {
                        return Err(AsciiGridError::UnknownChar { line, column: x + 1, found });
                    }
                });
            }
        }
        if starts.len() != 1 {
            return Err(AsciiGridError::Start(starts.len()));
        }
        Ok((Grid { width, height: rows.len(), cells }, starts[0]))
    }

    /// Draws the cells within `radius` of `center` with the [`Grid::from_ascii`] alphabet,
    /// marking `agent` with `@`; cells off the grid are blank.
    pub fn to_ascii(&self, center: Pos, radius: i32, agent: Option<Pos>) -> String {
        let mut out = String::new();
        for y in center.y - radius..=center.y + radius {
            for x in center.x - radius..=center.x + radius {
                let p = Pos::new(x, y);
                let c = match self.get(p) {
                    _ if Some(p) == agent => '@',
                    None => ' ',
                    Some(Tile::Path) => '.',
                    Some(Tile::Mold) => '#',
                    Some(Tile::Gold) => '$',
                };
                out.push(c);
            }
            let _ = writeln!(out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_round_trip_and_neighbours() {
        let (g, start) = Grid::from_ascii(
            "
            #####
            #.$.#
            #.@##
            #####
            ",
        )
        .unwrap();
        assert_eq!((g.width(), g.height(), start), (5, 4, Pos::new(2, 2)));
        assert_eq!(
            g.neighbours(start),
            [Some(Tile::Gold), Some(Tile::Mold), Some(Tile::Mold), Some(Tile::Path)]
        );
        assert_eq!(g.get(Pos::new(-1, 0)), None);
        assert_eq!(g.neighbours(Pos::new(0, 0))[0], None);
        assert_eq!(g.interior_counts(), [4, 1, 1]);
        assert_eq!(g.interior_len(), 6);
        let drawn = g.to_ascii(Pos::new(2, 1), 1, Some(start));
        assert_eq!(drawn, "###\n.$.\n.@#\n");
    }

    #[test]
    fn bad_ascii_is_located() {
        assert_eq!(
            Grid::from_ascii("#@#\n#x#"),
            Err(AsciiGridError::UnknownChar { line: 2, column: 2, found: 'x' })
        );
        assert_eq!(
            Grid::from_ascii("#@#\n##"),
            Err(AsciiGridError::Ragged { line: 2, found: 2, expected: 3 })
        );
        assert_eq!(Grid::from_ascii("###"), Err(AsciiGridError::Start(0)));
        assert_eq!(Grid::from_ascii("  \n"), Err(AsciiGridError::Empty));
    }
}
