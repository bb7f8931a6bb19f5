//! The bundle's `config.json`: a hardened default, then the process, then the
//! security flags.
//!
//! The default is docker's (moby's `DefaultLinuxSpec` and default capability
//! set): fourteen capabilities, the masked and read-only `/proc` and `/sys`
//! paths, the standard mounts with `nosuid`/`noexec`/`nodev` where docker
//! has them, new pid/ipc/uts/mount/network/cgroup namespaces, and a device
//! cgroup that denies everything but the standard character devices (and
//! `mknod` of any). `--privileged` lifts these as docker does: every
//! capability, no masked or read-only paths, `/sys` and the cgroup mount
//! writable, every device allowed.
//!
//! The seccomp profile is [`crate::seccomp`]'s default (none when
//! privileged), `unconfined`, or a profile file's. Not here yet (issue 5):
//! the host's devices under `--privileged`.

use std::collections::BTreeSet;

use oci_spec::runtime::Spec;
use serde_json::{json, Value};

use crate::process::ProcessPlan;
use crate::user::ResolvedUser;

/// docker's default capabilities.
pub const DEFAULT_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Paths hidden from an unprivileged container.
pub const MASKED_PATHS: [&str; 12] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths read-only in an unprivileged container.
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Security-related flags of `run`/`create`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SecurityFlags {
    /// `--privileged`.
    pub privileged: bool,
    /// `--cap-add` (with or without `CAP_`, any case; `ALL`).
    pub cap_add: Vec<String>,
    /// `--cap-drop` (likewise).
    pub cap_drop: Vec<String>,
    /// `--security-opt no-new-privileges`.
    pub no_new_privileges: bool,
    /// `--read-only`.
    pub read_only: bool,
    /// `--security-opt seccomp=…`.
    pub seccomp: Seccomp,
}

/// The seccomp filter of a container.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Seccomp {
    /// berth's default profile ([`crate::seccomp`]); none when privileged.
    #[default]
    Default,
    /// `seccomp=unconfined`: no filter.
    Unconfined,
    /// `seccomp=PROFILE.json`: the file's contents (OCI `linux.seccomp`).
    Profile(Value),
}

/// A spec that cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// A capability name the kernel does not have.
    #[error("unknown capability {0:?} (use names like NET_ADMIN or CAP_NET_ADMIN, or ALL)")]
    UnknownCapability(String),
    /// The generated JSON does not fit oci-spec's types (a bug in berth).
    #[error("generated config.json is not a valid OCI spec: {0}")]
    Internal(String),
}

/// Every capability name the `caps` crate knows, `CAP_*`.
fn all_caps() -> BTreeSet<String> {
    caps::all().iter().map(|c| c.to_string()).collect()
}

/// "Every capability", as podman means it for `--privileged` and
/// `--cap-add ALL`: those in this process's bounding set, since no child can
/// be given more (this host's root lacks one).
fn every_cap() -> BTreeSet<String> {
    match caps::read(None, caps::CapSet::Bounding) {
        Ok(b) => b.iter().map(|c| c.to_string()).collect(),
        Err(_) => all_caps(),
    }
}

/// `net_admin` / `CAP_NET_ADMIN` → `CAP_NET_ADMIN`; `ALL` stays `ALL`.
fn cap_name(s: &str) -> Result<String, SpecError> {
    let up = s.trim().to_ascii_uppercase();
    if up == "ALL" {
        return Ok(up);
    }
    let name = if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    };
    if all_caps().contains(&name) {
        Ok(name)
    } else {
        Err(SpecError::UnknownCapability(s.to_string()))
    }
}

/// The capability set from docker's default and the flags: `--cap-drop ALL`
/// starts from nothing, `--cap-add ALL` gives everything (in the bounding
/// set), else the default plus the additions minus the drops.
/// `--privileged` gives everything.
pub fn capabilities(f: &SecurityFlags) -> Result<BTreeSet<String>, SpecError> {
    let add: Vec<String> = f
        .cap_add
        .iter()
        .map(|c| cap_name(c))
        .collect::<Result<_, _>>()?;
    let drop: Vec<String> = f
        .cap_drop
        .iter()
        .map(|c| cap_name(c))
        .collect::<Result<_, _>>()?;
    if f.privileged || add.iter().any(|c| c == "ALL") {
        let mut all = every_cap();
        if !f.privileged {
            for d in &drop {
                all.remove(d);
            }
        }
        return Ok(all);
    }
    let mut set: BTreeSet<String> = if drop.iter().any(|c| c == "ALL") {
        BTreeSet::new()
    } else {
        DEFAULT_CAPS.iter().map(|c| c.to_string()).collect()
    };
    for c in &add {
        set.insert(c.clone());
    }
    for d in drop.iter().filter(|d| *d != "ALL") {
        if !add.contains(d) {
            set.remove(d);
        }
    }
    Ok(set)
}

