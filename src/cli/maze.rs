//! `wax maze …`: look at the environment exactly as the model will.

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use wax_worker::maze::stats::{self, StatsRequest};
use wax_worker::maze::{
    ChatFormat, Episode, Maze, MazeSettings, PolicyKind, RenderOptions, ScriptedPolicy,
    SyntheticGenerator, Tile, TileMapping, render_chat,
};

#[derive(Args)]
pub struct MazeArgs {
    #[command(subcommand)]
    command: MazeCommand,
}

#[derive(Subcommand)]
enum MazeCommand {
    /// Play one episode and print it exactly as the model sees it.
    Sample(SampleArgs),
    /// Generation statistics over many mazes.
    Stats(StatsArgs),
    /// Synthetic trajectories for vector extraction, as JSON lines or rendered chats.
    Synthetic(SyntheticArgs),
    /// List the built-in tile mappings.
    Mappings,
}

/// Settings shared by the maze subcommands.
#[derive(Args)]
struct SettingsArgs {
    /// TOML file with optional [maze], [env] and [synthetic] tables (defaults: the paper's).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Tile mapping preset, overriding the file (see `wax maze mappings`).
    #[arg(long, value_name = "PRESET")]
    mapping: Option<String>,
    /// List the neighbour clauses in N, E, S, W order instead of shuffling them.
    #[arg(long)]
    no_shuffle: bool,
    /// Turn the wind off.
    #[arg(long)]
    no_wind: bool,
    /// Turns per episode, overriding the file.
    #[arg(long)]
    turns: Option<u32>,
}

impl SettingsArgs {
    fn resolve(&self) -> anyhow::Result<MazeSettings> {
        let mut s = match &self.config {
            Some(path) => MazeSettings::load(path)?,
            None => MazeSettings::default(),
        };
        if let Some(name) = &self.mapping {
            s.env.mapping = TileMapping::preset(name)?;
        }
        if self.no_shuffle {
            s.env.shuffle_directions = false;
        }
        if self.no_wind {
            s.env.wind_probability = 0.0;
        }
        if let Some(t) = self.turns {
            s.env.turns = t;
        }
        s.validate().map_err(anyhow::Error::msg)?;
        Ok(s)
    }
}

#[derive(Copy, Clone, ValueEnum)]
enum SampleFormat {
    /// Qwen ChatML, the model's view.
    Chatml,
    /// Plain `User:` / `Assistant:` dialogue.
    Plain,
    /// The chat messages as a JSON array.
    Messages,
    /// One line per turn, like the paper's Table 25, with a map of the surroundings.
    Table,
    /// Every turn record as JSON.
    Json,
}

#[derive(Args)]
struct SampleArgs {
    /// Maze seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Seed of the wind and clause order (default: the maze seed).
    #[arg(long)]
    episode_seed: Option<u64>,
    /// Who chooses the moves.
    #[arg(long, value_enum, default_value_t = PolicyArg::Planner)]
    policy: PolicyArg,
    #[arg(long, value_enum, default_value_t = SampleFormat::Chatml)]
    format: SampleFormat,
    #[command(flatten)]
    settings: SettingsArgs,
}

#[derive(Copy, Clone, ValueEnum)]
enum PolicyArg {
    Planner,
    Greedy,
    Random,
    North,
}

impl From<PolicyArg> for PolicyKind {
    fn from(p: PolicyArg) -> Self {
        match p {
            PolicyArg::Planner => PolicyKind::Planner,
            PolicyArg::Greedy => PolicyKind::Greedy,
            PolicyArg::Random => PolicyKind::Random,
            PolicyArg::North => PolicyKind::North,
        }
    }
}

#[derive(Args)]
struct StatsArgs {
    /// Number of mazes.
    #[arg(long, default_value_t = 1000)]
    n: usize,
    /// Seed of the first maze.
    #[arg(long, default_value_t = 0)]
    first_seed: u64,
    /// Skip the exact best-return search.
    #[arg(long)]
    no_best_return: bool,
    /// Scripted policies to play one windy episode with per maze.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [PolicyArg::Planner, PolicyArg::Greedy, PolicyArg::Random, PolicyArg::North])]
    policies: Vec<PolicyArg>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    settings: SettingsArgs,
}

#[derive(Copy, Clone, ValueEnum)]
enum SyntheticFormat {
    /// One JSON object per trajectory.
    Jsonl,
    /// ChatML, as tokenised for extraction (no end-of-turn after the last move).
    Chatml,
}

#[derive(Args)]
struct SyntheticArgs {
    /// Trajectories per class (default: the settings', 5000).
    #[arg(long)]
    per_class: Option<usize>,
    #[arg(long, value_enum, default_value_t = SyntheticFormat::Jsonl)]
    format: SyntheticFormat,
    /// Write to this file instead of standard output.
    #[arg(long, short)]
    out: Option<PathBuf>,
    #[command(flatten)]
    settings: SettingsArgs,
}

pub fn run(args: MazeArgs) -> anyhow::Result<()> {
    match args.command {
        MazeCommand::Sample(a) => sample(a),
        MazeCommand::Stats(a) => stats_cmd(a),
        MazeCommand::Synthetic(a) => synthetic(a),
        MazeCommand::Mappings => {
            let mut out = std::io::stdout().lock();
            for (name, about) in TileMapping::presets() {
                let m = TileMapping::preset(name)?;
                let roles: Vec<String> = Tile::ALL
                    .iter()
                    .map(|&t| format!("{} {} ({:+})", t, m.symbol(t), m.reward(t)))
                    .collect();
                writeln!(out, "{name:<16} {}  — {about}", roles.join(", "))?;
            }
            Ok(())
        }
    }
}

