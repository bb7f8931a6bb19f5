//! berth-cgroups: place containers into cgroups, apply and update limits,
//! freeze, kill, collect statistics and clean up, on cgroup v1 (including the
//! hybrid layout) and on cgroup v2.
//!
//! The entry point is [`Manager`], an enum over the two backends (static
//! dispatch). Writes are planned and validated before anything touches the
//! cgroupfs; a failing write rolls back the ones already done, so `apply` and
//! `update` are all-or-nothing.
//!
//! Decisions that differ from, or pin down, runc's behaviour:
//! - `cpu.shares` of 0 or 1 is rejected (runc treats 0 as unset); the
//!   kernel's range is 2..=262144.
//! - `net_cls`/`net_prio` values on a host without those controllers (and
//!   always on v2) are an error, as in runc's v1 manager; absent values are fine.
//! - On a hybrid host without a v1 hugetlb hierarchy, hugetlb limits go to the
//!   cgroup2 side when it offers the controller (runc would fail).
//! - `destroy` removes exactly the directories `create` made (also across
//!   invocations via [`CgroupState`]); joining an existing cgroup leaves it in place.

pub mod detect;
pub mod devices;
pub mod error;
pub(crate) mod fs;
pub mod stats;
pub mod v1;
pub mod v2;

use std::path::{Path, PathBuf};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};
use tracing::{debug, info_span, warn};

pub use detect::{HostInfo, Layout};
pub use devices::default_allowed_devices;
pub use error::{Error, ErrorKind};
pub use stats::Stats;

/// Where the container's cgroup goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupConfig {
    /// `linux.cgroupsPath`: absolute = below each hierarchy's root; relative =
    /// below the runtime's own cgroup (v1) or its parent (v2); `None` = the id, relative.
    pub path: Option<PathBuf>,
    /// the container id
    pub id: String,
    /// `--systemd-cgroup` (not supported yet)
    pub systemd: bool,
}

/// The freezer state of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FreezerState {
    /// running
    Thawed,
    /// stopped
    Frozen,
    /// in transition
    Freezing,
}

/// One cgroup hierarchy the container is in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hierarchy {
    /// v1 controllers and `name=` options; empty for cgroup2
    pub controllers: Vec<String>,
    /// where the hierarchy is mounted on the host
    pub mount_point: PathBuf,
    /// the container's cgroup directory in it
    pub path: PathBuf,
    /// cgroup2?
    pub cgroup2: bool,
}

/// See [`Manager::join_plan`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JoinPlan {
    /// v1 `tasks` files the new process writes "0" to, each with whether a
    /// failure may be ignored (membership-only hierarchies such as name=systemd).
    pub v1_tasks: Vec<(PathBuf, bool)>,
    /// The cgroup2 directory to be born into (pure v2, or hybrid's unified side).
    pub v2_dir: Option<PathBuf>,
}

/// What the runtime needs to mount one hierarchy inside the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupMount {
    /// directory under /sys/fs/cgroup ("memory", "cpu,cpuacct", "systemd", "unified"; "" for v2)
    pub name: String,
    /// "cgroup" or "cgroup2"
    pub fs_type: String,
    /// mount data, e.g. "memory" or "none,name=systemd"; "" for cgroup2
    pub options: String,
    /// the container's own cgroup directory on the host in this hierarchy
    pub host_path: PathBuf,
}

/// Serialised manager, so later invocations reopen the same cgroups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupState {
    /// format version of this record
    pub schema: u32,
    /// true for the v2 backend
    pub v2: bool,
    /// the hierarchies and the container's directory in each
    pub hierarchies: Vec<Hierarchy>,
    /// directories `create` made, which `destroy` removes
    pub created: Vec<PathBuf>,
}

const STATE_SCHEMA: u32 = 1;

/// The cgroup manager: v1 (legacy or hybrid) or v2.
#[derive(Debug)]
pub enum Manager {
    /// cgroup v1, including hybrid hosts
    V1(v1::Manager),
    /// pure cgroup v2
    V2(v2::Manager),
}

/// Validation that does not depend on the backend.
pub(crate) fn validate_common(r: &LinuxResources) -> Result<(), Error> {
    v1::cpu::validate(r)?;
    v1::cpuset::validate(r)?;
    v1::memory::validate(r)?;
    v1::blkio::validate(r)?;
    v1::hugetlb::validate(r)?;
    v1::devices::validate(r)?;
    v1::net_prio::validate(r)?;
    v1::rdma::validate(r)?;
    Ok(())
}

