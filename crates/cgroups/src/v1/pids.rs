//! v1 `pids` (the same files as v2): pids.max; stats.

use std::path::Path;

use oci_spec::runtime::LinuxResources;

use crate::error::Error;
use crate::fs::{self, Plan};
use crate::stats::Stats;

/// pids.max value: limit > 0 is the limit, < 0 is "max", 0 is unset (runc).
pub(crate) fn value(r: &LinuxResources) -> Option<String> {
    let l = r.pids().as_ref()?.limit();
    match l {
        0 => None,
        l if l < 0 => Some("max".into()),
        l => Some(l.to_string()),
    }
}

pub(crate) fn plan(dir: Option<&Path>, r: &LinuxResources) -> Result<Plan, Error> {
    let mut p = Plan::default();
    if let Some(v) = value(r) {
        let dir = dir.ok_or_else(|| Error::missing("pids", "pids.limit"))?;
        p.push(dir, "pids.max", v);
    }
    Ok(p)
}

pub(crate) fn stats(dir: &Path, s: &mut Stats) -> Result<(), Error> {
    s.pids.current = fs::read_u64_or_zero(dir, "pids.current")?;
    let max = fs::read_u64_or_zero(dir, "pids.max")?;
    s.pids.limit = if max == u64::MAX { 0 } else { max };
    Ok(())
}
