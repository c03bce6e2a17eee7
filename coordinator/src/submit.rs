//! From manifest text to a planned, recorded sweep.

use crate::manifest::{self, ManifestErrors, ManifestFormat};
use crate::plan::{self, Plan};
use crate::records::{Millis, SweepRecord, SweepState};
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicU64, Ordering};

/// A manifest ready to submit.
pub struct Prepared {
    pub record: SweepRecord,
    pub plan: Plan,
}

/// Parses, expands and plans `text`; `format` empty means "guess from `source_name`".
pub fn prepare(
    text: &str,
    format: &str,
    source_name: &str,
    submitted_by: &str,
    now: Millis,
) -> Result<Prepared, ManifestErrors> {
    let source = if source_name.is_empty() { "<manifest>" } else { source_name };
    let fmt = if format.is_empty() {
        ManifestFormat::guess(source)
    } else {
        ManifestFormat::from_name(format).ok_or_else(|| {
            ManifestErrors(vec![manifest::ManifestError {
                source: source.to_string(),
                location: None,
                path: String::new(),
                message: format!("unknown manifest format {format:?} (toml, yaml or json)"),
            }])
        })?
    };
    let m = manifest::parse(text, fmt, source)?;
    let trials = manifest::expand(&m)?;
    let plan = plan::plan(&m, &trials, now)?;
    let record = SweepRecord {
        id: new_sweep_id(&m.sweep.name, now),
        name: m.sweep.name.clone(),
        manifest: text.to_string(),
        format: fmt.name().to_string(),
        source_name: source.to_string(),
        submitted_by: submitted_by.to_string(),
        created_ms: now,
        state: SweepState::Running,
        priority: m.sweep.priority,
        max_concurrent: m.limits.max_concurrent,
        trials: plan.trials.len() as u32,
        cached: 0,
        plan: plan.summary(),
    };
    Ok(Prepared { record, plan })
}

/// `<name>-<8 hex>`: readable, and unique across submissions of the same manifest.
fn new_sweep_id(name: &str, now: Millis) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let slug: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
        .collect::<String>()
        .split('-')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    let slug: String = slug.chars().take(40).collect();
    let nonce = format!(
        "{now}/{}/{}/{:?}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now()
    );
    let h = hex::encode(&Sha256::digest(nonce.as_bytes())[..4]);
    if slug.is_empty() { format!("sweep-{h}") } else { format!("{slug}-{h}") }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sweep_ids_are_readable_and_unique() {
        let a = super::new_sweep_id("Paper grid (full)", 1);
        let b = super::new_sweep_id("Paper grid (full)", 1);
        assert!(a.starts_with("paper-grid-full-"), "{a}");
        assert_ne!(a, b);
        assert!(super::new_sweep_id("***", 1).starts_with("sweep-"));
    }
}
