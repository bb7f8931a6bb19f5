//! v1 `cpuset`: cpus/mems, and the inheritance a new v1 cpuset cgroup needs
//! (it starts empty and refuses tasks until cpus and mems are set).

use std::path::Path;

use oci_spec::runtime::LinuxResources;

use crate::error::Error;
use crate::fs::{self, Plan};
use crate::stats::{parse_cpu_list, Stats};

/// Validate a cpuset list such as "0-3,7".
pub(crate) fn validate_list(file: &str, s: &str) -> Result<(), Error> {
    let bad = |why: &str| Error::invalid(file, format!("{s:?}"), why.to_string());
    for part in s.trim().split(',') {
        if part.is_empty() {
            return Err(bad("empty element in the list"));
        }
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let a: u32 = a
            .parse()
            .map_err(|_| bad("expected numbers and ranges like 0-3,7"))?;
        let b: u32 = b
            .parse()
            .map_err(|_| bad("expected numbers and ranges like 0-3,7"))?;
        if a > b {
            return Err(bad("range start is above its end"));
        }
    }
    Ok(())
}

pub(crate) fn validate(r: &LinuxResources) -> Result<(), Error> {
    if let Some(cpu) = r.cpu() {
        if let Some(c) = cpu.cpus().as_deref().filter(|c| !c.is_empty()) {
            validate_list("cpuset.cpus", c)?;
        }
        if let Some(m) = cpu.mems().as_deref().filter(|c| !c.is_empty()) {
            validate_list("cpuset.mems", m)?;
        }
    }
    Ok(())
}

/// (cpus, mems) requested, empty strings dropped.
pub(crate) fn wanted(r: &LinuxResources) -> (Option<&str>, Option<&str>) {
    let Some(cpu) = r.cpu() else {
        return (None, None);
    };
    (
        cpu.cpus().as_deref().filter(|c| !c.is_empty()),
        cpu.mems().as_deref().filter(|c| !c.is_empty()),
    )
}

pub(crate) fn plan(dir: Option<&Path>, r: &LinuxResources) -> Result<Plan, Error> {
    let mut p = Plan::default();
    let (cpus, mems) = wanted(r);
    if cpus.is_none() && mems.is_none() {
        return Ok(p);
    }
    let dir = dir.ok_or_else(|| Error::missing("cpuset", "cpu.cpus/cpu.mems"))?;
    // mems first: a task needs both, and neither order is more restrictive
    if let Some(m) = mems {
        p.push(dir, "cpuset.mems", m);
    }
    if let Some(c) = cpus {
        p.push(dir, "cpuset.cpus", c);
    }
    Ok(p)
}

/// Fill empty cpuset.cpus/mems from the parent, for every directory from just
/// below `mount` down to `leaf` (runc does the same for the whole path).
pub(crate) fn inherit(mount: &Path, leaf: &Path) -> Result<(), Error> {
    let Ok(rel) = leaf.strip_prefix(mount) else {
        return Ok(());
    };
    let mut parent = mount.to_path_buf();
    for c in rel.components() {
        let dir = parent.join(c);
        for file in ["cpuset.cpus", "cpuset.mems"] {
            let Some(cur) = fs::read_opt(&dir, file)? else {
                continue;
            };
            if cur.trim().is_empty() {
                let from = fs::read(&parent, file)?;
                fs::write(&dir, file, from.trim())?;
            }
        }
        parent = dir;
    }
    Ok(())
}

pub(crate) fn stats(dir: &Path, s: &mut Stats) -> Result<(), Error> {
    stats_from(dir, s, ["cpuset.effective_cpus", "cpuset.effective_mems"])
}

/// Effective cpus/mems from the given files, else the configured ones.
pub(crate) fn stats_from(dir: &Path, s: &mut Stats, effective: [&str; 2]) -> Result<(), Error> {
    let pick = |a: &str, b: &str| -> Result<Vec<u16>, Error> {
        let v = match fs::read_opt(dir, a)? {
            Some(v) => Some(v),
            None => fs::read_opt(dir, b)?,
        };
        Ok(v.map(|v| parse_cpu_list(&v)).unwrap_or_default())
    };
    s.cpuset.cpus = pick(effective[0], "cpuset.cpus")?;
    s.cpuset.mems = pick(effective[1], "cpuset.mems")?;
    Ok(())
}
