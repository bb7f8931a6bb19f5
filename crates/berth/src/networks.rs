//! `berth network create|ls|inspect|rm|connect|disconnect|prune`, with
//! docker's flags and podman's output.
//!
//! Networks are CNI config lists in the config dir
//! ([`berth_engine::networks`]); a network's ID is the SHA-256 of its name,
//! as podman's CNI backend shows it.

use std::io::{self, BufRead, Write};
use std::process::ExitCode;

use anyhow::{Context, Result};
use berth_engine::api::networks::{network_id, NetworkCreateRequest};
use clap::{Args, Subcommand};

use crate::containers::open_engine;
use crate::format::{self, Row};
use crate::Cli;

/// `berth network ...`.
#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Create a bridge network.
    Create(CreateArgs),
    /// List networks.
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Show networks' details as JSON.
    Inspect(InspectArgs),
    /// Remove networks.
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Connect a container to a network.
    Connect(ConnectArgs),
    /// Disconnect a container from a network.
    Disconnect(DisconnectArgs),
    /// Remove the networks berth made that no container uses.
    Prune(PruneArgs),
}

/// `network create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The name.
    pub name: String,
    /// The subnet (A.B.C.D/N); a free /24 of 10.91.0.0/16 when left out.
    #[arg(long)]
    pub subnet: Option<String>,
    /// The gateway; the subnet's first address when left out.
    #[arg(long)]
    pub gateway: Option<String>,
    /// No NAT and no route out of the network.
    #[arg(long)]
    pub internal: bool,
    /// The driver: only `bridge`.
    #[arg(short, long, default_value = "bridge")]
    pub driver: String,
    /// The bridge's name (podman's flag); `berthN` when left out.
    #[arg(long = "interface-name")]
    pub interface_name: Option<String>,
}

/// `network ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Only names.
    #[arg(short, long)]
    pub quiet: bool,
    /// `json`, or a Go-style template over .ID, .Name, .Driver.
    #[arg(long)]
    pub format: Option<String>,
}

/// `network inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Networks.
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// `network rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Networks.
    #[arg(required = true)]
    pub names: Vec<String>,
    /// Remove the containers using them first.
    #[arg(short, long)]
    pub force: bool,
}

/// `network connect`.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// The network.
    pub network: String,
    /// The container.
    pub container: String,
    /// The container's IPv4 address on it.
    #[arg(long)]
    pub ip: Option<String>,
}

/// `network disconnect`.
#[derive(Debug, Args)]
pub struct DisconnectArgs {
    /// The network.
    pub network: String,
    /// The container.
    pub container: String,
    /// Accepted for docker compatibility.
    #[arg(short, long)]
    pub force: bool,
}

/// `network prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Do not ask.
    #[arg(short, long)]
    pub force: bool,
}

/// Runs one `network` command.
pub fn run(cli: &Cli, c: &NetworkCommand) -> Result<ExitCode> {
    match c {
        NetworkCommand::Create(a) => create(cli, a),
        NetworkCommand::Ls(a) => ls(cli, a),
        NetworkCommand::Inspect(a) => inspect(cli, a),
        NetworkCommand::Rm(a) => rm(cli, a),
        NetworkCommand::Connect(a) => connect(cli, a),
        NetworkCommand::Disconnect(a) => disconnect(cli, a),
        NetworkCommand::Prune(a) => prune(cli, a),
    }
}

fn create(cli: &Cli, a: &CreateArgs) -> Result<ExitCode> {
    let engine = open_engine(cli)?;
    let d = engine.network_create(&NetworkCreateRequest {
        name: a.name.clone(),
        driver: a.driver.clone(),
        subnet: a.subnet.clone(),
        gateway: a.gateway.clone(),
        internal: a.internal,
        bridge: a.interface_name.clone(),
    })?;
    println!("{}", d.name);
    Ok(ExitCode::SUCCESS)
}

fn ls(cli: &Cli, a: &LsArgs) -> Result<ExitCode> {
    let engine = open_engine(cli)?;
    let defs = engine.network_list()?;
    if a.quiet {
        for d in &defs {
            println!("{}", d.name);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Row> = defs
        .iter()
        .map(|d| {
            let mut r = Row::new();
            r.insert("ID", network_id(&d.name)[..12].to_string());
            r.insert("Name", d.name.clone());
            r.insert("Driver", d.driver.clone());
            r
        })
        .collect();
    let cols = [("ID", "NETWORK ID"), ("Name", "NAME"), ("Driver", "DRIVER")];
    print!("{}", format::render(&rows, &cols, a.format.as_deref())?);
    Ok(ExitCode::SUCCESS)
}

fn inspect(cli: &Cli, a: &InspectArgs) -> Result<ExitCode> {
    let engine = open_engine(cli)?;
    let mut out = Vec::new();
    let mut code = ExitCode::SUCCESS;
    for n in &a.names {
        match engine.network_inspect(n) {
            Ok(d) => out.push(d),
            Err(e) => {
                eprintln!("Error: {e}");
                code = ExitCode::from(125);
            }
        }
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(code)
}

fn rm(cli: &Cli, a: &RmArgs) -> Result<ExitCode> {
    let engine = open_engine(cli)?;
    let mut code = ExitCode::SUCCESS;
    for n in &a.names {
        match engine.network_remove(n, a.force) {
            Ok(d) => println!("{}", d.name),
            Err(e) => {
                eprintln!("Error: {e}");
                code = ExitCode::from(125);
            }
        }
    }
    Ok(code)
}

fn connect(cli: &Cli, a: &ConnectArgs) -> Result<ExitCode> {
    let engine = open_engine(cli)?;
    let c = engine.get(&a.container)?;
    engine
        .network_connect(&c, &a.network, a.ip.as_deref())
        .with_context(|| format!("connecting {} to network {}", c.name(), a.network))?;
    Ok(ExitCode::SUCCESS)
}

fn disconnect(cli: &Cli, a: &DisconnectArgs) -> Result<ExitCode> {
    let engine = open_engine(cli)?;
    let c = engine.get(&a.container)?;
    engine
        .network_disconnect(&c, &a.network)
        .with_context(|| format!("disconnecting {} from network {}", c.name(), a.network))?;
    Ok(ExitCode::SUCCESS)
}

fn prune(cli: &Cli, a: &PruneArgs) -> Result<ExitCode> {
    if !a.force {
        eprint!("WARNING! This will remove all networks berth made that no container uses.\nAre you sure you want to continue? [y/N] ");
        io::stderr().flush()?;
        let mut line = String::new();
        io::stdin().lock().read_line(&mut line)?;
        if !matches!(line.trim(), "y" | "Y" | "yes") {
            return Ok(ExitCode::SUCCESS);
        }
    }
    let engine = open_engine(cli)?;
    for n in prune_networks(&engine)? {
        println!("{n}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Removes the unused networks berth made (never the default one, never
/// another tool's); returns their names.
pub fn prune_networks(engine: &berth_engine::container::Engine) -> Result<Vec<String>> {
    Ok(engine.network_prune()?)
}
