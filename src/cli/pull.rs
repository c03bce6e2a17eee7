//! `wax pull <sweep> <dir>` and `wax logs <sweep> <stage>`: a sweep's committed artifacts,
//! or one stage's log, from the artifact store.
//!
//! Pull layout: `<dir>/plan.json`; `<dir>/trials/<NNN>/params.json` and one folder per role
//! (`model`, `rl`, `extract-trained`, …) holding that stage's files; `<dir>/report/`. A stage
//! shared by several trials is downloaded once and hard-linked. Every file is checked against
//! the SHA-256 the coordinator recorded; files already there with the right hash are kept, so
//! an interrupted pull continues where it stopped.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use wax_worker::artifacts::{ArtifactStore, FileRecord, attempt_key, hash_file};

use super::settings::{CommonFlags, Settings};
use super::sweep_view::SweepView;
use super::sweeps::connect;

#[derive(Args)]
pub struct PullArgs {
    /// The sweep id.
    sweep: String,
    /// Where to put the artifacts (created; an earlier pull there is continued).
    dir: PathBuf,
    /// Only stages of this kind (model, pretrain, rl, extract, evaluate, report; repeatable).
    #[arg(long = "kind")]
    kinds: Vec<String>,
    /// Only this trial (its index; repeatable).
    #[arg(long = "trial")]
    trials: Vec<u32>,
    /// Artifact store URL (settings: `artifact_store`).
    #[arg(long, value_name = "URL")]
    store: Option<String>,
    /// Read a `wax run` state folder (its database and store) instead of a coordinator.
    #[arg(long, value_name = "DIR")]
    state: Option<PathBuf>,
}

#[derive(Args)]
pub struct LogsArgs {
    /// The sweep id.
    sweep: String,
    /// A stage id, or its first characters.
    stage: String,
    /// Which attempt (default: the committed one, else the latest).
    #[arg(long)]
    attempt: Option<u64>,
    /// Artifact store URL (settings: `artifact_store`).
    #[arg(long, value_name = "URL")]
    store: Option<String>,
    /// Read a `wax run` state folder (its database and store) instead of a coordinator.
    #[arg(long, value_name = "DIR")]
    state: Option<PathBuf>,
}

/// One file to fetch: where it is in the store, where it goes, what it must hash to.
struct Fetch {
    key: String,
    dest: PathBuf,
    record: FileRecord,
}

fn already_there(dest: &Path, record: &FileRecord) -> bool {
    std::fs::metadata(dest).is_ok_and(|m| m.len() == record.size)
        && hash_file(dest).is_ok_and(|(sha, _)| sha == record.sha256)
}

/// The sweep's view and the store: from a coordinator, or from a `wax run` state folder.
async fn open(
    flags: &CommonFlags,
    store: &Option<String>,
    state: &Option<PathBuf>,
    sweep: &str,
) -> anyhow::Result<(ArtifactStore, SweepView)> {
    let mut s = Settings::load(flags, &[("artifact_store", store.clone())])?;
    match state {
        Some(dir) => {
            anyhow::ensure!(
                dir.join("coordinator.db").is_file(),
                "{}: not a `wax run` state folder (no coordinator.db)",
                dir.display()
            );
            let dir = std::fs::canonicalize(dir)?;
            if store.is_none() {
                s.artifact_store = format!("file://{}", dir.join("store").display());
            }
            let (running, url, token) = super::run::embedded(&dir).await?;
            let conn = wax_proto::client::Connection::connect(&url, None, Some(&token)).await?;
            let view = SweepView::fetch(&conn, sweep).await;
            running.shutdown().await?;
            Ok((ArtifactStore::open(&s.artifact_store, &s.s3)?, view?))
        }
        None => {
            let conn = connect(&s).await?;
            Ok((
                ArtifactStore::open(&s.artifact_store, &s.s3)?,
                SweepView::fetch(&conn, sweep).await?,
            ))
        }
    }
}

