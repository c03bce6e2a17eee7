//! Tile roles and the tile-to-reward mapping.
//!
//! The maze's *structure* has three roles: [`Tile::Path`] (what the generator's random walk
//! carves), [`Tile::Mold`] (the border, unwalked cells, and every tile the agent leaves — the
//! punished role), and [`Tile::Gold`] (scattered on Path — the rewarded role). Generation and
//! dynamics depend on roles only. What the model *sees* and *earns* is data: a
//! [`TileMapping`] gives each role a symbol and the reward for entering it. The paper's control
//! that swaps the Mold and Gold emoji is one line of config (`mapping = "office-swapped"`): the
//! same seed then yields the same maze, wind and trajectory, and only which symbol carries which
//! reward changes.

use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;

/// The structural role of a cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tile {
    Path = 0,
    Mold = 1,
    Gold = 2,
}

impl Tile {
    /// The three roles, in the order used for per-class arrays.
    pub const ALL: [Tile; 3] = [Tile::Path, Tile::Mold, Tile::Gold];

    pub fn name(self) -> &'static str {
        match self {
            Tile::Path => "Path",
            Tile::Mold => "Mold",
            Tile::Gold => "Gold",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Tile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What one role looks like and earns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TileSpec {
    /// The text shown in the prompt for a neighbour of this role.
    pub symbol: String,
    /// Reward for entering a tile of this role, on top of the per-turn step reward
    /// (`env.step_reward`, −0.1 in the paper).
    pub reward: f64,
}

/// Symbols and rewards for the three roles. Deserialises from a preset name
/// (`mapping = "office"`) or a table with `path`, `mold` and `gold` entries, optionally
/// starting from a preset (`preset = "office"`, then override single roles).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TileMapping {
    pub path: TileSpec,
    pub mold: TileSpec,
    pub gold: TileSpec,
}

/// The paper's rewards: Gold +20, Mold −10, and nothing extra for Path (its −0.1 in the paper's
/// tile table is the per-turn step cost, charged on every turn whatever the tile).
const PAPER_REWARDS: [f64; 3] = [0.0, -10.0, 20.0];

/// Built-in mappings: name, (path, mold, gold) symbols, description.
const PRESETS: &[(&str, [&str; 3], &str)] = &[
    ("office", ["🧾", "🗂", "📐"], "the paper's neutral office trio (App. J.2)"),
    ("office-swapped", ["🧾", "📐", "🗂"], "Mold and Gold emoji exchanged (the swap control)"),
    (
        "office-permuted",
        ["📐", "🧾", "🗂"],
        "every role gets another role's emoji (a 3-cycle; the paper's \"3-way permuted tiles\")",
    ),
    ("desserts", ["🍩", "🧁", "🍨"], "the first trio, rejected for carrying sentiment"),
];

impl TileMapping {
    /// A built-in mapping with the paper's rewards.
    pub fn preset(name: &str) -> Result<TileMapping, MappingError> {
        let (_, symbols, _) = PRESETS
            .iter()
            .find(|(n, _, _)| *n == name)
            .ok_or_else(|| MappingError::UnknownPreset(name.to_string()))?;
        let spec = |i: usize| TileSpec { symbol: symbols[i].to_string(), reward: PAPER_REWARDS[i] };
        Ok(TileMapping { path: spec(0), mold: spec(1), gold: spec(2) })
    }

    /// The name of the built-in mapping this one equals, if any.
    pub fn preset_name(&self) -> Option<&'static str> {
        PRESETS
            .iter()
            .map(|(n, _, _)| *n)
            .find(|n| TileMapping::preset(n).ok().as_ref() == Some(self))
    }

    /// Names and descriptions of the built-in mappings.
    pub fn presets() -> impl Iterator<Item = (&'static str, &'static str)> {
        PRESETS.iter().map(|(n, _, d)| (*n, *d))
    }