/// The device cgroup rules: deny all, then docker's defaults (or allow all
/// when privileged).
fn device_rules(privileged: bool) -> Value {
    if privileged {
        return json!([{"allow": true, "access": "rwm"}]);
    }
    let mut rules = vec![
        json!({"allow": false, "access": "rwm"}),
        json!({"allow": true, "type": "c", "access": "m"}),
        json!({"allow": true, "type": "b", "access": "m"}),
    ];
    for (major, minor) in [
        (1, 3),
        (1, 8),
        (1, 7),
        (5, 0),
        (1, 5),
        (1, 9),
        (5, 1),
        (5, 2),
        (10, 200),
    ] {
        rules.push(
            json!({"allow": true, "type": "c", "major": major, "minor": minor, "access": "rwm"}),
        );
    }
    // Every pty of the container's devpts.
    rules.push(json!({"allow": true, "type": "c", "major": 136, "access": "rwm"}));
    Value::Array(rules)
}

/// The whole spec for a container whose rootfs is at `rootfs` (absolute, or
/// relative to the bundle).
pub fn build(
    plan: &ProcessPlan,
    user: &ResolvedUser,
    hostname: &str,
    rootfs: &str,
    tty: bool,
    f: &SecurityFlags,
) -> Result<Spec, SpecError> {
    let cap_set = capabilities(f)?;
    let seccomp = match &f.seccomp {
        Seccomp::Default if f.privileged => Value::Null,
        Seccomp::Default => crate::seccomp::default_profile(&cap_set),
        Seccomp::Unconfined => Value::Null,
        Seccomp::Profile(p) => p.clone(),
    };
    let caps: Vec<String> = cap_set.into_iter().collect();
    let ro = if f.privileged { "rw" } else { "ro" };
    let mut env = plan.env.clone();
    crate::process::with_home(&mut env, &user.home);
    let doc = json!({
        "ociVersion": "1.2.0",
        "process": {
            "terminal": tty,
            "user": {
                "uid": user.uid,
                "gid": user.gid,
                "additionalGids": user.additional_gids,
            },
            "args": plan.args,
            "env": env,
            "cwd": plan.cwd,
            "capabilities": {
                "bounding": caps,
                "effective": caps,
                "permitted": caps,
            },
            "noNewPrivileges": f.no_new_privileges,
        },
        "root": {"path": rootfs, "readonly": f.read_only},
        "hostname": hostname,
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", ro]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": [ro, "nosuid", "noexec", "nodev"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        ],
        "linux": {
            "namespaces": [
                {"type": "pid"}, {"type": "ipc"}, {"type": "uts"},
                {"type": "mount"}, {"type": "network"}, {"type": "cgroup"},
            ],
            "maskedPaths": if f.privileged { Vec::new() } else { MASKED_PATHS.to_vec() },
            "readonlyPaths": if f.privileged { Vec::new() } else { READONLY_PATHS.to_vec() },
            "resources": {"devices": device_rules(f.privileged)},
        },
    });
    let mut doc = doc;
    if !seccomp.is_null() {
        doc["linux"]["seccomp"] = seccomp;
    }
    serde_json::from_value(doc).map_err(|e| SpecError::Internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::{plan, ProcessFlags};
    use crate::user;

    fn names(s: &[&str]) -> BTreeSet<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn capability_flags_as_docker() {
        let d = |add: &[&str], drop: &[&str]| {
            capabilities(&SecurityFlags {
                cap_add: add.iter().map(|s| s.to_string()).collect(),
                cap_drop: drop.iter().map(|s| s.to_string()).collect(),
                ..SecurityFlags::default()
            })
        };
        assert_eq!(d(&[], &[]).unwrap(), names(&DEFAULT_CAPS));
        let s = d(&["net_admin", "CAP_SYS_PTRACE"], &["chown", "Cap_Kill"]).unwrap();
        assert!(s.contains("CAP_NET_ADMIN") && s.contains("CAP_SYS_PTRACE"));
        assert!(!s.contains("CAP_CHOWN") && !s.contains("CAP_KILL"));
        assert_eq!(s.len(), 14);
        assert_eq!(
            d(&["NET_BIND_SERVICE"], &["ALL"]).unwrap(),
            names(&["CAP_NET_BIND_SERVICE"])
        );
        let all = d(&["ALL"], &["SYS_ADMIN"]).unwrap();
        assert!(all.len() > 30 && !all.contains("CAP_SYS_ADMIN"));
        let e = d(&["FLY"], &[]).unwrap_err().to_string();
        assert!(e.contains("\"FLY\""), "{e}");
        let p = capabilities(&SecurityFlags {
            privileged: true,
            cap_drop: vec!["ALL".into()],
            ..SecurityFlags::default()
        })
        .unwrap();
        assert_eq!(p, every_cap());
        assert!(p.is_subset(&all_caps()));
    }

    fn spec(f: &SecurityFlags) -> Spec {
        let flags = ProcessFlags {
            cmd: vec!["sh".into()],
            ..ProcessFlags::default()
        };
        let p = plan(None, "c1", &flags).unwrap();
        let u = user::resolve("1000:1000", None, None).unwrap();
        build(&p, &u, "c1", "rootfs", false, f).unwrap()
    }

    /// The generated config is one berth's own runtime accepts: validated
    /// by `berth_runtime::spec` against a bundle with a rootfs.
    #[test]
    fn default_spec_passes_the_runtimes_validation() {
        for f in [
            SecurityFlags::default(),
            SecurityFlags {
                privileged: true,
                read_only: true,
                no_new_privileges: true,
                ..SecurityFlags::default()
            },
        ] {
            let s = spec(&f);
            let t = tempfile::tempdir().unwrap();
            std::fs::create_dir(t.path().join("rootfs")).unwrap();
            let cfg = t.path().join("config.json");
            std::fs::write(&cfg, serde_json::to_vec(&s).unwrap()).unwrap();
            let loaded = berth_runtime::spec::load(&cfg).unwrap();
            berth_runtime::spec::validate(&loaded, t.path(), &cfg).unwrap();
            // The seccomp profile compiles with libseccomp into a filter.
            let sc = loaded.linux().as_ref().unwrap().seccomp().as_ref();
            assert_eq!(sc.is_some(), !f.privileged);
            if let Some(sc) = sc {
                let prog = berth_runtime::seccomp::compile(sc).unwrap();
                assert!(prog.len() > 100, "{} BPF instructions", prog.len());
            }
        }
    }

    #[test]
    fn hardened_default_and_privileged() {
        let v = serde_json::to_value(spec(&SecurityFlags::default())).unwrap();
        assert_eq!(v["linux"]["maskedPaths"].as_array().unwrap().len(), 12);
        assert_eq!(v["linux"]["readonlyPaths"].as_array().unwrap().len(), 5);
        assert_eq!(v["linux"]["resources"]["devices"][0]["allow"], false);
        let sys = v["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/sys")
            .unwrap();
        assert!(sys["options"].as_array().unwrap().contains(&json!("ro")));
        assert_eq!(v["process"]["user"]["uid"], 1000);
        assert!(v["process"]["env"]
            .as_array()
            .unwrap()
            .contains(&json!("HOME=/")));
        assert_eq!(
            v["process"]["capabilities"]["bounding"]
                .as_array()
                .unwrap()
                .len(),
            14
        );

        let p = serde_json::to_value(spec(&SecurityFlags {
            privileged: true,
            ..SecurityFlags::default()
        }))
        .unwrap();
        assert!(p["linux"]["maskedPaths"]
            .as_array()
            .is_none_or(Vec::is_empty));
        assert_eq!(p["linux"]["resources"]["devices"][0]["allow"], true);
        let sys = p["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/sys")
            .unwrap();
        assert!(sys["options"].as_array().unwrap().contains(&json!("rw")));
        assert!(
            p["process"]["capabilities"]["bounding"]
                .as_array()
                .unwrap()
                .len()
                > 30
        );
    }
}
