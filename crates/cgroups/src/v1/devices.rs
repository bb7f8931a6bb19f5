//! v1 `devices`: devices.deny/devices.allow from the emulated rule set.

use std::path::Path;

use oci_spec::runtime::LinuxResources;

use crate::devices::{rules_from_oci, Emulator};
use crate::error::Error;
use crate::fs::{self, Plan, Undo};

pub(crate) fn validate(r: &LinuxResources) -> Result<(), Error> {
    rules_from_oci(r.devices().as_deref().unwrap_or_default()).map(|_| ())
}

/// Rewrite the rule set unless devices.list already shows exactly the target.
/// The first write resets the cgroup; its undo restores the previous state whole.
pub(crate) fn plan(dir: Option<&Path>, r: &LinuxResources) -> Result<Plan, Error> {
    let mut p = Plan::default();
    let Some(rules) = r.devices() else {
        return Ok(p);
    };
    let dir = dir.ok_or_else(|| Error::missing("devices", "device rules"))?;
    let target = Emulator::from_rules(&rules_from_oci(rules)?);
    let current = Emulator::from_v1_list(&fs::read(dir, "devices.list")?);
    // in allow-all mode devices.list hides deny exceptions, so only a
    // deny-default (or plain allow-all) state can be compared
    let comparable = !target.default_allow || target.exceptions.is_empty();
    if comparable && current == target {
        return Ok(p);
    }
    for (i, (file, line)) in target.v1_writes().into_iter().enumerate() {
        let undo = if i == 0 {
            Undo::Explicit(current.v1_writes())
        } else {
            Undo::Nothing
        };
        p.push_undo(dir, &file, line, undo);
    }
    Ok(p)
}
