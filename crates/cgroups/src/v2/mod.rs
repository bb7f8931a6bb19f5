//! The cgroup v2 backend: one directory in the unified hierarchy.

pub(crate) mod cpu;
pub(crate) mod cpuset;
pub mod devices;
pub(crate) mod freeze;
pub(crate) mod hugetlb;
pub(crate) mod io;
pub(crate) mod memory;
pub(crate) mod pids;
pub(crate) mod rdma;
pub(crate) mod unified;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use oci_spec::runtime::LinuxResources;
use tracing::{debug, warn};

use crate::detect::{join_below, own_dir, HostInfo};
use crate::devices::{rules_from_oci, Emulator};
use crate::error::Error;
use crate::fs::{self, Plan, Undo};
use crate::stats::Stats;
use crate::{CgroupMount, FreezerState, Hierarchy};

pub use cpu::shares_to_weight;
pub use io::blkio_weight_to_io_weight;
pub use memory::swap_to_v2;

/// A container's cgroup on a pure v2 host.
#[derive(Debug)]
pub struct Manager {
    mount_point: PathBuf,
    path: PathBuf,
    created: Mutex<Vec<PathBuf>>,
}

/// The directories from just below `mount` to the parent of `leaf`, outermost first,
/// with `mount` itself in front.
fn ancestors(mount: &Path, leaf: &Path) -> Vec<PathBuf> {
    let mut v = vec![mount.to_path_buf()];
    if let Ok(rel) = leaf.strip_prefix(mount) {
        let comps: Vec<_> = rel.components().collect();
        let mut cur = mount.to_path_buf();
        for c in comps.iter().take(comps.len().saturating_sub(1)) {
            cur.push(c);
            v.push(cur.clone());
        }
    }
    v
}

/// Plan steps enabling `controller` in cgroup.subtree_control of every
/// ancestor of `leaf` where it is not enabled yet (not undone: enabling is harmless).
pub(crate) fn enable_controller_plan(
    mount: &Path,
    leaf: &Path,
    controller: &str,
) -> Result<Plan, Error> {
    let mut p = Plan::default();
    for dir in ancestors(mount, leaf) {
        let cur = fs::read_opt(&dir, "cgroup.subtree_control")?.unwrap_or_default();
        if !cur.split_whitespace().any(|c| c == controller) {
            p.push_undo(
                &dir,
                "cgroup.subtree_control",
                format!("+{controller}"),
                Undo::Nothing,
            );
        }
    }
    Ok(p)
}

impl Manager {
    pub(crate) fn resolve(host: &HostInfo, inner: &Path) -> Result<Manager, Error> {
        let mount = host
            .mounts
            .iter()
            .find(|m| m.cgroup2 && m.mount_point == host.root)
            .ok_or_else(|| Error::Detect(format!("no cgroup2 mount at {}", host.root.display())))?;
        let path = if inner.is_absolute() {
            join_below(&mount.mount_point, inner)
        } else {
            // relative to the parent of our own cgroup, which (unlike ours)
            // may enable controllers for children (runc)
            let own = host
                .own_path("")
                .ok_or_else(|| Error::Detect("/proc/self/cgroup has no 0:: line".into()))?;
            let own_dir = own_dir(mount, own);
            let parent = if own_dir == mount.mount_point {
                own_dir
            } else {
                own_dir.parent().map(Path::to_path_buf).unwrap_or(own_dir)
            };
            join_below(&parent, inner)
        };
        Ok(Manager {
            mount_point: mount.mount_point.clone(),
            path,
            created: Mutex::new(Vec::new()),
        })
    }

    pub(crate) fn from_parts(h: &Hierarchy, created: Vec<PathBuf>) -> Manager {
        Manager {
            mount_point: h.mount_point.clone(),
            path: h.path.clone(),
            created: Mutex::new(created),
        }
    }

    pub(crate) fn hierarchy(&self) -> Hierarchy {
        Hierarchy {
            controllers: vec![],
            mount_point: self.mount_point.clone(),
            path: self.path.clone(),
            cgroup2: true,
        }
    }

    /// The container's cgroup directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn created(&self) -> Vec<PathBuf> {
        self.created.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Enable every available controller for the children of each ancestor.
    fn enable_controllers(&self) {
        for dir in ancestors(&self.mount_point, &self.path) {
            let avail = match fs::read(&dir, "cgroup.controllers") {
                Ok(a) => a,
                Err(e) => {
                    warn!(error = %e, "cannot read available controllers");
                    continue;
                }
            };
            let enabled = fs::read_opt(&dir, "cgroup.subtree_control")
                .ok()
                .flatten()
                .unwrap_or_default();
            let want: Vec<String> = avail
                .split_whitespace()
                .filter(|c| !enabled.split_whitespace().any(|e| e == *c))
                .map(|c| format!("+{c}"))
                .collect();
            if want.is_empty() {
                continue;
            }
            if fs::write(&dir, "cgroup.subtree_control", &want.join(" ")).is_err() {
                // one at a time, so one refused controller does not block the rest
                for w in &want {
                    if let Err(e) = fs::write(&dir, "cgroup.subtree_control", w) {
                        warn!(error = %e, "controller not enabled");
                    }
                }
            }
        }
    }

