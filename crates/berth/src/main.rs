//! `berth`: the user's command line, in docker/podman style. It runs without a
//! daemon; the logic lives in the library crates, and this binary parses
//! flags, adds context to errors and prints.
//!
//! Exit codes follow docker: 0 on success, 125 when berth itself fails.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

mod containers;
mod daemon;
mod format;
mod images;
mod networks;
mod progress;
mod system;
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
    /// Where runtime state and attach sockets live (normally on tmpfs).
    #[arg(
        long = "run-dir",
        global = true,
        env = "BERTH_RUN_DIR",
        default_value = "/run/berth"
    )]
    pub run_dir: PathBuf,
    /// The most one image layer may unpack to, counting each file at its
    /// full size (a sparse file with its holes) as well as the uncompressed
    /// stream: a layer past it is refused. docker's units (1024-based):
    /// 512m, 32g, 1t.
    #[arg(
        long = "max-layer-size",
        global = true,
        env = "BERTH_MAX_LAYER_SIZE",
        default_value = "32g"
    )]
    pub max_layer_size: String,
    /// The snapshotter: auto, overlay or native.
    #[arg(long, global = true, env = "BERTH_SNAPSHOTTER", default_value = "auto")]
    pub snapshotter: String,
    /// Where CNI network config lists are (berth's networks are written
    /// there too).
    #[arg(
        long = "network-config-dir",
        global = true,
        env = "BERTH_NETWORK_CONFIG_DIR",
        default_value = "/etc/cni/net.d"
    )]
    pub network_config_dir: PathBuf,
    /// Where CNI plugins are, colon-separated.
    #[arg(
        long = "cni-plugin-dir",
        global = true,
        env = "BERTH_CNI_PATH",
        default_value = "/usr/lib/cni:/opt/cni/bin"
    )]
    pub cni_plugin_dirs: String,
    /// How the default network is set up: `fast` (in-process netlink and
    /// nftables) or `cni` (its plugins, as every other network).
    #[arg(
        long = "network-backend",
        global = true,
        env = "BERTH_NETWORK_BACKEND",
        default_value = "fast",
        value_parser = ["fast", "cni"]
    )]
    pub network_backend: String,
    /// Where networks made without a subnet take one (the default network
    /// included), as docker's `--default-address-pool`: `base=CIDR,size=N`,
    /// repeatable, tried in order. In the environment, separated by spaces.
    /// Default: 10.90.0.0/16 for the default network and /24s of
    /// 10.91.0.0/16 for the others, then docker's pools (172.17-31.0.0/16 as
    /// /16s, 192.168.0.0/16 as /20s).
    #[arg(
        long = "default-address-pool",
        global = true,
        env = "BERTH_DEFAULT_ADDRESS_POOLS",
        value_delimiter = ' ',
        value_parser = parse_address_pool
    )]
    pub default_address_pools: Vec<berth_engine::networks::AddressPool>,
    /// The store namespace (as containerd's): containers and volumes are
    /// each namespace's own, images are shared. Kubernetes' are in k8s.io.
    #[arg(
        long,
        global = true,
        env = "BERTH_NAMESPACE",
        default_value = berth_engine::namespace::DEFAULT,
        value_parser = parse_namespace
    )]
    pub namespace: berth_engine::namespace::Namespace,
    #[command(subcommand)]
    pub command: Command,
}

fn parse_namespace(s: &str) -> Result<berth_engine::namespace::Namespace, String> {
    berth_engine::namespace::Namespace::new(s).map_err(|e| e.to_string())
}

fn parse_address_pool(s: &str) -> Result<berth_engine::networks::AddressPool, String> {
    berth_engine::networks::AddressPool::parse(s).map_err(|e| e.to_string())
}

/// Commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a container and run it.
    Run(containers::RunArgs),
    /// Create a container without starting it.
    Create(containers::CreateArgs),
    /// Start containers.
    Start(containers::StartArgs),
    /// Stop containers: the stop signal, then SIGKILL after a timeout.
    Stop(containers::StopArgs),
    /// Stop and start containers again.
    Restart(containers::RestartArgs),
    /// Send a signal to containers.
    Kill(containers::KillArgs),
    /// Remove containers.
    Rm(containers::RmArgs),
    /// Freeze every process of containers.
    Pause(containers::PauseArgs),
    /// Thaw paused containers.
    Unpause(containers::PauseArgs),
    /// Wait for containers to exit and print their exit codes.
    Wait(containers::WaitArgs),
    /// List containers.
    #[command(alias = "list")]
    Ps(containers::PsArgs),
    /// Show containers' or images' details as JSON.
    Inspect(containers::InspectArgs),
    /// Show the processes of a container.
    Top(containers::TopArgs),
    /// List a container's published ports.
    Port(containers::PortArgs),
    /// Rename a container.
    Rename(containers::RenameArgs),
    /// Show a container's output.
    Logs(containers::LogsArgs),
    /// Run a command in a running container.
    Exec(containers::ExecArgs),
    /// Attach to a running container's output (and stdin).
    Attach(containers::AttachArgs),
    /// Copy files between a container and the host.
    Cp(containers::CpArgs),
    /// Write a container's filesystem as a tar archive.
    Export(containers::ExportArgs),
    /// Make an image from a container's changes.
    Commit(containers::CommitArgs),
    /// Container commands.
    #[command(subcommand)]
    Container(ContainerCommand),
    /// Show system-wide information.
    Info(system::FormatArgs),
    /// Show the versions of berth and its runtime.
    Version(system::FormatArgs),
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
    /// Network commands.
    #[command(subcommand)]
    Network(networks::NetworkCommand),
    /// Serve the CRI v1 API (Kubernetes' kubelet) on a unix socket.
    Daemon(daemon::DaemonArgs),
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

