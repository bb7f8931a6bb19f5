//! v2 `cpu`: cpu.weight (from shares), cpu.max, cpu.max.burst, cpu.idle; cpu.stat.

use std::path::Path;

use oci_spec::runtime::LinuxResources;

use crate::error::Error;
use crate::fs::{self, Plan};
use crate::stats::{read_psi, Stats};

/// runc's and crun's current conversion of cpu.shares [2, 262144] to
/// cpu.weight [1, 10000]: a quadratic in log2 space that maps 2 -> 1,
/// 1024 -> 100 and 262144 -> 10000. 0 stays "unset".
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    if shares <= 2 {
        return 1;
    }
    if shares >= 262_144 {
        return 10_000;
    }
    let l = (shares as f64).log2();
    let exponent = (l * l + 125.0 * l) / 612.0 - 7.0 / 34.0;
    10f64.powf(exponent).ceil() as u64
}

/// The cpu.max line: "max" or the quota, then the period when given.
pub fn cpu_max(quota: Option<i64>, period: Option<u64>) -> Option<String> {
    let quota = quota.filter(|q| *q != 0);
    let period = period.filter(|p| *p != 0);
    if quota.is_none() && period.is_none() {
        return None;
    }
    let mut s = match quota {
        Some(q) if q > 0 => q.to_string(),
        _ => "max".to_string(),
    };
    if let Some(p) = period {
        s.push_str(&format!(" {p}"));
    }
    Some(s)
}

pub(crate) fn plan(dir: &Path, r: &LinuxResources) -> Result<Plan, Error> {
    let mut p = Plan::default();
    let Some(cpu) = r.cpu() else { return Ok(p) };
    if cpu.realtime_runtime().unwrap_or(0) != 0 || cpu.realtime_period().unwrap_or(0) != 0 {
        return Err(Error::invalid(
            "cpu.realtimeRuntime/realtimePeriod",
            format!(
                "{}/{}",
                cpu.realtime_runtime().unwrap_or(0),
                cpu.realtime_period().unwrap_or(0)
            ),
            "realtime CPU limits do not exist on cgroup v2",
        ));
    }
    if let Some(s) = cpu.shares() {
        p.push(dir, "cpu.weight", shares_to_weight(s).to_string());
    }
    let max = cpu_max(cpu.quota(), cpu.period());
    if let Some(b) = cpu.burst() {
        // burst must stay <= quota: write it first unless it exceeds the current quota
        let cur = fs::read_opt(dir, "cpu.max")?.unwrap_or_default();
        let cur_q: Option<u64> = cur.split_whitespace().next().and_then(|q| q.parse().ok());
        let burst_first = cur_q.is_none_or(|q| b <= q);
        if burst_first {
            p.push(dir, "cpu.max.burst", b.to_string());
        }
        if let Some(m) = max {
            p.push(dir, "cpu.max", m);
        }
        if !burst_first {
            p.push(dir, "cpu.max.burst", b.to_string());
        }
    } else if let Some(m) = max {
        p.push(dir, "cpu.max", m);
    }
    if let Some(i) = cpu.idle() {
        p.push(dir, "cpu.idle", i.to_string());
    }
    Ok(p)
}

pub(crate) fn stats(dir: &Path, s: &mut Stats) -> Result<(), Error> {
    let m = fs::read_flat_keyed(dir, "cpu.stat")?;
    let g = |k: &str| m.get(k).copied().unwrap_or(0);
    s.cpu.usage.total = g("usage_usec") * 1000;
    s.cpu.usage.user = g("user_usec") * 1000;
    s.cpu.usage.kernel = g("system_usec") * 1000;
    s.cpu.throttling.periods = g("nr_periods");
    s.cpu.throttling.throttled_periods = g("nr_throttled");
    s.cpu.throttling.throttled_time = g("throttled_usec") * 1000;
    s.cpu.psi = read_psi(dir, "cpu.pressure")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_conversion() {
        assert_eq!(shares_to_weight(0), 0);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 100);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(512), 59);
        assert_eq!(shares_to_weight(2048), 174);
    }

    #[test]
    fn cpu_max_line() {
        assert_eq!(
            cpu_max(Some(50_000), Some(100_000)).unwrap(),
            "50000 100000"
        );
        assert_eq!(cpu_max(Some(-1), Some(100_000)).unwrap(), "max 100000");
        assert_eq!(cpu_max(Some(20_000), None).unwrap(), "20000");
        assert_eq!(cpu_max(None, Some(10_000)).unwrap(), "max 10000");
        assert_eq!(cpu_max(Some(0), None), None);
    }
}
