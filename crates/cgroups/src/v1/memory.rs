//! v1 `memory`: limit, memsw, soft limit, kmem.tcp, swappiness, OOM killer; stats.

use std::path::Path;

use oci_spec::runtime::LinuxResources;
use tracing::warn;

use crate::error::Error;
use crate::fs::{self, Plan, Undo};
use crate::stats::{MemoryEntry, Stats};

const LIMIT: &str = "memory.limit_in_bytes";
const MEMSW: &str = "memory.memsw.limit_in_bytes";

/// Validation shared with v2. 0 means "unset" (runc), -1 unlimited.
pub(crate) fn validate(r: &LinuxResources) -> Result<(), Error> {
    let Some(m) = r.memory() else { return Ok(()) };
    for (name, v) in [
        ("memory.limit", m.limit()),
        ("memory.swap", m.swap()),
        ("memory.reservation", m.reservation()),
        ("memory.kernelTCP", m.kernel_tcp()),
    ] {
        if let Some(v) = v {
            if v < -1 {
                return Err(Error::invalid(
                    name,
                    v,
                    "must be -1 (unlimited), 0 (unset) or a byte count",
                ));
            }
        }
    }
    if let Some(s) = m.swappiness() {
        if s > 100 {
            return Err(Error::invalid(
                "memory.swappiness",
                s,
                "must be between 0 and 100",
            ));
        }
    }
    if let (Some(l), Some(s)) = (m.limit(), m.swap()) {
        if l > 0 && s > 0 && s < l {
            return Err(Error::invalid(
                "memory.swap",
                s,
                format!("memory+swap must be >= the memory limit {l}"),
            ));
        }
    }
    Ok(())
}

fn wants(r: &LinuxResources) -> Option<&'static str> {
    let m = r.memory().as_ref()?;
    let set = |v: Option<i64>| v.unwrap_or(0) != 0;
    if set(m.limit()) || set(m.swap()) || set(m.reservation()) || set(m.kernel_tcp()) {
        return Some("memory limits");
    }
    if m.swappiness().is_some() {
        return Some("memory.swappiness");
    }
    if m.disable_oom_killer().is_some() {
        return Some("memory.disableOOMKiller");
    }
    None
}

pub(crate) fn plan(dir: Option<&Path>, r: &LinuxResources) -> Result<Plan, Error> {
    let mut p = Plan::default();
    let Some(what) = wants(r) else { return Ok(p) };
    let dir = dir.ok_or_else(|| Error::missing("memory", what))?;
    let Some(m) = r.memory() else { return Ok(p) };
    let limit = m.limit().unwrap_or(0);
    let mut swap = m.swap().unwrap_or(0);
    let has_memsw = fs::exists(dir, MEMSW);

    if limit == -1 && swap == 0 && has_memsw {
        // unlimited memory with swap unset means both unlimited (runc)
        swap = -1;
    }
    if swap != 0 && !has_memsw {
        return Err(Error::Unsupported {
            path: dir.join(MEMSW),
            what: format!("memory.swap {swap} (swap accounting is off)"),
        });
    }
    if limit > 0 && m.check_before_update() == Some(true) {
        let usage = fs::read_u64(dir, "memory.usage_in_bytes")?;
        if (limit as u64) < usage {
            return Err(Error::BelowUsage {
                path: dir.to_path_buf(),
                limit,
                usage,
            });
        }
    }
    if swap > 0 && limit == 0 {
        let cur = fs::read_u64(dir, LIMIT)?;
        if (swap as u64) < cur {
            return Err(Error::invalid(
                "memory.swap",
                swap,
                format!("memory+swap must be >= the current memory limit {cur}"),
            ));
        }
    }

    // The kernel keeps memsw >= limit at every moment: raise memsw first when
    // it grows beyond the current limit, else lower the limit first.
    if limit != 0 && swap != 0 {
        let cur = fs::read_u64(dir, LIMIT)?;
        if swap == -1 || cur < swap as u64 {
            p.push(dir, MEMSW, swap.to_string());
            p.push(dir, LIMIT, limit.to_string());
        } else {
            p.push(dir, LIMIT, limit.to_string());
            p.push(dir, MEMSW, swap.to_string());
        }
    } else if limit != 0 {
        p.push(dir, LIMIT, limit.to_string());
    } else if swap != 0 {
        p.push(dir, MEMSW, swap.to_string());
    }

    if let Some(res) = m.reservation().filter(|v| *v != 0) {
        p.push(dir, "memory.soft_limit_in_bytes", res.to_string());
    }
    if m.kernel().unwrap_or(0) != 0 {
        warn!("memory.kernel is deprecated by the kernel and ignored");
    }
    if let Some(k) = m.kernel_tcp().filter(|v| *v != 0) {
        p.push(dir, "memory.kmem.tcp.limit_in_bytes", k.to_string());
    }
    if let Some(s) = m.swappiness() {
        p.push(dir, "memory.swappiness", s.to_string());
    }
    if let Some(d) = m.disable_oom_killer() {
        let cur = fs::read_flat_keyed(dir, "memory.oom_control")?
            .get("oom_kill_disable")
            .copied()
            .unwrap_or(0);
        p.push_undo(
            dir,
            "memory.oom_control",
            if d { "1" } else { "0" },
            Undo::Explicit(vec![("memory.oom_control".into(), cur.to_string())]),
        );
    }
    Ok(p)
}

fn entry(dir: &Path, prefix: &str) -> Result<MemoryEntry, Error> {
    let f = |n: &str| {
        let name = if prefix.is_empty() {
            format!("memory.{n}")
        } else {
            format!("memory.{prefix}.{n}")
        };
        fs::read_u64_or_zero(dir, &name)
    };
    Ok(MemoryEntry {
        usage: f("usage_in_bytes")?,
        max: f("max_usage_in_bytes")?,
        failcnt: f("failcnt")?,
        limit: f("limit_in_bytes")?,
    })
}

pub(crate) fn stats(dir: &Path, s: &mut Stats) -> Result<(), Error> {
    let raw = fs::read_flat_keyed(dir, "memory.stat")?;
    s.memory.cache = raw.get("cache").copied().unwrap_or(0);
    s.memory.usage = entry(dir, "")?;
    s.memory.swap = entry(dir, "memsw")?;
    s.memory.kernel = entry(dir, "kmem")?;
    s.memory.kernel_tcp = entry(dir, "kmem.tcp")?;
    let inactive = raw.get("total_inactive_file").copied().unwrap_or(0);
    s.memory.working_set = s.memory.usage.usage.saturating_sub(inactive);
    s.memory.raw = raw;
    let oom = fs::read_flat_keyed(dir, "memory.oom_control")?;
    s.memory.oom_kill = oom.get("oom_kill").copied().unwrap_or(0);
    Ok(())
}

pub(crate) fn oom_kill_count(dir: &Path) -> Result<u64, Error> {
    Ok(fs::read_flat_keyed(dir, "memory.oom_control")?
        .get("oom_kill")
        .copied()
        .unwrap_or(0))
}
