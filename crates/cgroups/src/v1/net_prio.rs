//! v1 `net_prio`: net_prio.ifpriomap, one write per interface.

use std::path::Path;

use oci_spec::runtime::LinuxResources;

use crate::error::Error;
use crate::fs::{self, Plan, Undo};

pub(crate) fn validate(r: &LinuxResources) -> Result<(), Error> {
    for p in r
        .network()
        .iter()
        .flat_map(|n| n.priorities().iter().flatten())
    {
        if p.name().is_empty() || p.name().contains(char::is_whitespace) {
            return Err(Error::invalid(
                "network.priorities[].name",
                format!("{:?}", p.name()),
                "must be a non-empty interface name without spaces",
            ));
        }
    }
    Ok(())
}

/// As for net_cls: priorities on a host without net_prio are an error.
pub(crate) fn plan(dir: Option<&Path>, r: &LinuxResources) -> Result<Plan, Error> {
    let mut p = Plan::default();
    let prios: Vec<_> = r
        .network()
        .iter()
        .flat_map(|n| n.priorities().iter().flatten())
        .collect();
    if prios.is_empty() {
        return Ok(p);
    }
    let dir = dir.ok_or_else(|| Error::missing("net_prio", "network.priorities"))?;
    let cur = fs::read_opt(dir, "net_prio.ifpriomap")?.unwrap_or_default();
    for pr in prios {
        let prev = cur
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!("{} ", pr.name()))
                    .map(str::to_string)
            })
            .unwrap_or_else(|| "0".into());
        p.push_undo(
            dir,
            "net_prio.ifpriomap",
            format!("{} {}", pr.name(), pr.priority()),
            Undo::Explicit(vec![(
                "net_prio.ifpriomap".into(),
                format!("{} {prev}", pr.name()),
            )]),
        );
    }
    Ok(p)
}
