//! Sweep manifests: TOML (YAML and JSON accepted) → validated [`Manifest`] → [`Trial`]s.
//!
//! Each format is read into one position-carrying tree (`node`), which a single validator
//! turns into a [`Manifest`], so the three formats obey the same rules and report the same
//! errors, located as `file:line:column: field.path: message`.

pub mod error;
pub mod model;

mod expand;
mod json_src;
mod node;
mod params;
mod schema;
#[cfg(test)]
mod tests;
mod toml_src;
mod units;
mod validate;
mod yaml_src;

pub use error::{ManifestError, ManifestErrors};
pub use expand::expand;
pub use model::*;
pub use schema::json_schema;

use node::Diagnostics;

/// The notation a manifest is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ManifestFormat {
    Toml,
    Yaml,
    Json,
}

impl ManifestFormat {
    /// `toml`, `yaml`/`yml` or `json` (any case), as given to `--format`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "toml" => Some(Self::Toml),
            "yaml" | "yml" => Some(Self::Yaml),
            "json" => Some(Self::Json),
            _ => None,
        }
    }

    /// By the file name's extension; TOML, the documented format, when it says nothing.
    pub fn guess(source_name: &str) -> Self {
        std::path::Path::new(source_name)
            .extension()
            .and_then(|e| e.to_str())
            .and_then(Self::from_name)
            .unwrap_or(Self::Toml)
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Toml => "toml",
            Self::Yaml => "yaml",
            Self::Json => "json",
        }
    }
}

impl std::fmt::Display for ManifestFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Parses and validates a manifest. `source` names it in errors (a file name, or
/// "<manifest>"). Every problem found is returned, sorted by position; a syntax error stops
/// at that error.
pub fn parse(text: &str, format: ManifestFormat, source: &str) -> Result<Manifest, ManifestErrors> {
    let mut diag = Diagnostics::new(source);
    let root = match format {
        ManifestFormat::Toml => toml_src::read(text, &mut diag),
        ManifestFormat::Yaml => yaml_src::read(text, &mut diag),
        ManifestFormat::Json => json_src::read(text, &mut diag),
    };
    let Some(root) = root else {
        return Err(diag.into_errors());
    };
    let mut manifest = validate::validate(&root, &mut diag);
    if !diag.is_empty() {
        return Err(diag.into_errors());
    }
    manifest.locations.source = source.to_owned();
    Ok(manifest)
}
