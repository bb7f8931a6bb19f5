//! The cgroup v1 backend, including the hybrid layout (v1 controllers plus a
//! cgroup2 hierarchy, usually at /sys/fs/cgroup/unified, that the container
//! joins as runc does).

pub(crate) mod blkio;
pub(crate) mod cpu;
pub(crate) mod cpuacct;
pub(crate) mod cpuset;
pub(crate) mod devices;
pub(crate) mod freezer;
pub(crate) mod hugetlb;
pub(crate) mod memory;
pub(crate) mod net_cls;
pub(crate) mod net_prio;
pub(crate) mod pids;
pub(crate) mod rdma;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use oci_spec::runtime::LinuxResources;
use tracing::{debug, warn};

use crate::detect::{join_below, own_dir, HostInfo, Layout};
use crate::error::Error;
use crate::fs::{self, Plan};
use crate::stats::{read_psi, Stats};
use crate::{CgroupMount, FreezerState, Hierarchy};

/// A container's cgroups on a v1 or hybrid host.
#[derive(Debug)]
pub struct Manager {
    hierarchies: Vec<Hierarchy>,
    created: Mutex<Vec<PathBuf>>,
}

impl Manager {
    pub(crate) fn resolve(host: &HostInfo, inner: &Path) -> Result<Manager, Error> {
        let mut hierarchies: Vec<Hierarchy> = Vec::new();
        for m in &host.mounts {
            if m.cgroup2 && host.layout != Layout::Hybrid {
                continue;
            }
            if !m.cgroup2 && m.controllers.is_empty() {
                continue;
            }
            if hierarchies
                .iter()
                .any(|h| h.cgroup2 == m.cgroup2 && h.controllers == m.controllers)
            {
                continue; // the same hierarchy mounted twice
            }
            let path = if inner.is_absolute() {
                join_below(&m.mount_point, inner)
            } else {
                let key = if m.cgroup2 {
                    ""
                } else {
                    m.controllers[0].as_str()
                };
                let own = host.own_path(key).ok_or_else(|| {
                    Error::Detect(format!(
                        "/proc/self/cgroup has no line for the {} hierarchy mounted at {}",
                        if m.cgroup2 { "cgroup2" } else { key },
                        m.mount_point.display()
                    ))
                })?;
                join_below(&own_dir(m, own), inner)
            };
            hierarchies.push(Hierarchy {
                controllers: m.controllers.clone(),
                mount_point: m.mount_point.clone(),
                path,
                cgroup2: m.cgroup2,
            });
        }
        let m = Manager {
            hierarchies,
            created: Mutex::new(Vec::new()),
        };
        if m.path("devices").is_none() {
            return Err(Error::Detect(
                "the v1 devices controller is not mounted; refusing to run a container without device confinement".into(),
            ));
        }
        Ok(m)
    }

    pub(crate) fn from_parts(hierarchies: Vec<Hierarchy>, created: Vec<PathBuf>) -> Manager {
        Manager {
            hierarchies,
            created: Mutex::new(created),
        }
    }

    /// The hierarchies this container lives in.
    pub fn hierarchies(&self) -> &[Hierarchy] {
        &self.hierarchies
    }

    /// The container's directory in the hierarchy of `controller` (v1 name,
    /// or `name=systemd`).
    pub fn path(&self, controller: &str) -> Option<&Path> {
        self.hierarchies
            .iter()
            .find(|h| !h.cgroup2 && h.controllers.iter().any(|c| c == controller))
            .map(|h| h.path.as_path())
    }

    /// The container's directory in the hybrid cgroup2 hierarchy.
    pub fn unified_path(&self) -> Option<&Path> {
        self.hierarchies
            .iter()
            .find(|h| h.cgroup2)
            .map(|h| h.path.as_path())
    }

    /// Hierarchies that only carry membership (named ones, the hybrid cgroup2):
    /// failures there are logged, not fatal, as in runc.
    fn best_effort(h: &Hierarchy) -> bool {
        h.cgroup2 || h.controllers.iter().all(|c| c.starts_with("name="))
    }

    pub(crate) fn created(&self) -> Vec<PathBuf> {
        self.created.lock().map(|c| c.clone()).unwrap_or_default()
    }

