//! `berth volume create|ls|inspect|rm|prune`, with docker's output.
//!
//! A volume is in use when a container record's `config.host` mounts it
//! ([`berth_engine::volumes::in_use`]); such volumes are never removed.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, BufRead, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use berth_engine::records::ContainerStore;
use berth_engine::volumes::{self, VolumeError, VolumeStore};
use berth_image::meta::MetaDb;
use clap::{Args, Subcommand};

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
    let store = VolumeStore::in_namespace(&cli.root, &cli.namespace);
    match c {
        VolumeCommand::Create(a) => create(&store, a),
        VolumeCommand::Ls(a) => ls(&store, a),
        VolumeCommand::Inspect(a) => inspect(&store, a),
        VolumeCommand::Rm(a) => rm(cli, &store, a),
        VolumeCommand::Prune(a) => prune(cli, &store, a),
    }
}

/// The volumes that this namespace's containers mount.
fn in_use(cli: &Cli) -> Result<BTreeSet<String>> {
    let meta = MetaDb::open(&cli.root.join("meta.redb"))
        .with_context(|| format!("opening the metadata DB in {}", cli.root.display()))?;
    let recs = ContainerStore::in_namespace(meta, cli.namespace.clone())
        .list()
        .context("reading container records")?;
    Ok(volumes::in_use(&recs))
}

fn create(store: &VolumeStore, a: &CreateArgs) -> Result<ExitCode> {
    if a.driver != "local" {
        bail!("volume driver {:?} is not supported: only local", a.driver);
    }
    let mut labels = BTreeMap::new();
    for l in &a.labels {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        if k.is_empty() {
            bail!("invalid label {l:?}: expected KEY=VALUE");
        }
        labels.insert(k.to_string(), v.to_string());
    }
    let name = match &a.name {
        Some(n) => n.clone(),
        None => volumes::random_name()?,
    };
    let (v, _) = store.create(&name, labels, false, true)?;
    println!("{}", v.name);
    Ok(ExitCode::SUCCESS)
}

fn ls(store: &VolumeStore, a: &LsArgs) -> Result<ExitCode> {
    let vols = store.list()?;
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

fn inspect(store: &VolumeStore, a: &InspectArgs) -> Result<ExitCode> {
    let mut docs = Vec::new();
    let mut errors = Vec::new();
    for n in &a.names {
        match store.get(n) {
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

fn rm(cli: &Cli, store: &VolumeStore, a: &RmArgs) -> Result<ExitCode> {
    let used = in_use(cli)?;
    let mut errors = Vec::new();
    for n in &a.names {
        match store.remove(n, &used) {
            Ok(()) => println!("{n}"),
            Err(VolumeError::NotFound(_)) if a.force => {}
            Err(e) => errors.push(e.to_string()),
        }
    }
    if !errors.is_empty() {
        return Err(anyhow!("{}", errors.join("; ")));
    }
    Ok(ExitCode::SUCCESS)
}

/// The bytes of the files under `p` (not following symlinks).
fn disk_usage(p: &Path) -> u64 {
    let Ok(md) = std::fs::symlink_metadata(p) else {
        return 0;
    };
    let mut n = if md.is_dir() { 0 } else { md.len() };
    if md.is_dir() {
        if let Ok(rd) = std::fs::read_dir(p) {
            n += rd
                .filter_map(|e| e.ok())
                .map(|e| disk_usage(&e.path()))
                .sum::<u64>();
        }
    }
    n
}

fn prune(cli: &Cli, store: &VolumeStore, a: &PruneArgs) -> Result<ExitCode> {
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
    let used = in_use(cli)?;
    let sizes: BTreeMap<String, u64> = store
        .list()?
        .into_iter()
        .map(|v| (v.name, disk_usage(&v.mountpoint)))
        .collect();
    let removed = store.prune(&used, a.all)?;
    if !removed.is_empty() {
        println!("Deleted Volumes:");
        for n in &removed {
            println!("{n}");
        }
        println!();
    }
    let freed: u64 = removed.iter().filter_map(|n| sizes.get(n)).sum();
    println!("Total reclaimed space: {}", format::human_size(freed));
    Ok(ExitCode::SUCCESS)
}
