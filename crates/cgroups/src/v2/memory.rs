//! v2 `memory`: memory.max, memory.swap.max (memsw minus memory), memory.low; stats.

use std::path::Path;

use oci_spec::runtime::LinuxResources;
use tracing::warn;

use crate::error::Error;
use crate::fs::{self, Plan};
use crate::stats::{read_psi, MemoryEntry, Stats};

/// runc's conversion of the OCI memory+swap value to v2's swap-only value.
/// Returns the value for memory.swap.max: -1 max, 0 unset.
pub fn swap_to_v2(memory_swap: i64, memory: i64) -> Result<i64, Error> {
    let bad = |why: &str| Error::invalid("memory.swap", memory_swap, why.to_string());
    match (memory_swap, memory) {
        (0, -1) => Ok(-1),
        (-1, _) | (0, _) => Ok(memory_swap),
        (_, -1) => Ok(memory_swap),
        (_, 0) => Err(bad("a swap limit needs a memory limit")),
        (_, m) if m < 0 => Err(Error::invalid("memory.limit", m, "must be -1 or >= 0")),
        (s, m) if s < m => Err(bad(&format!("memory+swap must be >= the memory limit {m}"))),
        (s, m) => Ok(s - m),
    }
}

fn max_str(v: i64) -> String {
    if v == -1 {
        "max".into()
    } else {
        v.to_string()
    }
}

pub(crate) fn plan(dir: &Path, r: &LinuxResources) -> Result<Plan, Error> {
    let mut p = Plan::default();
    let Some(m) = r.memory() else { return Ok(p) };
    let limit = m.limit().unwrap_or(0);
    let swap = swap_to_v2(m.swap().unwrap_or(0), limit)?;
    if limit > 0 && m.check_before_update() == Some(true) {
        let usage = fs::read_u64(dir, "memory.current")?;
        if (limit as u64) < usage {
            return Err(Error::BelowUsage {
                path: dir.to_path_buf(),
                limit,
                usage,
            });
        }
    }
    if swap != 0 {
        if !fs::exists(dir, "memory.swap.max") {
            return Err(Error::Unsupported {
                path: dir.join("memory.swap.max"),
                what: format!("a swap limit (memory.swap {})", m.swap().unwrap_or(0)),
            });
        }
        // swap.max and memory.max are independent on v2; swap first as runc does
        p.push(dir, "memory.swap.max", max_str(swap));
    }
    if limit != 0 {
        p.push(dir, "memory.max", max_str(limit));
    }
    if let Some(res) = m.reservation().filter(|v| *v != 0) {
        p.push(dir, "memory.low", max_str(res));
    }
    if m.swappiness().is_some() {
        warn!("memory.swappiness has no cgroup v2 equivalent; ignored");
    }
    if m.disable_oom_killer() == Some(true) {
        warn!("memory.disableOOMKiller has no cgroup v2 equivalent; ignored");
    }
    if m.kernel().unwrap_or(0) != 0 || m.kernel_tcp().unwrap_or(0) != 0 {
        warn!("memory.kernel/kernelTCP have no cgroup v2 equivalent; ignored");
    }
    Ok(p)
}

pub(crate) fn stats(dir: &Path, s: &mut Stats) -> Result<(), Error> {
    let raw = fs::read_flat_keyed(dir, "memory.stat")?;
    let events = fs::read_flat_keyed(dir, "memory.events")?;
    let usage = fs::read_u64_or_zero(dir, "memory.current")?;
    let limit = match fs::read_opt(dir, "memory.max")? {
        Some(v) => fs::parse_u64(dir, "memory.max", &v)?,
        None => u64::MAX,
    };
    s.memory.usage = MemoryEntry {
        usage,
        limit,
        max: fs::read_u64_or_zero(dir, "memory.peak")?,
        failcnt: events.get("max").copied().unwrap_or(0),
    };
    // v2 has no memsw: report memory+swap as runc does
    let swap_usage = fs::read_u64_or_zero(dir, "memory.swap.current")?;
    let swap_limit = match fs::read_opt(dir, "memory.swap.max")? {
        Some(v) => fs::parse_u64(dir, "memory.swap.max", &v)?,
        None => u64::MAX,
    };
    s.memory.swap = MemoryEntry {
        usage: swap_usage + usage,
        limit: if swap_limit == u64::MAX || limit == u64::MAX {
            u64::MAX
        } else {
            swap_limit + limit
        },
        max: 0,
        failcnt: 0,
    };
    s.memory.cache = raw.get("file").copied().unwrap_or(0);
    s.memory.working_set = usage.saturating_sub(raw.get("inactive_file").copied().unwrap_or(0));
    s.memory.oom_events = events.get("oom").copied().unwrap_or(0);
    s.memory.oom_kill = events.get("oom_kill").copied().unwrap_or(0);
    s.memory.raw = raw;
    s.memory.psi = read_psi(dir, "memory.pressure")?;
    Ok(())
}

pub(crate) fn oom_kill_count(dir: &Path) -> Result<u64, Error> {
    Ok(fs::read_flat_keyed(dir, "memory.events")?
        .get("oom_kill")
        .copied()
        .unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swap_conversion() {
        assert_eq!(swap_to_v2(0, -1).unwrap(), -1);
        assert_eq!(swap_to_v2(-1, 100).unwrap(), -1);
        assert_eq!(swap_to_v2(0, 100).unwrap(), 0);
        assert_eq!(swap_to_v2(300, 100).unwrap(), 200);
        assert_eq!(swap_to_v2(100, 100).unwrap(), 0);
        assert_eq!(swap_to_v2(300, -1).unwrap(), 300);
        assert!(swap_to_v2(300, 0).is_err());
        let e = swap_to_v2(50, 100).unwrap_err();
        assert!(e.to_string().contains("memory.swap value 50"), "{e}");
    }
}
