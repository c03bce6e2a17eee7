//! `wax model …`: builtin models, inspection, generation and pretraining.

use anyhow::Context;
use clap::{Args, Subcommand};
use std::io::Write;
use std::path::PathBuf;
use wax_worker::builtin::{
    LADDER, SteerArg, TextRequest, generate_text, inspect_snapshot, resolve_model_ref,
};
use wax_worker::pretrain::{PretrainConfig, pretrain_builtin};

use super::settings::{CommonFlags, Output, Settings};

#[derive(Args)]
pub struct ModelArgs {
    #[command(subcommand)]
    command: ModelCommand,
}

#[derive(Subcommand)]
enum ModelCommand {
    /// Architecture, parameter count and chat template of a model (`builtin:<size>[@seed]` or a
    /// snapshot directory).
    Inspect(InspectArgs),
    /// Generate text from a prompt.
    Generate(GenerateArgs),
    /// One forward pass: logits and activations of chosen layers to a safetensors file.
    Forward(super::model_forward::ForwardArgs),
    /// Pretrain a builtin model on the English corpus.
    Pretrain(PretrainArgs),
    /// Convert a GGUF file (llama.cpp) into a Hugging Face snapshot directory.
    Import(super::model_import::ImportArgs),
}

#[derive(Args)]
struct InspectArgs {
    /// `builtin:<size>[@seed]` or a local Hugging Face snapshot directory.
    reference: String,
}

#[derive(Args)]
struct GenerateArgs {
    /// `builtin:<size>[@seed]` or a local Hugging Face snapshot directory.
    reference: String,
    #[arg(long)]
    prompt: String,
    /// Render the prompt as a user turn with the model's chat template.
    #[arg(long)]
    chat: bool,
    #[arg(long, default_value_t = 64)]
    max_new_tokens: usize,
    #[command(flatten)]
    sampling: super::sampling_args::SamplingArgs,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Steer with a vector: `<vectors.safetensors>:<layer>:<alpha>` (added to that layer's
    /// residual output on assistant-turn and generated tokens).
    #[arg(long, value_name = "FILE:LAYER:ALPHA")]
    steer: Option<String>,
    /// Which tensor of the steering file to use when it holds several.
    #[arg(long, value_name = "NAME", requires = "steer")]
    steer_key: Option<String>,
}

#[derive(Args)]
struct PretrainArgs {
    /// A directory of `*.txt` files, or `default` (Debian's python3-doc sources).
    #[arg(long, default_value = "default")]
    corpus: String,
    /// Ladder size (1m, 6m, 25m, 100m).
    #[arg(long)]
    size: String,
    #[arg(long, default_value_t = 1000)]
    steps: usize,
    /// Steps to checkpoint at, comma separated (written to <out>/step-<N>/).
    #[arg(long, value_delimiter = ',')]
    save_at: Vec<usize>,
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 16)]
    batch: usize,
    #[arg(long, default_value_t = 128)]
    seq_len: usize,
    /// Peak learning rate (linear warmup, cosine decay).
    #[arg(long, default_value_t = 3e-3)]
    lr: f64,
    /// Seeds the initial weights and the training windows.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Held-out loss every this many steps.
    #[arg(long, default_value_t = 100)]
    eval_every: usize,
    /// Read at most this many bytes of training text.
    #[arg(long)]
    max_train_bytes: Option<usize>,
}