    pub(crate) fn create(&self) -> Result<(), Error> {
        self.create_where(|_| true)
    }

    /// Create the cgroup in the hierarchies `pick` selects; already existing
    /// directories are kept, so calling this again for the rest is fine.
    pub(crate) fn create_where(&self, pick: impl Fn(&Hierarchy) -> bool) -> Result<(), Error> {
        let mut made = Vec::new();
        for h in self.hierarchies.iter().filter(|h| pick(h)) {
            match fs::mkdir_p(&h.path) {
                Ok(mut c) => made.append(&mut c),
                Err(e) if Self::best_effort(h) => {
                    warn!(error = %e, "cannot create the cgroup in a membership-only hierarchy; skipping it");
                }
                Err(e) => {
                    for d in made.iter().rev() {
                        let _ = std::fs::remove_dir(d);
                    }
                    return Err(e);
                }
            }
            if h.controllers.iter().any(|c| c == "cpuset") {
                if let Err(e) = cpuset::inherit(&h.mount_point, &h.path) {
                    for d in made.iter().rev() {
                        let _ = std::fs::remove_dir(d);
                    }
                    return Err(e);
                }
            }
        }
        if let Ok(mut c) = self.created.lock() {
            for d in made {
                if !c.contains(&d) {
                    c.push(d);
                }
            }
        }
        Ok(())
    }

    fn plan(&self, r: &LinuxResources) -> Result<Plan, Error> {
        if let Some(u) = r.unified().as_ref().filter(|u| !u.is_empty()) {
            let mut keys: Vec<_> = u.keys().cloned().collect();
            keys.sort();
            return Err(Error::invalid(
                "unified",
                keys.join(","),
                "cgroup v2 unified resources cannot be applied on a cgroup v1 host",
            ));
        }
        crate::validate_common(r)?;
        let mut plan = Plan::default();
        plan.append(devices::plan(self.path("devices"), r)?);
        plan.append(cpuset::plan(self.path("cpuset"), r)?);
        plan.append(memory::plan(self.path("memory"), r)?);
        plan.append(cpu::plan(self.path("cpu"), r)?);
        plan.append(pids::plan(self.path("pids"), r)?);
        plan.append(blkio::plan(self.path("blkio"), r)?);
        if r.hugepage_limits().as_ref().is_some_and(|v| !v.is_empty()) {
            if let Some(d) = self.path("hugetlb") {
                plan.append(hugetlb::plan(d, r)?);
            } else if let Some(h) = self.hierarchies.iter().find(|h| {
                // the root's cgroup.controllers lists what the hierarchy offers
                h.cgroup2
                    && fs::read_opt(&h.mount_point, "cgroup.controllers")
                        .ok()
                        .flatten()
                        .is_some_and(|c| c.split_whitespace().any(|x| x == "hugetlb"))
            }) {
                // hybrid host whose hugetlb controller lives on cgroup2
                plan.append(crate::v2::enable_controller_plan(
                    &h.mount_point,
                    &h.path,
                    "hugetlb",
                )?);
                plan.append(crate::v2::hugetlb::plan_lazy(&h.path, r)?);
            } else {
                return Err(Error::missing("hugetlb", "hugepageLimits"));
            }
        }
        plan.append(net_cls::plan(self.path("net_cls"), r)?);
        plan.append(net_prio::plan(self.path("net_prio"), r)?);
        plan.append(rdma::plan(self.path("rdma"), r)?);
        Ok(plan)
    }

    pub(crate) fn apply(&self, r: &LinuxResources) -> Result<(), Error> {
        let plan = self.plan(r)?;
        debug!(steps = plan.steps.len(), "applying v1 resources");
        plan.execute().map(|_| ())
    }

