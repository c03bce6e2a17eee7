//! Maze settings files: `[maze]` (generation), `[env]` (episode rules) and `[synthetic]`
//! (extraction trajectories), each optional and defaulting to the paper's values.
//!
//! ```toml
//! [env]
//! mapping = "office-swapped"   # the paper's swap control, one line
//! shuffle_directions = false
//! ```

use super::episode::EnvConfig;
use super::generate::MazeConfig;
use super::synthetic::SyntheticConfig;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Everything that defines mazes, episodes and synthetic trajectories.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MazeSettings {
    pub maze: MazeConfig,
    pub env: EnvConfig,
    pub synthetic: SyntheticConfig,
}

/// A settings file that could not be used; the message names the file and the place in it.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

impl MazeSettings {
    /// Parses TOML text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<MazeSettings, SettingsError> {
        let settings: MazeSettings = toml::from_str(text).map_err(|e| SettingsError::Invalid {
            path: origin.to_string(),
            message: e.to_string(),
        })?;
        settings
            .validate()
            .map_err(|message| SettingsError::Invalid { path: origin.to_string(), message })?;
        Ok(settings)
    }

    /// Reads a TOML file.
    pub fn load(path: &Path) -> Result<MazeSettings, SettingsError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|source| SettingsError::Read { path: shown.clone(), source })?;
        MazeSettings::from_toml(&text, &shown)
    }

    /// Checks every section; the message names the field (`env.wind_probability: …`).
    pub fn validate(&self) -> Result<(), String> {
        self.maze.validate().map_err(|e| e.to_string())?;
        self.env.validate().map_err(|e| e.to_string())?;
        self.synthetic.validate().map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maze::tiles::Tile;

    #[test]
    fn empty_file_is_the_paper() {
        assert_eq!(MazeSettings::from_toml("", "x.toml").unwrap(), MazeSettings::default());
    }

    #[test]
    fn the_swap_is_one_line() {
        let s = MazeSettings::from_toml("[env]\nmapping = \"office-swapped\"\n", "x.toml").unwrap();
        assert_eq!(s.env.mapping.symbol(Tile::Gold), "🗂");
        assert_eq!(s.env.mapping.symbol(Tile::Mold), "📐");
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let e = MazeSettings::from_toml("[env]\nturns = 15\nwind = 0.2\n", "sweep.toml")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("sweep.toml: "), "{e}");
        assert!(e.contains("line 3"), "{e}");
        assert!(e.contains("unknown field `wind`"), "{e}");
        let e = MazeSettings::from_toml("[env]\nwind_probability = 1.5\n", "sweep.toml")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "sweep.toml: env.wind_probability: must be in [0, 1], got 1.5");
        let e = MazeSettings::from_toml("[maze]\nwidth = \"wide\"\n", "m.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("width"), "{e}");
    }
}
