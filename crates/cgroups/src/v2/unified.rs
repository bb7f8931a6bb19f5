//! v2 `unified`: key/value passthrough to the cgroup files, written last so it
//! overrides the converted values (as in runc).

use std::path::Path;

use oci_spec::runtime::LinuxResources;

use crate::error::Error;
use crate::fs::{self, Plan};

pub(crate) fn validate(r: &LinuxResources) -> Result<(), Error> {
    for (k, v) in r.unified().iter().flatten() {
        if k.is_empty() || k.contains('/') || k.starts_with('.') || !k.contains('.') {
            return Err(Error::invalid(
                "unified key",
                format!("{k:?}"),
                "must be a cgroup file name like memory.high",
            ));
        }
        if matches!(
            k.as_str(),
            "cgroup.procs"
                | "cgroup.threads"
                | "cgroup.subtree_control"
                | "cgroup.kill"
                | "cgroup.freeze"
        ) {
            return Err(Error::invalid(
                "unified key",
                format!("{k:?}"),
                "this file is managed by the runtime, not by resources",
            ));
        }
        if v.contains('\n') && !k.ends_with(".max") {
            return Err(Error::invalid(
                format!("unified[{k}]"),
                format!("{v:?}"),
                "must be one line",
            ));
        }
    }
    Ok(())
}

pub(crate) fn plan(dir: &Path, r: &LinuxResources) -> Result<Plan, Error> {
    let mut p = Plan::default();
    let Some(u) = r.unified() else { return Ok(p) };
    let mut keys: Vec<_> = u.iter().collect();
    keys.sort();
    for (k, v) in keys {
        if !fs::exists(dir, k) {
            let controller = k.split('.').next().unwrap_or_default();
            let enabled = fs::read_opt(dir, "cgroup.controllers")?.unwrap_or_default();
            if !controller.starts_with("cgroup")
                && !enabled.split_whitespace().any(|c| c == controller)
            {
                return Err(Error::missing(controller, format!("unified {k}")));
            }
            return Err(Error::Unsupported {
                path: dir.join(k),
                what: format!("unified {k}"),
            });
        }
        p.push(dir, k, v.clone());
    }
    Ok(p)
}
