//! `rdma` (same file on v1 and v2): rdma.max "dev hca_handle=N hca_object=M".

use std::path::Path;

use oci_spec::runtime::LinuxResources;

use crate::error::Error;
use crate::fs::{self, Plan, Undo};

pub(crate) fn validate(r: &LinuxResources) -> Result<(), Error> {
    for dev in r.rdma().iter().flat_map(|m| m.keys()) {
        if dev.is_empty() || dev.contains(char::is_whitespace) {
            return Err(Error::invalid(
                "rdma device",
                format!("{dev:?}"),
                "must be a non-empty device name without spaces",
            ));
        }
    }
    Ok(())
}

pub(crate) fn plan(dir: Option<&Path>, r: &LinuxResources) -> Result<Plan, Error> {
    let mut p = Plan::default();
    let Some(map) = r.rdma().as_ref().filter(|m| !m.is_empty()) else {
        return Ok(p);
    };
    let dir = dir.ok_or_else(|| Error::missing("rdma", "rdma limits"))?;
    let cur = fs::read_opt(dir, "rdma.max")?.unwrap_or_default();
    let mut devs: Vec<_> = map.iter().collect();
    devs.sort_by(|a, b| a.0.cmp(b.0));
    for (dev, lim) in devs {
        let mut v = dev.clone();
        if let Some(h) = lim.hca_handles() {
            v.push_str(&format!(" hca_handle={h}"));
        }
        if let Some(o) = lim.hca_objects() {
            v.push_str(&format!(" hca_object={o}"));
        }
        if v == *dev {
            continue;
        }
        let prev = cur
            .lines()
            .find(|l| l.split_whitespace().next() == Some(dev.as_str()))
            .map(str::to_string)
            .unwrap_or_else(|| format!("{dev} hca_handle=max hca_object=max"));
        p.push_undo(
            dir,
            "rdma.max",
            v,
            Undo::Explicit(vec![("rdma.max".into(), prev)]),
        );
    }
    Ok(p)
}
