//! `wax token new`: a fresh bearer token and its tokens-file entry.

use clap::Args;
use std::io::Write;
use std::path::PathBuf;
use wax_coordinator::auth::{Role, new_token, token_hash};

#[derive(Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(clap::Subcommand)]
enum TokenCommand {
    /// Make a new random token; print it, and its tokens-file entry.
    New(NewArgs),
}

#[derive(Args)]
struct NewArgs {
    /// Who holds it (shown in logs and in `submitted_by`).
    #[arg(long)]
    name: String,
    /// Roles: read, submit, worker, admin (repeatable).
    #[arg(long = "role", required = true, value_parser = parse_role)]
    roles: Vec<Role>,
    /// Append the entry to this tokens file (created if missing); the token itself is printed
    /// only on standard output.
    #[arg(long, value_name = "FILE")]
    append: Option<PathBuf>,
}

fn parse_role(s: &str) -> Result<Role, String> {
    match s {
        "read" => Ok(Role::Read),
        "submit" => Ok(Role::Submit),
        "worker" => Ok(Role::Worker),
        "admin" => Ok(Role::Admin),
        other => Err(format!("unknown role {other:?} (read, submit, worker, admin)")),
    }
}

pub fn run(a: TokenArgs) -> anyhow::Result<()> {
    match a.command {
        TokenCommand::New(n) => new(n),
    }
}

fn new(a: NewArgs) -> anyhow::Result<()> {
    let token = new_token()?;
    let roles: Vec<String> = a.roles.iter().map(|r| format!("\"{}\"", r.as_str())).collect();
    let entry = format!(
        "[[token]]\nname = {:?}\nsha256 = \"{}\"\nroles = [{}]\n",
        a.name,
        hex::encode(token_hash(&token)),
        roles.join(", ")
    );
    if let Some(path) = &a.append {
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        write!(f, "\n{entry}")?;
        eprintln!("appended `{}` to {}", a.name, path.display());
    } else {
        eprintln!("add this to the coordinator's tokens file:\n\n{entry}");
    }
    writeln!(std::io::stdout(), "{token}")?;
    Ok(())
}
