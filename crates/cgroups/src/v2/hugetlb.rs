//! v2 `hugetlb`: hugetlb.<size>.max (and .rsvd.max); stats from .current/.events.

use std::path::Path;

use oci_spec::runtime::LinuxResources;

use crate::error::Error;
use crate::fs::{self, Plan};
use crate::stats::{Hugetlb, Stats};

pub(crate) fn plan(dir: &Path, r: &LinuxResources) -> Result<Plan, Error> {
    crate::v1::hugetlb::plan_with(
        dir,
        r,
        |ps| format!("hugetlb.{ps}.max"),
        |ps| format!("hugetlb.{ps}.rsvd.max"),
    )
}

/// For a cgroup whose hugetlb controller is only being enabled by the same plan
/// (hybrid hosts): the files do not exist yet, so the kernel's answer to the
/// write (ENOENT naming the file) is the check.
pub(crate) fn plan_lazy(dir: &Path, r: &LinuxResources) -> Result<Plan, Error> {
    let mut p = Plan::default();
    for h in r.hugepage_limits().iter().flatten() {
        p.push(
            dir,
            &format!("hugetlb.{}.max", h.page_size()),
            h.limit().to_string(),
        );
    }
    Ok(p)
}

pub(crate) fn stats(dir: &Path, s: &mut Stats) -> Result<(), Error> {
    for ps in crate::v1::hugetlb::sizes(dir, ".max") {
        let usage = fs::read_u64_or_zero(dir, &format!("hugetlb.{ps}.current"))?;
        let failcnt = fs::read_flat_keyed(dir, &format!("hugetlb.{ps}.events"))?
            .get("max")
            .copied()
            .unwrap_or(0);
        s.hugetlb.insert(
            ps,
            Hugetlb {
                usage,
                max: 0,
                failcnt,
            },
        );
    }
    Ok(())
}