    pub(crate) fn add_process(&self, pid: i32) -> Result<(), Error> {
        for h in &self.hierarchies {
            match fs::write(&h.path, "cgroup.procs", &pid.to_string()) {
                Ok(()) => {}
                Err(e) if Self::best_effort(h) => {
                    warn!(error = %e, "cannot join a membership-only hierarchy; skipping it");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn freezer_dir(&self) -> Result<&Path, Error> {
        self.path("freezer")
            .ok_or_else(|| Error::missing("freezer", "freezing the container"))
    }

    pub(crate) fn freeze(&self) -> Result<(), Error> {
        freezer::freeze(self.freezer_dir()?)
    }

    pub(crate) fn thaw(&self) -> Result<(), Error> {
        freezer::thaw(self.freezer_dir()?)
    }

    pub(crate) fn freezer_state(&self) -> Result<FreezerState, Error> {
        freezer::state(self.freezer_dir()?)
    }

    pub(crate) fn can_freeze(&self) -> bool {
        self.path("freezer").is_some_and(|p| p.exists())
    }

    pub(crate) fn pids(&self) -> Result<Vec<i32>, Error> {
        let dir = ["pids", "freezer", "devices", "memory", "cpu"]
            .iter()
            .find_map(|c| self.path(c))
            .ok_or_else(|| Error::missing("pids", "listing processes"))?;
        fs::read_procs_recursive(dir)
    }

    pub(crate) fn destroy(&self) -> Result<(), Error> {
        let created = self.created();
        let mut first_err = None;
        // innermost first; parents shared with other containers may be busy
        let mut sorted = created.clone();
        sorted.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        let leaves: Vec<&Path> = self.hierarchies.iter().map(|h| h.path.as_path()).collect();
        for d in &sorted {
            if !leaves.contains(&d.as_path()) {
                fs::remove_parent_cgroup(d);
                continue;
            }
            if let Err(e) = fs::remove_cgroup(d) {
                if first_err.is_none() {
                    first_err = Some(e);
                }
            }
        }
        if let Ok(mut c) = self.created.lock() {
            c.retain(|p| p.exists());
        }
        first_err.map_or(Ok(()), Err)
    }

    pub(crate) fn stats(&self) -> Result<Stats, Error> {
        let mut s = Stats::default();
        if let Some(d) = self.path("cpu").filter(|d| d.exists()) {
            cpu::stats(d, &mut s)?;
        }
        if let Some(d) = self.path("cpuacct").filter(|d| d.exists()) {
            cpuacct::stats(d, &mut s)?;
        }
        if let Some(d) = self.path("cpuset").filter(|d| d.exists()) {
            cpuset::stats(d, &mut s)?;
        }
        if let Some(d) = self.path("memory").filter(|d| d.exists()) {
            memory::stats(d, &mut s)?;
        }
        if let Some(d) = self.path("pids").filter(|d| d.exists()) {
            pids::stats(d, &mut s)?;
        }
        if let Some(d) = self.path("blkio").filter(|d| d.exists()) {
            blkio::stats(d, &mut s)?;
        }
        if let Some(d) = self.path("hugetlb").filter(|d| d.exists()) {
            hugetlb::stats(d, &mut s)?;
        }
        if let Some(u) = self.unified_path().filter(|d| d.exists()) {
            // hybrid: PSI and hugetlb may live on the cgroup2 side
            s.cpu.psi = read_psi(u, "cpu.pressure")?;
            s.memory.psi = read_psi(u, "memory.pressure")?;
            s.blkio.psi = read_psi(u, "io.pressure")?;
            if self.path("hugetlb").is_none() {
                crate::v2::hugetlb::stats(u, &mut s)?;
            }
        }
        Ok(s)
    }

    pub(crate) fn oom_kill_count(&self) -> Result<u64, Error> {
        let d = self
            .path("memory")
            .ok_or_else(|| Error::missing("memory", "reading the OOM kill count"))?;
        memory::oom_kill_count(d)
    }

    pub(crate) fn mounts(&self) -> Vec<CgroupMount> {
        self.hierarchies
            .iter()
            .map(|h| {
                let name = h
                    .mount_point
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let options = if h.cgroup2 {
                    String::new()
                } else if h.controllers.iter().all(|c| c.starts_with("name=")) {
                    format!("none,{}", h.controllers.join(","))
                } else {
                    h.controllers.join(",")
                };
                CgroupMount {
                    name,
                    fs_type: if h.cgroup2 { "cgroup2" } else { "cgroup" }.into(),
                    options,
                    host_path: h.path.clone(),
                }
            })
            .collect()
    }
}
