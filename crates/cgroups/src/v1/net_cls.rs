//! v1 `net_cls`: net_cls.classid. There is no v2 equivalent.

use std::path::Path;

use oci_spec::runtime::LinuxResources;

use crate::error::Error;
use crate::fs::Plan;

/// Like runc: a class id on a host without net_cls is an error, not a silent skip,
/// because the caller asked for traffic classification that would not happen.
pub(crate) fn plan(dir: Option<&Path>, r: &LinuxResources) -> Result<Plan, Error> {
    let mut p = Plan::default();
    if let Some(id) = r.network().as_ref().and_then(|n| n.class_id()) {
        let dir = dir.ok_or_else(|| Error::missing("net_cls", format!("network.classID {id}")))?;
        p.push(dir, "net_cls.classid", id.to_string());
    }
    Ok(p)
}
