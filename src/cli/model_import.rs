//! `wax model import <file.gguf> --out DIR`: a GGUF model as a Hugging Face snapshot
//! (`wax_worker::gguf::import`), with a progress bar on stderr.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Args)]
pub struct ImportArgs {
    /// The GGUF file (llama architecture, byte-level BPE tokenizer; F32, F16, BF16, Q8_0, Q4_0,
    /// Q4_1, Q4_K and Q6_K tensors).
    gguf: PathBuf,
    /// The snapshot directory to write: absent, empty, or an earlier import (which is replaced).
    #[arg(long)]
    out: PathBuf,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

pub fn run(a: ImportArgs, json: bool) -> anyhow::Result<()> {
    let bar = if a.quiet {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("importing [{bar:30}] {pos}/{len} tensors {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar
    };
    let started = std::time::Instant::now();
    let summary = wax_worker::gguf::import(&a.gguf, &a.out, &mut |p| {
        bar.set_length(p.total as u64);
        bar.set_position(p.done as u64);
        bar.set_message(p.tensor.to_string());
    });
    bar.finish_and_clear();
    let s = summary?;
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&s)?)?;
        return Ok(());
    }
    let types: Vec<String> = s.source_types.iter().map(|(t, n)| format!("{n} {t}")).collect();
    writeln!(out, "imported   {}", s.source.display())?;
    writeln!(
        out,
        "into       {}{}",
        s.out.display(),
        if s.replaced_previous { " (replaced the earlier import)" } else { "" }
    )?;
    writeln!(
        out,
        "model      {} {}, {} layers, width {}, vocab {}{}",
        s.architecture,
        s.name.as_deref().unwrap_or("(unnamed)"),
        s.layers,
        s.hidden_size,
        s.vocab_size,
        if s.tied_embeddings { ", tied embeddings" } else { "" }
    )?;
    writeln!(
        out,
        "tensors    {} ({}), {} parameters written as float32 ({:.1} MB) in {:.1} s",
        s.tensors,
        types.join(", "),
        s.parameters,
        s.safetensors_bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    )?;
    Ok(())
}