pub fn run(common: &CommonFlags, args: ModelArgs) -> anyhow::Result<()> {
    let json = Settings::load(common, &[])?.output == Output::Json;
    let mut out = std::io::stdout().lock();
    match args.command {
        ModelCommand::Inspect(a) => {
            let dir = resolve_model_ref(&a.reference)?;
            let s = inspect_snapshot(&dir)?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&s)?)?;
                return Ok(());
            }
            writeln!(out, "model        {}", a.reference)?;
            writeln!(out, "snapshot     {}", s.dir)?;
            writeln!(out, "family       {}", s.family)?;
            writeln!(out, "parameters   {} ({})", s.parameters, human(s.parameters))?;
            writeln!(out, "layers       {}", s.layers)?;
            writeln!(out, "width        {} (mlp {})", s.hidden_size, s.intermediate_size)?;
            writeln!(
                out,
                "attention    {} heads, {} kv heads, head_dim {}",
                s.heads, s.kv_heads, s.head_dim
            )?;
            writeln!(
                out,
                "vocab        {}{}",
                s.vocab_size,
                s.tokenizer_vocab.map_or(String::new(), |v| format!(" (tokenizer: {v})"))
            )?;
            writeln!(out, "tied         {}", if s.tied_embeddings { "yes" } else { "no" })?;
            writeln!(out, "dtype        {}", s.dtype)?;
            writeln!(out, "positions    {}", s.max_positions)?;
            match (&s.chat_template, &s.chat_preview) {
                (Some(name), Some(preview)) => {
                    writeln!(
                        out,
                        "chat template `{name}`; a two-turn maze conversation ({} tokens):",
                        s.chat_preview_tokens.unwrap_or(0)
                    )?;
                    for line in preview.lines() {
                        writeln!(out, "  | {line}")?;
                    }
                }
                _ => writeln!(out, "chat template: none (no tokenizer.json)")?,
            }
        }
        ModelCommand::Generate(a) => {
            let steer = match &a.steer {
                Some(spec) => {
                    let mut s = SteerArg::parse(spec)?;
                    s.key = a.steer_key.clone();
                    Some(s)
                }
                None => None,
            };
            let sampling = a.sampling.sampling()?;
            let dir = resolve_model_ref(&a.reference)?;
            let r = generate_text(
                &dir,
                &TextRequest {
                    prompt: a.prompt,
                    chat: a.chat,
                    max_new_tokens: a.max_new_tokens,
                    sampling,
                    seed: a.seed,
                    steer,
                },
            )?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&r)?)?;
            } else {
                writeln!(out, "{}", r.text)?;
            }
        }
        ModelCommand::Forward(a) => super::model_forward::run(a, json, &mut out)?,
        ModelCommand::Import(a) => super::model_import::run(a, json)?,
        ModelCommand::Pretrain(a) => {
            if wax_worker::builtin::ladder_size(&a.size).is_none() {
                let names: Vec<&str> = LADDER.iter().map(|s| s.name).collect();
                anyhow::bail!(
                    "--size `{}`: not a ladder size (one of {})",
                    a.size,
                    names.join(", ")
                );
            }
            let cfg = PretrainConfig {
                corpus: (a.corpus != "default").then(|| PathBuf::from(&a.corpus)),
                steps: a.steps,
                batch: a.batch,
                seq_len: a.seq_len,
                lr: a.lr,
                seed: a.seed,
                save_at: a.save_at,
                eval_every: a.eval_every,
                train_max_bytes: a.max_train_bytes,
                progress: !json,
                ..PretrainConfig::default()
            };
            let r = pretrain_builtin(&a.size, &cfg, &a.out)
                .with_context(|| format!("pretraining builtin:{}", a.size))?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&r)?)?;
            } else {
                writeln!(
                    out,
                    "{} parameters, {} training tokens; held-out loss {:.4} -> {:.4}; {:.2} steps/s, {:.0} tokens/s",
                    r.parameters,
                    r.train_tokens,
                    r.initial_val_loss,
                    r.final_val_loss,
                    r.steps_per_second,
                    r.tokens_per_second
                )?;
                for c in &r.checkpoints {
                    writeln!(out, "checkpoint {}", c.display())?;
                }
            }
        }
    }
    Ok(())
}

fn human(n: i64) -> String {
    if n >= 1_000_000 {
        format!("{:.1}M", n as f64 / 1e6)
    } else {
        format!("{:.1}K", n as f64 / 1e3)
    }
}
