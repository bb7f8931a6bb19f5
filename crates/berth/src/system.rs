//! `info`, `version`, `system df` and `system prune`.

use std::collections::BTreeSet;
use std::io::{BufRead, Write};
use std::process::{Command, ExitCode};

use anyhow::{bail, Result};
use berth_engine::container::Status;
use berth_image::platform::Platform;
use clap::Args;
use serde_json::{json, Value};

use crate::containers::open_engine;
use crate::format;
use crate::Cli;

/// `--format` for info and version.
#[derive(Debug, Args)]
pub struct FormatArgs {
    /// json, or a template such as {{.Host.Kernel}}.
    #[arg(short, long)]
    pub format: Option<String>,
}

fn runtime_version(rt: &std::path::Path) -> String {
    Command::new(rt)
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .unwrap_or_else(|| "unknown (it did not answer --version)".into())
}

fn print_doc(v: &Value, format: Option<&str>, text: impl FnOnce(&Value) -> String) -> Result<()> {
    match format {
        Some("json") => println!("{}", serde_json::to_string_pretty(v)?),
        Some(t) => println!("{}", format::template_value(t, v)?),
        None => print!("{}", text(v)),
    }
    Ok(())
}

pub fn version(cli: &Cli, a: &FormatArgs) -> Result<ExitCode> {
    let _ = cli;
    let rt = berth_engine::container::find_binary("berth-runtime", "BERTH_RUNTIME");
    let mon = berth_engine::container::find_binary("berth-monitor", "BERTH_MONITOR");
    let v = json!({
        "Client": {
            "Version": env!("CARGO_PKG_VERSION"),
            "OsArch": format!("{}/{}", std::env::consts::OS, Platform::host().architecture),
        },
        "Runtime": {"Path": rt, "Version": runtime_version(&rt)},
        "Monitor": {"Path": mon},
    });
    print_doc(&v, a.format.as_deref(), |v| {
        format!(
            "Client:\n Version:  {}\n OS/Arch:  {}\nRuntime:\n Path:     {}\n Version:  {}\nMonitor:\n Path:     {}\n",
            v["Client"]["Version"].as_str().unwrap_or_default(),
            v["Client"]["OsArch"].as_str().unwrap_or_default(),
            v["Runtime"]["Path"].as_str().unwrap_or_default(),
            v["Runtime"]["Version"].as_str().unwrap_or_default(),
            v["Monitor"]["Path"].as_str().unwrap_or_default(),
        )
    })?;
    Ok(ExitCode::SUCCESS)
}

/// "2 (hybrid)", "1" or "2", from the mounts under /sys/fs/cgroup.
fn cgroup_version() -> &'static str {
    let v2_root = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let unified = std::path::Path::new("/sys/fs/cgroup/unified").exists();
    if v2_root {
        "2"
    } else if unified {
        "1 (hybrid, with a cgroup2 hierarchy)"
    } else {
        "1"
    }
}