/// `berth container ...`.
#[derive(Debug, Subcommand)]
pub enum ContainerCommand {
    /// Create a container and run it.
    Run(containers::RunArgs),
    /// Create a container.
    Create(containers::CreateArgs),
    /// Start containers.
    Start(containers::StartArgs),
    /// Stop containers.
    Stop(containers::StopArgs),
    /// Restart containers.
    Restart(containers::RestartArgs),
    /// Signal containers.
    Kill(containers::KillArgs),
    /// Remove containers.
    Rm(containers::RmArgs),
    /// Pause containers.
    Pause(containers::PauseArgs),
    /// Unpause containers.
    Unpause(containers::PauseArgs),
    /// Wait for containers.
    Wait(containers::WaitArgs),
    /// List containers.
    #[command(alias = "list", alias = "ps")]
    Ls(containers::PsArgs),
    /// Inspect containers.
    Inspect(containers::InspectArgs),
    /// Processes of a container.
    Top(containers::TopArgs),
    /// Ports of a container.
    Port(containers::PortArgs),
    /// Rename a container.
    Rename(containers::RenameArgs),
    /// A container's output.
    Logs(containers::LogsArgs),
    /// Run a command in a container.
    Exec(containers::ExecArgs),
    /// Attach to a container.
    Attach(containers::AttachArgs),
    /// Copy files between a container and the host.
    Cp(containers::CpArgs),
    /// Export a container's filesystem.
    Export(containers::ExportArgs),
    /// Commit a container to an image.
    Commit(containers::CommitArgs),
}

/// `berth system ...`.
#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Verify the image store: blob digests, missing and orphaned content.
    Check(images::CheckArgs),
    /// Remove unreferenced content and snapshots.
    Gc(images::GcArgs),
    /// Show disk usage of images and containers.
    Df(system::DfArgs),
    /// Remove stopped containers and dangling (or, with -a, unused) images.
    Prune(system::PruneArgs),
    /// Show system-wide information.
    Info(system::FormatArgs),
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
            ExitCode::from(containers::error_code(&e))
        }
    }
}

/// The error and its causes on one line, leaving out a cause whose text the
/// line already holds (library errors often embed their source's message).
pub(crate) fn message(e: &anyhow::Error) -> String {
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
    use ContainerCommand as K;
    use ImageCommand as I;
    match &cli.command {
        C::Run(a) | C::Container(K::Run(a)) => containers::run(&cli, a),
        C::Create(a) | C::Container(K::Create(a)) => containers::create(&cli, a),
        C::Start(a) | C::Container(K::Start(a)) => containers::start(&cli, a),
        C::Stop(a) | C::Container(K::Stop(a)) => containers::stop(&cli, a),
        C::Restart(a) | C::Container(K::Restart(a)) => containers::restart(&cli, a),
        C::Kill(a) | C::Container(K::Kill(a)) => containers::kill(&cli, a),
        C::Rm(a) | C::Container(K::Rm(a)) => containers::rm(&cli, a),
        C::Pause(a) | C::Container(K::Pause(a)) => containers::pause(&cli, a),
        C::Unpause(a) | C::Container(K::Unpause(a)) => containers::unpause(&cli, a),
        C::Wait(a) | C::Container(K::Wait(a)) => containers::wait(&cli, a),
        C::Ps(a) | C::Container(K::Ls(a)) => containers::ps(&cli, a),
        C::Inspect(a) | C::Container(K::Inspect(a)) => containers::inspect(&cli, a),
        C::Top(a) | C::Container(K::Top(a)) => containers::top(&cli, a),
        C::Port(a) | C::Container(K::Port(a)) => containers::port(&cli, a),
        C::Rename(a) | C::Container(K::Rename(a)) => containers::rename(&cli, a),
        C::Logs(a) | C::Container(K::Logs(a)) => containers::logs(&cli, a),
        C::Exec(a) | C::Container(K::Exec(a)) => containers::exec(&cli, a),
        C::Attach(a) | C::Container(K::Attach(a)) => containers::attach_cmd(&cli, a),
        C::Cp(a) | C::Container(K::Cp(a)) => containers::cp(&cli, a),
        C::Export(a) | C::Container(K::Export(a)) => containers::export(&cli, a),
        C::Commit(a) | C::Container(K::Commit(a)) => containers::commit(&cli, a),
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
        C::System(SystemCommand::Df(a)) => system::df(&cli, a),
        C::System(SystemCommand::Prune(a)) => system::prune(&cli, a),
        C::Info(a) | C::System(SystemCommand::Info(a)) => system::info(&cli, a),
        C::Version(a) => system::version(&cli, a),
        C::Volume(c) => volumes::run(&cli, c),
        C::Network(c) => networks::run(&cli, c),
        C::Daemon(a) => daemon::run(&cli, a),
    }
}
