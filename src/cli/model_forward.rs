//! `wax model forward`: one forward pass, its logits and chosen activations saved to a
//! safetensors file (see `wax_worker::builtin::forward_to_file`).

use clap::Args;
use std::io::Write;
use std::path::PathBuf;
use wax_worker::builtin::{ForwardRequest, forward_to_file, resolve_model_ref};

#[derive(Args)]
pub struct ForwardArgs {
    /// `builtin:<size>[@seed]` or a local Hugging Face snapshot directory.
    reference: String,
    #[arg(long)]
    prompt: String,
    /// Render the prompt as a user turn with the model's chat template (with the assistant
    /// turn opened).
    #[arg(long)]
    chat: bool,
    /// Layers to keep, comma separated (default: all).
    #[arg(long, value_delimiter = ',')]
    layers: Vec<usize>,
    /// Hook sites to keep at those layers, comma separated: resid_pre, attn_out, resid_mid,
    /// mlp_out, resid_post.
    #[arg(long, value_delimiter = ',', default_value = "resid_post")]
    sites: Vec<String>,
    /// Most likely next tokens to print for the last position.
    #[arg(long, default_value_t = 5)]
    top_k: usize,
    /// The safetensors file to write.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(a: ForwardArgs, json: bool, out: &mut impl Write) -> anyhow::Result<()> {
    let dir = resolve_model_ref(&a.reference)?;
    let req = ForwardRequest {
        prompt: a.prompt,
        chat: a.chat,
        layers: (!a.layers.is_empty()).then_some(a.layers),
        sites: a.sites,
        top_k: a.top_k,
    };
    let r = forward_to_file(&dir, &a.reference, &req, &a.out)?;
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&r)?)?;
        return Ok(());
    }
    writeln!(out, "{} tokens -> {}", r.input_ids.len(), a.out.display())?;
    for (name, shape) in &r.tensors {
        writeln!(out, "  {name:<16} {shape:?}")?;
    }
    writeln!(out, "next token after the last position:")?;
    for t in &r.next {
        writeln!(out, "  {:>8} {:>+9.4} {:?}", t.id, t.logprob, t.text)?;
    }
    Ok(())
}
