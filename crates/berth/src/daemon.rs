//! `berth daemon`: the CRI v1 server (`berth-cri`). This only merges the
//! config file with the command line and hands over.
//!
//! Precedence: a flag or its environment variable, then the config file,
//! then the defaults (`crates/cri/README.md` lists the keys).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use berth_cri::config::{default_handlers, DaemonConfig, DEFAULT_CONFIG_PATH};
use berth_image::store::{SnapshotterKind, StoreOptions};
use clap::parser::ValueSource;
use clap::{Args, CommandFactory};

use crate::Cli;

/// `daemon`.
#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// The CRI socket to serve on (default: the config's `listen`,
    /// /run/berth/berth.sock).
    #[arg(long)]
    pub listen: Option<PathBuf>,
    /// The config file (TOML). Default /etc/berth/daemon.toml, which may be
    /// absent; a file named here must exist.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// Whether the global flag `id` was given on the command line or through
/// its environment variable (rather than defaulted).
fn given(id: &str) -> bool {
    let m = Cli::command().get_matches();
    let src = |m: &clap::ArgMatches| {
        m.try_get_raw(id)
            .ok()
            .flatten()
            .and_then(|_| m.value_source(id))
    };
    let explicit = |s: Option<ValueSource>| {
        matches!(s, Some(ValueSource::CommandLine | ValueSource::EnvVariable))
    };
    explicit(src(&m)) || m.subcommand().is_some_and(|(_, sub)| explicit(src(sub)))
}

pub fn run(cli: &Cli, a: &DaemonArgs) -> Result<ExitCode> {
    let (path, explicit) = match &a.config {
        Some(p) => (p.clone(), true),
        None => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
    };
    let mut cfg = DaemonConfig::load(&path, explicit)?;
    if given("root") {
        cfg.root = cli.root.clone();
    }
    if given("run_dir") {
        cfg.run_dir = cli.run_dir.clone();
    }
    if given("network_config_dir") {
        cfg.cni_conf_dir = cli.network_config_dir.clone();
    }
    if given("cni_plugin_dirs") {
        cfg.cni_bin_dirs = std::env::split_paths(&cli.cni_plugin_dirs).collect();
    }
    if given("insecure_registries") {
        cfg.insecure_registries
            .extend(cli.insecure_registries.iter().cloned());
    }
    if given("authfile") {
        cfg.auth_file = cli.authfile.clone();
    }
    if let Some(l) = &a.listen {
        if !l.is_absolute() {
            bail!("--listen {}: give an absolute path", l.display());
        }
        cfg.listen = l.clone();
    }
    let runtime = berth_engine::container::find_binary("berth-runtime", "BERTH_RUNTIME");
    let handlers = cfg.handlers(
        default_handlers(runtime, std::env::var_os("PATH").as_deref()),
        &path,
    )?;

    let mut store = StoreOptions::new(&cfg.root);
    store.registry.insecure = cfg.insecure_registries.clone();
    store.registry.auth_file = cfg.auth_file.clone();
    store.registry.user_agent = format!("berth/{}", env!("CARGO_PKG_VERSION"));
    let mut dirs = cli.cert_dirs.clone();
    dirs.push(PathBuf::from("/etc/berth/certs.d"));
    dirs.push(PathBuf::from("/etc/containers/certs.d"));
    dirs.push(PathBuf::from("/etc/docker/certs.d"));
    store.registry.certs_dirs = dirs;
    store.unpack.max_size =
        crate::containers::parse_bytes("--max-layer-size", &cli.max_layer_size)?;
    store.snapshotter = match cli.snapshotter.as_str() {
        "auto" => SnapshotterKind::Auto,
        "overlay" | "overlayfs" => SnapshotterKind::Overlay,
        "native" => SnapshotterKind::Native,
        other => bail!("unknown --snapshotter {other:?}: use auto, overlay or native"),
    };
    berth_cri::server::run(berth_cri::server::DaemonOptions {
        config: cfg,
        config_path: path,
        store,
        handlers,
    })
    .context("berth daemon")?;
    Ok(ExitCode::SUCCESS)
}