macro_rules! dispatch {
    ($self:ident, $m:ident => $e:expr) => {
        match $self {
            Manager::V1($m) => $e,
            Manager::V2($m) => $e,
        }
    };
}

impl Manager {
    /// Detect the host layout and resolve the container's cgroup paths. Touches nothing.
    pub fn new(cfg: &CgroupConfig) -> Result<Manager, Error> {
        if cfg.systemd {
            return Err(Error::SystemdUnsupported);
        }
        let host = HostInfo::from_host()?;
        Self::from_host_info(cfg, &host)
    }

    /// Like [`Manager::new`] for a fake host: `root` plays /sys/fs/cgroup, and
    /// the texts are the contents of /proc/self/mountinfo and /proc/self/cgroup
    /// (mount points in it must lie below `root`).
    pub fn with_root(
        cfg: &CgroupConfig,
        root: &Path,
        mountinfo: &str,
        proc_self_cgroup: &str,
    ) -> Result<Manager, Error> {
        if cfg.systemd {
            return Err(Error::SystemdUnsupported);
        }
        let host = HostInfo::from_texts(root, mountinfo, proc_self_cgroup)?;
        Self::from_host_info(cfg, &host)
    }

    /// Resolve against an already detected host.
    pub fn from_host_info(cfg: &CgroupConfig, host: &HostInfo) -> Result<Manager, Error> {
        if cfg.systemd {
            return Err(Error::SystemdUnsupported);
        }
        let inner = detect::inner_path(cfg.path.as_deref(), &cfg.id)?;
        match host.layout {
            Layout::Unified => Ok(Manager::V2(v2::Manager::resolve(host, &inner)?)),
            Layout::Legacy | Layout::Hybrid => Ok(Manager::V1(v1::Manager::resolve(host, &inner)?)),
        }
    }

    /// Create the cgroup in every hierarchy (`mkdir -p`); an existing one is joined.
    pub fn create(&self) -> Result<(), Error> {
        let _s = info_span!("cgroup_create").entered();
        dispatch!(self, m => m.create())
    }

    /// Create only what a child must find before it is born: the cgroup2
    /// directory of [`Manager::join_plan`] (on pure v2, everything). The caller
    /// then forks and calls [`Manager::create`] for the rest while the child
    /// works, which keeps the v1 mkdirs off the critical path.
    pub fn create_cgroup2_side(&self) -> Result<(), Error> {
        let _s = info_span!("cgroup_create_cgroup2_side").entered();
        match self {
            Manager::V1(m) => m.create_where(|h| h.cgroup2),
            Manager::V2(m) => m.create(),
        }
    }

    /// Validate all of `r`, then write it; on a failed write, undo the writes done.
    pub fn apply(&self, r: &LinuxResources) -> Result<(), Error> {
        let _s = info_span!("cgroup_apply").entered();
        dispatch!(self, m => m.apply(r))
    }

    /// Move a process into the cgroup in every hierarchy.
    pub fn add_process(&self, pid: i32) -> Result<(), Error> {
        dispatch!(self, m => m.add_process(pid))
    }

    /// `runtime update`: same checks and rollback as `apply`, so a failure
    /// leaves the cgroup exactly as before.
    pub fn update(&self, r: &LinuxResources) -> Result<(), Error> {
        let _s = info_span!("cgroup_update").entered();
        dispatch!(self, m => m.apply(r))
    }

    /// Freeze and wait until frozen.
    pub fn freeze(&self) -> Result<(), Error> {
        dispatch!(self, m => m.freeze())
    }

    /// Thaw and wait until thawed.
    pub fn thaw(&self) -> Result<(), Error> {
        dispatch!(self, m => m.thaw())
    }

    /// The current freezer state.
    pub fn freezer_state(&self) -> Result<FreezerState, Error> {
        dispatch!(self, m => m.freezer_state())
    }

    /// Every process in the container's cgroup, including sub-cgroups.
    pub fn pids(&self) -> Result<Vec<i32>, Error> {
        dispatch!(self, m => m.pids())
    }