fn sample(a: SampleArgs) -> anyhow::Result<()> {
    let s = a.settings.resolve()?;
    let maze = Maze::generate(&s.maze, a.seed)?;
    let env = Arc::new(s.env);
    let mut ep = Episode::new(&maze, env.clone(), a.episode_seed.unwrap_or(a.seed))?;
    let kind = PolicyKind::from(a.policy);
    ScriptedPolicy::new(kind, a.seed).play(&mut ep);
    let mut out = std::io::stdout().lock();
    let closed = RenderOptions { add_generation_prompt: false, close_final_assistant: true };
    match a.format {
        SampleFormat::Chatml => {
            write!(out, "{}", render_chat(&ep.messages(), ChatFormat::Chatml, closed))?
        }
        SampleFormat::Plain => {
            write!(out, "{}", render_chat(&ep.messages(), ChatFormat::Plain, closed))?
        }
        SampleFormat::Messages => {
            writeln!(out, "{}", serde_json::to_string_pretty(&ep.messages())?)?
        }
        SampleFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(ep.history())?)?,
        SampleFormat::Table => {
            let m = &env.mapping;
            writeln!(
                out,
                "maze seed {}, start {}; map around the start (. Path, # Mold, $ Gold):",
                a.seed, maze.start
            )?;
            write!(out, "{}", maze.grid.to_ascii(maze.start, 8, Some(maze.start)))?;
            // Emoji are two columns wide: each neighbour cell is "symbol + space".
            writeln!(
                out,
                "{:>3}  {:<10} N  E  S  W   {:<4} {:<5} {:<6} {:>7} {:>8}",
                "#", "(x, y)", "move", "wind", "onto", "reward", "cum R"
            )?;
            for t in ep.history() {
                let nb = t.observation.neighbours.map(|n| m.symbol(n).to_string());
                let onto: Vec<&str> = t.entered_tiles.iter().map(|&x| m.symbol(x)).collect();
                let wind = t.wind.map_or(String::new(), |d| d.to_string());
                let pos = t.observation.pos.to_string();
                writeln!(
                    out,
                    "{:>3}  {pos:<10} {} {} {} {}  {:<4} {wind:<5} {:<6} {:>+7.1} {:>+8.1}",
                    t.turn,
                    nb[0],
                    nb[1],
                    nb[2],
                    nb[3],
                    t.action.to_string(),
                    onto.join(""),
                    t.reward,
                    t.cumulative
                )?;
            }
        }
    }
    out.flush()?;
    let gold: u32 = ep.history().iter().map(|t| t.gold).sum();
    let mold: u32 = ep.history().iter().map(|t| t.mold).sum();
    let winds = ep.history().iter().filter(|t| t.wind.is_some()).count();
    eprintln!(
        "maze {} · {} policy · {} turns · {winds} wind · {gold} Gold · {mold} Mold · return {:+.1}",
        a.seed,
        kind.name(),
        ep.turns_taken(),
        ep.total_return()
    );
    Ok(())
}

fn progress_bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {msg} [{bar:30}] {pos}/{len} ({per_sec}, eta {eta})",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}

fn stats_cmd(a: StatsArgs) -> anyhow::Result<()> {
    if a.n == 0 {
        bail!("--n must be at least 1");
    }
    let s = a.settings.resolve()?;
    let request = StatsRequest {
        mazes: a.n,
        first_seed: a.first_seed,
        maze: s.maze,
        env: s.env,
        best_return: !a.no_best_return,
        policies: a.policies.into_iter().map(PolicyKind::from).collect(),
    };
    let bar = progress_bar(a.n as u64, "mazes");
    let started = std::time::Instant::now();
    let result = stats::collect(&request, || bar.inc(1))?;
    bar.finish_and_clear();
    let mut out = std::io::stdout().lock();
    if a.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&result)?)?;
    } else {
        write!(out, "{result}")?;
        out.flush()?;
        eprintln!(
            "({:.1} s on {} threads)",
            started.elapsed().as_secs_f64(),
            rayon::current_num_threads()
        );
    }
    Ok(())
}

fn synthetic(a: SyntheticArgs) -> anyhow::Result<()> {
    let mut s = a.settings.resolve()?;
    if let Some(n) = a.per_class {
        s.synthetic.per_class = n;
    }
    let mut generator = SyntheticGenerator::new(s.synthetic, s.maze, s.env)?;
    let mut sink: Box<dyn Write> = match &a.out {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => Box::new(std::io::stdout().lock()),
    };
    let bar = progress_bar(generator.total() as u64, "trajectories");
    if a.out.is_none() {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let open = RenderOptions { add_generation_prompt: false, close_final_assistant: false };
    for t in generator.by_ref() {
        let t = t?;
        match a.format {
            SyntheticFormat::Jsonl => writeln!(sink, "{}", serde_json::to_string(&t)?)?,
            SyntheticFormat::Chatml => {
                writeln!(
                    sink,
                    "### {} #{} · maze {} · {} moves",
                    t.class,
                    t.index,
                    t.maze_seed,
                    t.len()
                )?;
                writeln!(sink, "{}", render_chat(&t.messages, ChatFormat::Chatml, open))?;
            }
        }
        bar.inc(1);
    }
    sink.flush()?;
    bar.finish_and_clear();
    let st = generator.stats();
    eprintln!(
        "{} trajectories from {} mazes ({} rejected early, {} without a walk)",
        st.trajectories, st.mazes_generated, st.mazes_rejected_early, st.mazes_rejected_no_walk
    );
    Ok(())
}
