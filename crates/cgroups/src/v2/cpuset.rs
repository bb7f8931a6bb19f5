//! v2 `cpuset`: cpuset.cpus / cpuset.mems (inherited by the kernel when empty).

use std::path::Path;

use oci_spec::runtime::LinuxResources;

use crate::error::Error;
use crate::fs::Plan;
use crate::stats::Stats;

pub(crate) fn plan(dir: &Path, r: &LinuxResources) -> Result<Plan, Error> {
    crate::v1::cpuset::plan(Some(dir), r)
}

pub(crate) fn stats(dir: &Path, s: &mut Stats) -> Result<(), Error> {
    crate::v1::cpuset::stats_from(dir, s, ["cpuset.cpus.effective", "cpuset.mems.effective"])
}
