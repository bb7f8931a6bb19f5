//! `berth volume create|ls|inspect|rm|prune`, with docker's output.
//!
//! Each command calls the engine's volume service (`berth_engine::api::volumes`)
//! for the `--namespace`'s volumes and prints; a volume a container of the
//! namespace mounts is never removed.

use std::io::{self, BufRead, Write};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Result};
use berth_engine::api::volumes::VolumeCreateRequest;
use berth_engine::container::Engine;
use clap::{Args, Subcommand};

use crate::containers::open_engine;
use crate::format::{self, Row};
use crate::Cli;

/// `berth volume ...`.
#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Create a volume.
    Create(CreateArgs),
    /// List volumes.
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Show volumes' details as JSON.
    Inspect(InspectArgs),
    /// Remove volumes.
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Remove volumes no container uses.
    Prune(PruneArgs),
}

/// `volume create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The name; a random one when left out.
    pub name: Option<String>,
    /// A label, KEY=VALUE (repeatable).
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// The driver: only `local`.
    #[arg(short, long, default_value = "local")]
    pub driver: String,
}

/// `volume ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Only names.
    #[arg(short, long)]
    pub quiet: bool,
    /// `json`, or a Go-style template over .Name, .Driver, .Mountpoint, .CreatedAt.
    #[arg(long)]
    pub format: Option<String>,
}

/// `volume inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Volumes.
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// `volume rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Volumes.
    #[arg(required = true)]
    pub names: Vec<String>,
    /// No error for a volume that does not exist.
    #[arg(short, long)]
    pub force: bool,
}

/// `volume prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Do not ask.
    #[arg(short, long)]
    pub force: bool,
    /// Named volumes too, not only anonymous ones.
    #[arg(short, long)]
    pub all: bool,
}

/// Runs one `volume` command.
pub fn run(cli: &Cli, c: &VolumeCommand) -> Result<ExitCode> {
    let engine = open_engine(cli)?;
    match c {
        VolumeCommand::Create(a) => create(&engine, a),
        VolumeCommand::Ls(a) => ls(&engine, a),
        VolumeCommand::Inspect(a) => inspect(&engine, a),
        VolumeCommand::Rm(a) => rm(&engine, a),
        VolumeCommand::Prune(a) => prune(&engine, a),
    }
}

fn create(engine: &Engine, a: &CreateArgs) -> Result<ExitCode> {
    let v = engine.volume_create(&VolumeCreateRequest {
        name: a.name.clone(),
        driver: a.driver.clone(),
        labels: a.labels.clone(),
    })?;
    println!("{}", v.name);
    Ok(ExitCode::SUCCESS)
}

fn ls(engine: &Engine, a: &LsArgs) -> Result<ExitCode> {
    let vols = engine.volume_list()?;
    if a.quiet {
        for v in &vols {
            println!("{}", v.name);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Row> = vols
        .iter()
        .map(|v| {
            Row::from([
                ("Driver", "local".to_string()),
                ("Name", v.name.clone()),
                ("Mountpoint", v.mountpoint.display().to_string()),
                ("CreatedAt", v.meta.created_at.clone()),
                ("Scope", "local".to_string()),
            ])
        })
        .collect();
    let out = format::render(
        &rows,
        &[("Driver", "DRIVER"), ("Name", "VOLUME NAME")],
        a.format.as_deref(),
    )?;
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

fn inspect(engine: &Engine, a: &InspectArgs) -> Result<ExitCode> {
    let mut docs = Vec::new();
    let mut errors = Vec::new();
    for n in &a.names {
        match engine.volume_get(n) {
            Ok(v) => docs.push(v.inspect()),
            Err(e) => errors.push(e.to_string()),
        }
    }
    println!("{}", serde_json::to_string_pretty(&docs)?);
    if !errors.is_empty() {
        bail!("{}", errors.join("; "));
    }
    Ok(ExitCode::SUCCESS)
}

fn rm(engine: &Engine, a: &RmArgs) -> Result<ExitCode> {
    let mut errors = Vec::new();
    for n in &a.names {
        match engine.volume_remove(n, a.force) {
            Ok(true) => println!("{n}"),
            Ok(false) => {}
            Err(e) => errors.push(e.to_string()),
        }
    }
    if !errors.is_empty() {
        return Err(anyhow!("{}", errors.join("; ")));
    }
    Ok(ExitCode::SUCCESS)
}

fn prune(engine: &Engine, a: &PruneArgs) -> Result<ExitCode> {
    if !a.force {
        let what = if a.all {
            "all local volumes"
        } else {
            "anonymous local volumes"
        };
        print!("WARNING! This will remove {what} not used by at least one container.\nAre you sure you want to continue? [y/N] ");
        io::stdout().flush()?;
        let mut answer = String::new();
        io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Ok(ExitCode::SUCCESS);
        }
    }
    let report = engine.volume_prune(a.all)?;
    if !report.removed.is_empty() {
        println!("Deleted Volumes:");
        for n in &report.removed {
            println!("{n}");
        }
        println!();
    }
    println!(
        "Total reclaimed space: {}",
        format::human_size(report.freed)
    );
    Ok(ExitCode::SUCCESS)
}