    /// The paper's mapping: 🧾 Path, 🗂 Mold (−10), 📐 Gold (+20).
    pub fn office() -> TileMapping {
        TileMapping::preset("office").expect("built-in preset")
    }

    pub fn spec(&self, tile: Tile) -> &TileSpec {
        match tile {
            Tile::Path => &self.path,
            Tile::Mold => &self.mold,
            Tile::Gold => &self.gold,
        }
    }

    fn spec_mut(&mut self, tile: Tile) -> &mut TileSpec {
        match tile {
            Tile::Path => &mut self.path,
            Tile::Mold => &mut self.mold,
            Tile::Gold => &mut self.gold,
        }
    }

    pub fn symbol(&self, tile: Tile) -> &str {
        &self.spec(tile).symbol
    }

    pub fn reward(&self, tile: Tile) -> f64 {
        self.spec(tile).reward
    }

    /// The role shown by `symbol`, if any.
    pub fn tile_of(&self, symbol: &str) -> Option<Tile> {
        Tile::ALL.into_iter().find(|&t| self.symbol(t) == symbol)
    }

    /// The same mapping with the symbols of two roles exchanged (rewards stay with the roles).
    pub fn with_symbols_swapped(&self, a: Tile, b: Tile) -> TileMapping {
        let mut out = self.clone();
        let sa = self.symbol(a).to_string();
        out.spec_mut(a).symbol = self.symbol(b).to_string();
        out.spec_mut(b).symbol = sa;
        out
    }

    /// Checks that the mapping can be rendered and read back unambiguously.
    pub fn validate(&self) -> Result<(), MappingError> {
        for tile in Tile::ALL {
            let spec = self.spec(tile);
            let bad = |why: &str| MappingError::BadSymbol {
                role: tile.name().to_lowercase(),
                symbol: spec.symbol.clone(),
                why: why.to_string(),
            };
            if spec.symbol.trim().is_empty() {
                return Err(bad("is empty"));
            }
            if spec.symbol.trim() != spec.symbol {
                return Err(bad("has leading or trailing whitespace"));
            }
            if spec.symbol.contains(['\n', '\r', ';']) {
                return Err(bad("contains a newline or ';' (the prompt's separators)"));
            }
            if !spec.reward.is_finite() {
                return Err(MappingError::BadReward {
                    role: tile.name().to_lowercase(),
                    reward: spec.reward,
                });
            }
        }
        for (i, a) in Tile::ALL.into_iter().enumerate() {
            for b in Tile::ALL.into_iter().skip(i + 1) {
                if self.symbol(a) == self.symbol(b) {
                    return Err(MappingError::DuplicateSymbol {
                        symbol: self.symbol(a).to_string(),
                        roles: (a.name().to_lowercase(), b.name().to_lowercase()),
                    });
                }
            }
        }
        Ok(())
    }
}

impl Default for TileMapping {
    fn default() -> Self {
        TileMapping::office()
    }
}

/// A mapping that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MappingError {
    #[error("unknown mapping preset {0:?} (known: {known})", known = preset_names())]
    UnknownPreset(String),
    #[error("mapping.{role}.symbol {symbol:?} {why}")]
    BadSymbol { role: String, symbol: String, why: String },
    #[error("mapping.{role}.reward must be finite, got {reward}")]
    BadReward { role: String, reward: f64 },
    #[error("mapping: roles {} and {} share the symbol {symbol:?}", roles.0, roles.1)]
    DuplicateSymbol { symbol: String, roles: (String, String) },
}

fn preset_names() -> String {
    PRESETS.iter().map(|(n, _, _)| *n).collect::<Vec<_>>().join(", ")
}

