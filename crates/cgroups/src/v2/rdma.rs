//! v2 `rdma`: the same rdma.max format as v1.

use std::path::Path;

use oci_spec::runtime::LinuxResources;

use crate::error::Error;
use crate::fs::Plan;

pub(crate) fn plan(dir: &Path, r: &LinuxResources) -> Result<Plan, Error> {
    crate::v1::rdma::plan(Some(dir), r)
}