pub fn info(cli: &Cli, a: &FormatArgs) -> Result<ExitCode> {
    let engine = open_engine(cli)?;
    let n = engine.container_counts()?;
    let images = engine.store().list()?.len();
    let uname = rustix::system::uname();
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("PRETTY_NAME=")
                    .map(|v| v.trim_matches('"').to_string())
            })
        })
        .unwrap_or_default();
    let mem_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0);
    let rt = engine.options().runtime.clone();
    let snapshotter = std::fs::read_to_string(cli.root.join("snapshotter"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "overlay".into());
    let v = json!({
        "Containers": n.total,
        "ContainersRunning": n.running,
        "ContainersPaused": n.paused,
        "ContainersStopped": n.stopped,
        "Namespace": engine.namespace().as_str(),
        "Images": images,
        "Storage": {"Driver": snapshotter, "RootDir": cli.root, "RunDir": cli.run_dir},
        "Runtime": {"Path": rt, "Version": runtime_version(&rt)},
        "Monitor": engine.options().monitor,
        "Host": {
            "Kernel": uname.release().to_string_lossy(),
            "OperatingSystem": os,
            "Architecture": uname.machine().to_string_lossy(),
            "CPUs": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            "MemTotal": mem_kib * 1024,
            "CgroupVersion": cgroup_version(),
            "CgroupDriver": "cgroupfs",
        },
        "Version": env!("CARGO_PKG_VERSION"),
    });
    print_doc(&v, a.format.as_deref(), |v| {
        let s = |p: &str| {
            let mut cur = v;
            for k in p.split('.') {
                cur = &cur[k];
            }
            match cur {
                Value::String(x) => x.clone(),
                x => x.to_string(),
            }
        };
        format!(
            "Containers: {}\n Running: {}\n Paused: {}\n Stopped: {}\nImages: {}\n\
             Storage Driver: {}\nRoot Dir: {}\nRun Dir: {}\nRuntime: {} ({})\nMonitor: {}\n\
             Cgroup Driver: cgroupfs\nCgroup Version: {}\nKernel Version: {}\n\
             Operating System: {}\nArchitecture: {}\nCPUs: {}\nTotal Memory: {}\nVersion: {}\n",
            s("Containers"),
            s("ContainersRunning"),
            s("ContainersPaused"),
            s("ContainersStopped"),
            s("Images"),
            s("Storage.Driver"),
            s("Storage.RootDir"),
            s("Storage.RunDir"),
            s("Runtime.Path"),
            s("Runtime.Version"),
            s("Monitor"),
            s("Host.CgroupVersion"),
            s("Host.Kernel"),
            s("Host.OperatingSystem"),
            s("Host.Architecture"),
            s("Host.CPUs"),
            format::human_size(mem_kib * 1024),
            s("Version"),
        )
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `system df`.
#[derive(Debug, Args)]
pub struct DfArgs {
    /// Show each image and container.
    #[arg(short, long)]
    pub verbose: bool,
}

fn pct(part: u64, whole: u64) -> String {
    format!("{}%", (part * 100).checked_div(whole).unwrap_or(0))
}

pub fn df(cli: &Cli, a: &DfArgs) -> Result<ExitCode> {
    let engine = open_engine(cli)?;
    let du = engine.disk_usage()?;
    let mut img_total = 0u64;
    let mut img_reclaim = 0u64;
    let mut img_active = 0;
    let mut seen = BTreeSet::new();
    for i in &du.images {
        if seen.insert(i.id.clone()) {
            img_total += i.size;
            if i.active {
                img_active += 1;
            } else {
                img_reclaim += i.size;
            }
        }
    }
    let mut ctr_total = 0u64;
    let mut ctr_reclaim = 0u64;
    let mut ctr_active = 0;
    for c in &du.containers {
        ctr_total += c.size;
        if matches!(
            c.status,
            Status::Running | Status::Paused | Status::Restarting
        ) {
            ctr_active += 1;
        } else {
            ctr_reclaim += c.size;
        }
    }
    println!(
        "{}",
        format::render(
            &[
                row("Images", seen.len(), img_active, img_total, img_reclaim),
                row(
                    "Containers",
                    du.containers.len(),
                    ctr_active,
                    ctr_total,
                    ctr_reclaim
                ),
                row("Trash", du.trash_count, 0, du.trash_size, du.trash_size),
            ],
            &[
                ("Type", "TYPE"),
                ("Total", "TOTAL"),
                ("Active", "ACTIVE"),
                ("Size", "SIZE"),
                ("Reclaimable", "RECLAIMABLE"),
            ],
            None,
        )?
        .trim_end()
    );
    if a.verbose {
        println!("\nImages space usage:");
        for i in &du.images {
            println!(
                "{}  {}  {}  {}",
                i.name,
                &i.id.trim_start_matches("sha256:")[..12],
                format::human_size(i.size),
                if i.active { "in use" } else { "unused" }
            );
        }
        println!("\nContainers space usage:");
        for c in &du.containers {
            println!(
                "{}  {}  {}  {}",
                &c.id[..12],
                c.name,
                format::human_size(c.size),
                c.status
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn row(kind: &str, total: usize, active: usize, size: u64, reclaim: u64) -> format::Row {
    let mut r = format::Row::new();
    r.insert("Type", kind.to_string());
    r.insert("Total", total.to_string());
    r.insert("Active", active.to_string());
    r.insert("Size", format::human_size(size));
    r.insert(
        "Reclaimable",
        format!("{} ({})", format::human_size(reclaim), pct(reclaim, size)),
    );
    r
}

/// `system prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove every image no container uses, not only dangling ones.
    #[arg(short, long)]
    pub all: bool,
    /// Do not ask for confirmation.
    #[arg(short, long)]
    pub force: bool,
}

pub fn prune(cli: &Cli, a: &PruneArgs) -> Result<ExitCode> {
    if !a.force {
        eprint!(
            "WARNING! This will remove:\n  - all stopped containers\n  - all networks berth made that no container uses\n  - all {} images\n\
             Are you sure you want to continue? [y/N] ",
            if a.all { "unused" } else { "dangling" }
        );
        let _ = std::io::stderr().flush();
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        if !matches!(line.trim(), "y" | "Y" | "yes") {
            bail!("system prune cancelled");
        }
    }
    let engine = open_engine(cli)?;
    let r = engine.system_prune(a.all)?;
    if !r.containers.is_empty() {
        println!("Deleted Containers:");
        for id in &r.containers {
            println!("{id}");
        }
        println!();
    }
    if !r.networks.is_empty() {
        println!("Deleted Networks:");
        for n in &r.networks {
            println!("{n}");
        }
        println!();
    }
    for leak in &r.leaked {
        eprintln!("removed leaked {leak}");
    }
    if !r.images.is_empty() {
        println!("Deleted Images:");
        for n in &r.images {
            println!("untagged: {n}");
        }
        for d in &r.removed_blobs {
            println!("deleted: {d}");
        }
        println!();
    }
    println!("Total reclaimed space: {}", format::human_size(r.freed));
    Ok(ExitCode::SUCCESS)
}