pub async fn pull(flags: &CommonFlags, a: PullArgs) -> anyhow::Result<()> {
    let (store, view) = open(flags, &a.store, &a.state, &a.sweep).await?;
    let kind_ok = |k: &str| a.kinds.is_empty() || a.kinds.iter().any(|x| x == k);
    for k in &a.kinds {
        anyhow::ensure!(
            wax_proto::catalog::find(k).is_some(),
            "--kind {k}: not a stage kind ({})",
            wax_proto::catalog::STAGE_KINDS.iter().map(|k| k.kind).collect::<Vec<_>>().join(", ")
        );
    }
    for t in &a.trials {
        anyhow::ensure!(
            view.trials.iter().any(|x| x.index == *t),
            "--trial {t}: the sweep has trials 0..{}",
            view.trials.len()
        );
    }
    std::fs::create_dir_all(&a.dir).with_context(|| format!("creating {}", a.dir.display()))?;
    let plan_json: serde_json::Value = serde_json::json!({
        "sweep": a.sweep,
        "trials": view.trials.iter().map(|t| serde_json::json!({
            "index": t.index, "params": t.params.iter().cloned().collect::<serde_json::Map<_, _>>(), "stages": t.stages,
        })).collect::<Vec<_>>(),
    });
    std::fs::write(a.dir.join("plan.json"), serde_json::to_string_pretty(&plan_json)? + "\n")?;

    // Where each wanted stage goes.
    let mut places: Vec<(String, PathBuf)> = Vec::new();
    let mut skipped = 0;
    for t in view.trials.iter().filter(|t| a.trials.is_empty() || a.trials.contains(&t.index)) {
        let tdir = a.dir.join("trials").join(format!("{:03}", t.index));
        std::fs::create_dir_all(&tdir)?;
        let params: serde_json::Map<_, _> = t.params.iter().cloned().collect();
        std::fs::write(tdir.join("params.json"), serde_json::to_string_pretty(&params)? + "\n")?;
        for (role, id) in &t.stages {
            match view.stage(id) {
                Some(st) if kind_ok(&st.kind) && st.committed_attempt > 0 => {
                    places.push((id.clone(), tdir.join(role)))
                }
                Some(st) if kind_ok(&st.kind) => skipped += 1,
                _ => {}
            }
        }
    }
    if a.trials.is_empty() {
        for st in view.stages.iter().filter(|s| s.kind == "report" && kind_ok("report")) {
            if st.committed_attempt > 0 {
                places.push((st.stage_id.clone(), a.dir.join("report")));
            } else {
                skipped += 1;
            }
        }
    }
    // Every file once; the same content again is a hard link.
    let mut fetches = Vec::new();
    let mut links: Vec<(PathBuf, PathBuf)> = Vec::new();
    let mut first_by_sha: HashMap<String, PathBuf> = HashMap::new();
    let mut stage_files: BTreeMap<String, usize> = BTreeMap::new();
    for (id, dir) in &places {
        let st = view.stage(id).expect("listed above");
        *stage_files.entry(id.clone()).or_default() += st.files.len();
        for f in &st.files {
            let record = FileRecord::from(f);
            let dest = dir.join(&f.path);
            match first_by_sha.get(&record.sha256) {
                Some(first) => links.push((first.clone(), dest)),
                None => {
                    first_by_sha.insert(record.sha256.clone(), dest.clone());
                    let key = attempt_key(id, st.committed_attempt, &f.path);
                    fetches.push(Fetch { key, dest, record });
                }
            }
        }
    }
    let todo: Vec<&Fetch> = fetches.iter().filter(|f| !already_there(&f.dest, &f.record)).collect();
    let bytes: u64 = todo.iter().map(|f| f.record.size).sum();
    let bar = ProgressBar::new(bytes);
    bar.set_style(
        ProgressStyle::with_template("pull [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    for f in &todo {
        bar.set_message(f.record.path.clone());
        store
            .download_verified(&f.key, &f.dest, &f.record)
            .await
            .with_context(|| format!("pulling {}", f.dest.display()))?;
        bar.inc(f.record.size);
    }
    bar.finish_and_clear();
    for (from, to) in &links {
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let _ = std::fs::remove_file(to);
        if std::fs::hard_link(from, to).is_err() {
            std::fs::copy(from, to)
                .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
        }
    }
    let total: u64 = fetches.iter().map(|f| f.record.size).sum();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{}: {} stages, {} files ({:.1} MB; {:.1} MB downloaded now, the rest already there and verified) in {}",
        a.sweep,
        stage_files.len(),
        fetches.len() + links.len(),
        total as f64 / 1e6,
        bytes as f64 / 1e6,
        a.dir.display()
    )?;
    if skipped > 0 {
        writeln!(
            out,
            "{skipped} stage(s) not committed yet were left out; pull again later for them"
        )?;
    }
    Ok(())
}

pub async fn logs(flags: &CommonFlags, a: LogsArgs) -> anyhow::Result<()> {
    let (store, view) = open(flags, &a.store, &a.state, &a.sweep).await?;
    let st = view.find(&a.stage)?;
    let attempt = a.attempt.unwrap_or(if st.committed_attempt > 0 {
        st.committed_attempt
    } else {
        st.attempt
    });
    anyhow::ensure!(attempt > 0, "stage {} has not run yet ({})", st.stage_id, st.state);
    let key = attempt_key(&st.stage_id, attempt, "log.txt");
    match store.get_bytes(&key).await? {
        Some(bytes) => {
            std::io::stdout().write_all(&bytes)?;
            Ok(())
        }
        None if st.state == "leased" && attempt == st.attempt => anyhow::bail!(
            "attempt {attempt} of {} is running; its log is uploaded when it ends (progress: `wax status {}`)",
            st.stage_id,
            a.sweep
        ),
        None => anyhow::bail!("no log at {}/{key}", store.url()),
    }
}