    pub(crate) fn create(&self) -> Result<(), Error> {
        let made = fs::mkdir_p(&self.path)?;
        self.enable_controllers();
        if let Ok(mut c) = self.created.lock() {
            for d in made {
                if !c.contains(&d) {
                    c.push(d);
                }
            }
        }
        Ok(())
    }

    fn plan(&self, r: &LinuxResources) -> Result<(Plan, Option<Emulator>), Error> {
        crate::validate_common(r)?;
        unified::validate(r)?;
        if r.network().as_ref().and_then(|n| n.class_id()).is_some() {
            return Err(Error::missing(
                "net_cls",
                "network.classID (no cgroup v2 equivalent)",
            ));
        }
        if r.network()
            .as_ref()
            .and_then(|n| n.priorities().as_ref())
            .is_some_and(|p| !p.is_empty())
        {
            return Err(Error::missing(
                "net_prio",
                "network.priorities (no cgroup v2 equivalent)",
            ));
        }
        let d = &self.path;
        let mut plan = Plan::default();
        plan.append(cpuset::plan(d, r)?);
        plan.append(memory::plan(d, r)?);
        plan.append(cpu::plan(d, r)?);
        plan.append(pids::plan(d, r)?);
        plan.append(io::plan(d, r)?);
        plan.append(hugetlb::plan(d, r)?);
        plan.append(rdma::plan(d, r)?);
        plan.append(unified::plan(d, r)?);
        let emu = match r.devices() {
            Some(rules) => Some(Emulator::from_rules(&rules_from_oci(rules)?)),
            None => None,
        };
        Ok((plan, emu))
    }

    pub(crate) fn apply(&self, r: &LinuxResources) -> Result<(), Error> {
        let (plan, emu) = self.plan(r)?;
        debug!(steps = plan.steps.len(), "applying v2 resources");
        let rollback = plan.execute()?;
        if let Some(emu) = emu {
            if let Err(e) = devices::apply(&self.path, &emu) {
                rollback.run();
                return Err(e);
            }
        }
        Ok(())
    }

    pub(crate) fn add_process(&self, pid: i32) -> Result<(), Error> {
        fs::write(&self.path, "cgroup.procs", &pid.to_string())
    }

    pub(crate) fn freeze(&self) -> Result<(), Error> {
        freeze::freeze(&self.path)
    }

    pub(crate) fn thaw(&self) -> Result<(), Error> {
        freeze::thaw(&self.path)
    }

    pub(crate) fn freezer_state(&self) -> Result<FreezerState, Error> {
        freeze::state(&self.path)
    }

    pub(crate) fn can_freeze(&self) -> bool {
        fs::exists(&self.path, "cgroup.freeze")
    }

    pub(crate) fn pids(&self) -> Result<Vec<i32>, Error> {
        fs::read_procs_recursive(&self.path)
    }

    /// cgroup.kill (Linux 5.14+), if present.
    pub(crate) fn kill(&self) -> Result<bool, Error> {
        if !fs::exists(&self.path, "cgroup.kill") {
            return Ok(false);
        }
        fs::write(&self.path, "cgroup.kill", "1")?;
        Ok(true)
    }

    pub(crate) fn destroy(&self) -> Result<(), Error> {
        let mut sorted = self.created();
        sorted.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        let mut first_err = None;
        for d in &sorted {
            if d != &self.path {
                fs::remove_parent_cgroup(d);
                continue;
            }
            if let Err(e) = fs::remove_cgroup(d) {
                first_err = first_err.or(Some(e));
            }
        }
        if let Ok(mut c) = self.created.lock() {
            c.retain(|p| p.exists());
        }
        first_err.map_or(Ok(()), Err)
    }

    pub(crate) fn stats(&self) -> Result<Stats, Error> {
        let mut s = Stats::default();
        let d = &self.path;
        cpu::stats(d, &mut s)?;
        cpuset::stats(d, &mut s)?;
        memory::stats(d, &mut s)?;
        pids::stats(d, &mut s)?;
        io::stats(d, &mut s)?;
        hugetlb::stats(d, &mut s)?;
        Ok(s)
    }

    pub(crate) fn oom_kill_count(&self) -> Result<u64, Error> {
        memory::oom_kill_count(&self.path)
    }

    pub(crate) fn mounts(&self) -> Vec<CgroupMount> {
        vec![CgroupMount {
            name: String::new(),
            fs_type: "cgroup2".into(),
            options: String::new(),
            host_path: self.path.clone(),
        }]
    }
}
