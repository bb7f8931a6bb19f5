//! `berth`: the user's command line, in docker/podman style. It runs without a
//! daemon; the logic lives in the library crates, and this binary parses
//! flags, adds context to errors and prints.
//!
//! Exit codes follow docker: 0 on success, 125 when berth itself fails.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

mod format;
mod images;
mod progress;
mod volumes;

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "berth",
    version,
    about = "berth: containers and images, without a daemon"
)]
pub struct Cli {
    /// Where images and containers are stored.
    #[arg(
        long,
        global = true,
        env = "BERTH_ROOT",
        default_value = "/var/lib/berth"
    )]
    pub root: PathBuf,
    /// Log level: error, warn, info, debug, trace.
    #[arg(long, global = true, default_value = "warn")]
    pub log_level: String,
    /// A registry (HOST[:PORT]) that may be reached over plain HTTP or with
    /// unverified TLS. Repeatable. localhost and 127.0.0.1 are always allowed.
    #[arg(
        long = "insecure-registry",
        global = true,
        env = "BERTH_INSECURE_REGISTRIES",
        value_delimiter = ','
    )]
    pub insecure_registries: Vec<String>,
    /// The auth file (docker config.json format).
    #[arg(long, global = true, env = "REGISTRY_AUTH_FILE")]
    pub authfile: Option<PathBuf>,
    /// Dirs with HOST[:PORT]/ca.crt for registry TLS (repeatable).
    #[arg(long = "cert-dir", global = true)]
    pub cert_dirs: Vec<PathBuf>,
    /// The snapshotter: auto, overlay or native.
    #[arg(long, global = true, env = "BERTH_SNAPSHOTTER", default_value = "auto")]
    pub snapshotter: String,
    #[command(subcommand)]
    pub command: Command,
}

/// Commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Pull an image from a registry.
    Pull(images::PullArgs),
    /// Push an image to a registry.
    Push(images::PushArgs),
    /// List images.
    Images(images::ImagesArgs),
    /// Remove images.
    Rmi(images::RmiArgs),
    /// Give an image another name.
    Tag(images::TagArgs),
    /// Write images to an archive (docker-archive or oci-archive).
    Save(images::SaveArgs),
    /// Load images from an archive.
    Load(images::LoadArgs),
    /// Import an OCI image layout directory.
    Import(images::ImportArgs),
    /// Log in to a registry.
    Login(images::LoginArgs),
    /// Log out of a registry.
    Logout(images::LogoutArgs),
    /// Image commands.
    #[command(subcommand)]
    Image(ImageCommand),
    /// System commands.
    #[command(subcommand)]
    System(SystemCommand),
    /// Volume commands.
    #[command(subcommand)]
    Volume(volumes::VolumeCommand),
}

/// `berth image ...`.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Show images' details as JSON.
    Inspect(images::InspectArgs),
    /// Show an image's history.
    History(images::HistoryArgs),
    /// Remove unused images.
    Prune(images::PruneArgs),
    /// List images.
    #[command(alias = "list")]
    Ls(images::ImagesArgs),
    /// Pull an image.
    Pull(images::PullArgs),
    /// Push an image.
    Push(images::PushArgs),
    /// Remove images.
    Rm(images::RmiArgs),
    /// Tag an image.
    Tag(images::TagArgs),
    /// Save images to an archive.
    Save(images::SaveArgs),
    /// Load images from an archive.
    Load(images::LoadArgs),
    /// Import an OCI image layout directory.
    Import(images::ImportArgs),
}

/// `berth system ...`.
#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Verify the image store: blob digests, missing and orphaned content.
    Check(images::CheckArgs),
    /// Remove unreferenced content and snapshots.
    Gc(images::GcArgs),
}

/// Flags shared by registry commands.
#[derive(Debug, Clone, Args)]
pub struct TlsArgs {
    /// Require HTTPS and verify certificates (false allows plain HTTP).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub tls_verify: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cli.log_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("Error: {}", message(&e));
            ExitCode::from(125)
        }
    }
}

/// The error and its causes on one line, leaving out a cause whose text the
/// line already holds (library errors often embed their source's message).
fn message(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let c = cause.to_string();
        if out.contains(&c) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&c);
    }
    out
}

fn run(cli: Cli) -> Result<ExitCode> {
    use Command as C;
    use ImageCommand as I;
    match &cli.command {
        C::Pull(a) | C::Image(I::Pull(a)) => images::pull(&cli, a),
        C::Push(a) | C::Image(I::Push(a)) => images::push(&cli, a),
        C::Images(a) | C::Image(I::Ls(a)) => images::images(&cli, a),
        C::Rmi(a) | C::Image(I::Rm(a)) => images::rmi(&cli, a),
        C::Tag(a) | C::Image(I::Tag(a)) => images::tag(&cli, a),
        C::Save(a) | C::Image(I::Save(a)) => images::save(&cli, a),
        C::Load(a) | C::Image(I::Load(a)) => images::load(&cli, a),
        C::Import(a) | C::Image(I::Import(a)) => images::import(&cli, a),
        C::Login(a) => images::login(&cli, a),
        C::Logout(a) => images::logout(&cli, a),
        C::Image(I::Inspect(a)) => images::inspect(&cli, a),
        C::Image(I::History(a)) => images::history(&cli, a),
        C::Image(I::Prune(a)) => images::prune(&cli, a),
        C::System(SystemCommand::Check(a)) => images::check(&cli, a),
        C::System(SystemCommand::Gc(a)) => images::gc(&cli, a),
        C::Volume(c) => volumes::run(&cli, c),
    }
}