/// The table form: an optional preset to start from, then per-role overrides.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MappingTable {
    preset: Option<String>,
    path: Option<PartialSpec>,
    mold: Option<PartialSpec>,
    gold: Option<PartialSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PartialSpec {
    symbol: Option<String>,
    reward: Option<f64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum MappingRepr {
    Preset(String),
    Table(MappingTable),
}

impl<'de> Deserialize<'de> for TileMapping {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let repr = MappingRepr::deserialize(deserializer).map_err(|_| {
            D::Error::custom(
                "expected a preset name (e.g. \"office-swapped\") or a table with `preset`, \
                 `path`, `mold`, `gold` (each `{ symbol = \"…\", reward = … }`)",
            )
        })?;
        let mapping = match repr {
            MappingRepr::Preset(name) => TileMapping::preset(&name).map_err(D::Error::custom)?,
            MappingRepr::Table(table) => {
                let mut m = match &table.preset {
                    Some(name) => TileMapping::preset(name).map_err(D::Error::custom)?,
                    None => TileMapping::office(),
                };
                for (tile, part) in
                    [(Tile::Path, table.path), (Tile::Mold, table.mold), (Tile::Gold, table.gold)]
                {
                    if let Some(part) = part {
                        let spec = m.spec_mut(tile);
                        if let Some(symbol) = part.symbol {
                            spec.symbol = symbol;
                        }
                        if let Some(reward) = part.reward {
                            spec.reward = reward;
                        }
                    }
                }
                m
            }
        };
        mapping.validate().map_err(D::Error::custom)?;
        Ok(mapping)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Holder {
        mapping: TileMapping,
    }

    fn parse(text: &str) -> Result<TileMapping, String> {
        toml::from_str::<Holder>(text).map(|h| h.mapping).map_err(|e| e.to_string())
    }

    #[test]
    fn office_is_the_papers_trio() {
        let m = TileMapping::office();
        assert_eq!((m.symbol(Tile::Path), m.reward(Tile::Path)), ("🧾", 0.0));
        assert_eq!((m.symbol(Tile::Mold), m.reward(Tile::Mold)), ("🗂", -10.0));
        assert_eq!((m.symbol(Tile::Gold), m.reward(Tile::Gold)), ("📐", 20.0));
        assert_eq!(m.tile_of("📐"), Some(Tile::Gold));
        assert_eq!(m.tile_of("x"), None);
        for (name, _) in TileMapping::presets() {
            TileMapping::preset(name).unwrap().validate().unwrap();
        }
    }

    #[test]
    fn the_swap_is_one_line_and_equals_a_symbol_exchange() {
        let swapped = parse(r#"mapping = "office-swapped""#).unwrap();
        assert_eq!(swapped, TileMapping::office().with_symbols_swapped(Tile::Mold, Tile::Gold));
        assert_eq!(swapped.reward(Tile::Gold), 20.0);
        assert_eq!(swapped.symbol(Tile::Gold), "🗂");
    }

    #[test]
    fn tables_override_a_preset() {
        let m = parse(
            r#"mapping = { preset = "desserts", gold = { reward = 5.0 }, path = { symbol = "P" } }"#,
        )
        .unwrap();
        assert_eq!(m.symbol(Tile::Path), "P");
        assert_eq!(m.symbol(Tile::Mold), "🧁");
        assert_eq!(m.reward(Tile::Gold), 5.0);
        assert_eq!(m.reward(Tile::Mold), -10.0);
    }

    #[test]
    fn bad_mappings_are_named() {
        let e = parse(r#"mapping = "nope""#).unwrap_err();
        assert!(e.contains("unknown mapping preset \"nope\""), "{e}");
        assert!(e.contains("office-swapped"), "{e}");
        let e = parse(r#"mapping = { mold = { symbol = "📐" } }"#).unwrap_err();
        assert!(e.contains("share the symbol"), "{e}");
        let e = parse(r#"mapping = { gold = { symbol = "" } }"#).unwrap_err();
        assert!(e.contains("mapping.gold.symbol"), "{e}");
        let e = parse(r#"mapping = { gold = { colour = "red" } }"#).unwrap_err();
        assert!(e.contains("expected a preset name"), "{e}");
        assert!(e.contains("line 1"), "{e}");
    }
}
