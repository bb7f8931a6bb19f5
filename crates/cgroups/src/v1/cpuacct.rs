//! v1 `cpuacct`: usage statistics only.

use std::path::Path;

use crate::error::Error;
use crate::fs;
use crate::stats::Stats;

fn list(dir: &Path, file: &str) -> Result<Vec<u64>, Error> {
    Ok(fs::read_opt(dir, file)?
        .map(|s| {
            s.split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect()
        })
        .unwrap_or_default())
}

pub(crate) fn stats(dir: &Path, s: &mut Stats) -> Result<(), Error> {
    s.cpu.usage.total = fs::read_u64_or_zero(dir, "cpuacct.usage")?;
    s.cpu.usage.percpu = list(dir, "cpuacct.usage_percpu")?;
    s.cpu.usage.percpu_user = list(dir, "cpuacct.usage_percpu_user")?;
    s.cpu.usage.percpu_kernel = list(dir, "cpuacct.usage_percpu_sys")?;
    if fs::exists(dir, "cpuacct.usage_user") {
        s.cpu.usage.user = fs::read_u64(dir, "cpuacct.usage_user")?;
        s.cpu.usage.kernel = fs::read_u64(dir, "cpuacct.usage_sys")?;
    } else {
        // cpuacct.stat counts USER_HZ ticks, which the kernel ABI fixes at 100
        let hz = 100;
        let m = fs::read_flat_keyed(dir, "cpuacct.stat")?;
        s.cpu.usage.user = m.get("user").copied().unwrap_or(0) * 1_000_000_000 / hz;
        s.cpu.usage.kernel = m.get("system").copied().unwrap_or(0) * 1_000_000_000 / hz;
    }
    Ok(())
}