    /// Signal every process. v2 with SIGKILL uses cgroup.kill when present;
    /// otherwise freeze (when possible), signal each pid, thaw.
    pub fn kill_all(&self, sig: Signal) -> Result<(), Error> {
        if let (Manager::V2(m), Signal::SIGKILL) = (self, sig) {
            if m.kill()? {
                return Ok(());
            }
        }
        let can_freeze = dispatch!(self, m => m.can_freeze());
        let frozen = can_freeze && self.freeze().is_ok();
        let res = (|| {
            for pid in self.pids()? {
                debug!(pid, ?sig, "signalling");
                match kill(Pid::from_raw(pid), sig) {
                    Ok(()) | Err(nix::Error::ESRCH) => {}
                    Err(source) => {
                        return Err(Error::Signal {
                            signal: sig.to_string(),
                            pid,
                            source,
                        })
                    }
                }
            }
            Ok(())
        })();
        if frozen {
            if let Err(e) = self.thaw() {
                warn!(error = %e, "thaw after signalling failed");
                if res.is_ok() {
                    return Err(e);
                }
            }
        }
        res
    }

    /// Remove the directories `create` made (children first, retrying on
    /// EBUSY). Already gone is fine.
    pub fn destroy(&self) -> Result<(), Error> {
        let _s = info_span!("cgroup_destroy").entered();
        dispatch!(self, m => m.destroy())
    }

    /// Statistics in runc's `events --stats` shape.
    pub fn stats(&self) -> Result<Stats, Error> {
        dispatch!(self, m => m.stats())
    }

    /// How many processes the OOM killer killed in this cgroup.
    pub fn oom_kill_count(&self) -> Result<u64, Error> {
        dispatch!(self, m => m.oom_kill_count())
    }

    /// Is this the v2 backend?
    pub fn is_v2(&self) -> bool {
        matches!(self, Manager::V2(_))
    }

    /// One entry per hierarchy, for mounting cgroupfs inside the container.
    pub fn mounts(&self) -> Vec<CgroupMount> {
        dispatch!(self, m => m.mounts())
    }

    /// The hierarchies and the container's directory in each.
    pub fn hierarchies(&self) -> Vec<Hierarchy> {
        match self {
            Manager::V1(m) => m.hierarchies().to_vec(),
            Manager::V2(m) => vec![m.hierarchy()],
        }
    }

    /// How a process that is being born enters the container's cgroup cheaply.
    ///
    /// Writing a PID to `cgroup.procs` takes the kernel's global threadgroup
    /// lock, whose write side waits for an RCU grace period: about 10 ms per
    /// container start. A single-threaded process moving *itself* by writing
    /// "0" to a v1 `tasks` file skips that lock, and a cgroup2 directory can be
    /// entered at birth with `clone3(CLONE_INTO_CGROUP)`. [`Manager::add_process`]
    /// stays the general way for any PID.
    pub fn join_plan(&self) -> JoinPlan {
        let mut plan = JoinPlan::default();
        for h in self.hierarchies() {
            if h.cgroup2 {
                plan.v2_dir = Some(h.path.clone());
            } else {
                let best_effort = h.controllers.iter().all(|c| c.starts_with("name="));
                plan.v1_tasks.push((h.path.join("tasks"), best_effort));
            }
        }
        plan
    }

    /// A record to reopen this manager later.
    pub fn to_state(&self) -> CgroupState {
        CgroupState {
            schema: STATE_SCHEMA,
            v2: self.is_v2(),
            hierarchies: self.hierarchies(),
            created: dispatch!(self, m => m.created()),
        }
    }

    /// Reopen a manager from [`Manager::to_state`].
    pub fn from_state(s: &CgroupState) -> Result<Manager, Error> {
        if s.schema != STATE_SCHEMA {
            return Err(Error::State(format!(
                "schema {} is not the supported {STATE_SCHEMA}",
                s.schema
            )));
        }
        for h in &s.hierarchies {
            if !h.path.starts_with(&h.mount_point) || !h.path.is_absolute() {
                return Err(Error::State(format!(
                    "{} is not below its hierarchy {}",
                    h.path.display(),
                    h.mount_point.display()
                )));
            }
        }
        for c in &s.created {
            if !s
                .hierarchies
                .iter()
                .any(|h| c.starts_with(&h.mount_point) && c != &h.mount_point)
            {
                return Err(Error::State(format!(
                    "created directory {} is not inside any hierarchy",
                    c.display()
                )));
            }
        }
        if s.v2 {
            let [h] = s.hierarchies.as_slice() else {
                return Err(Error::State(format!(
                    "a v2 state needs exactly one hierarchy, found {}",
                    s.hierarchies.len()
                )));
            };
            Ok(Manager::V2(v2::Manager::from_parts(h, s.created.clone())))
        } else {
            Ok(Manager::V1(v1::Manager::from_parts(
                s.hierarchies.clone(),
                s.created.clone(),
            )))
        }
    }
}

#[cfg(test)]
mod fake_tree_tests;
