//! v1 `cpu`: shares, CFS quota/period/burst, realtime, idle; throttling stats.

use std::path::Path;

use oci_spec::runtime::LinuxResources;

use crate::error::Error;
use crate::fs::{self, Plan};
use crate::stats::Stats;

/// Validation shared with v2: the ranges the kernel accepts.
pub(crate) fn validate(r: &LinuxResources) -> Result<(), Error> {
    let Some(cpu) = r.cpu() else { return Ok(()) };
    if let Some(s) = cpu.shares() {
        if s < 2 {
            return Err(Error::invalid("cpu.shares", s, "must be >= 2"));
        }
        if s > 262_144 {
            return Err(Error::invalid("cpu.shares", s, "must be <= 262144"));
        }
    }
    if let Some(p) = cpu.period() {
        if !(1_000..=1_000_000).contains(&p) {
            return Err(Error::invalid(
                "cpu.period",
                p,
                "must be between 1000 and 1000000 microseconds",
            ));
        }
    }
    if let Some(q) = cpu.quota() {
        if q < -1 || (q > 0 && q < 1_000) {
            return Err(Error::invalid(
                "cpu.quota",
                q,
                "must be -1 (unlimited), 0 (unset) or >= 1000 microseconds",
            ));
        }
    }
    if let (Some(b), Some(q)) = (cpu.burst(), cpu.quota()) {
        if q > 0 && b > q as u64 {
            return Err(Error::invalid(
                "cpu.burst",
                b,
                format!("must not exceed the quota {q}"),
            ));
        }
    }
    if let Some(rt) = cpu.realtime_runtime() {
        if rt < -1 {
            return Err(Error::invalid(
                "cpu.realtimeRuntime",
                rt,
                "must be -1 (unlimited) or >= 0",
            ));
        }
        if let Some(rp) = cpu.realtime_period() {
            if rt > 0 && rt as u64 > rp {
                return Err(Error::invalid(
                    "cpu.realtimeRuntime",
                    rt,
                    format!("must not exceed realtimePeriod {rp}"),
                ));
            }
        }
    }
    if let Some(i) = cpu.idle() {
        if i != 0 && i != 1 {
            return Err(Error::invalid("cpu.idle", i, "must be 0 or 1"));
        }
    }
    Ok(())
}

fn wants_cpu(r: &LinuxResources) -> Option<&'static str> {
    let cpu = r.cpu().as_ref()?;
    if cpu.shares().is_some() {
        return Some("cpu.shares");
    }
    if cpu.quota().unwrap_or(0) != 0 || cpu.period().unwrap_or(0) != 0 {
        return Some("cpu.quota/cpu.period");
    }
    if cpu.burst().is_some() {
        return Some("cpu.burst");
    }
    if cpu.realtime_runtime().unwrap_or(0) != 0 || cpu.realtime_period().unwrap_or(0) != 0 {
        return Some("cpu.realtimeRuntime/cpu.realtimePeriod");
    }
    if cpu.idle().is_some() {
        return Some("cpu.idle");
    }
    None
}

fn read_i64(dir: &Path, file: &str) -> Option<i64> {
    fs::read_opt(dir, file)
        .ok()
        .flatten()
        .and_then(|s| s.trim().parse().ok())
}

/// Whether to write the quota before the period: pick the intermediate state
/// with the lower ratio, so a hierarchical limit is not crossed on the way.
pub(crate) fn quota_first(cur_q: i64, cur_p: i64, new_q: i64, new_p: i64) -> bool {
    match (cur_q, new_q) {
        (q, _) if q < 0 => true,
        (_, q) if q < 0 => false,
        // (new_q, cur_p) versus (cur_q, new_p): new_q/cur_p <= cur_q/new_p
        _ => (new_q as i128) * (new_p as i128) <= (cur_q as i128) * (cur_p as i128),
    }
}

pub(crate) fn plan(dir: Option<&Path>, r: &LinuxResources) -> Result<Plan, Error> {
    let mut p = Plan::default();
    let Some(what) = wants_cpu(r) else {
        return Ok(p);
    };
    let dir = dir.ok_or_else(|| Error::missing("cpu", what))?;
    let Some(cpu) = r.cpu() else { return Ok(p) };

    // realtime: runtime must stay <= period at every step
    let rt_p = cpu.realtime_period().filter(|v| *v != 0);
    let rt_r = cpu.realtime_runtime().filter(|v| *v != 0);
    match (rt_p, rt_r) {
        (Some(per), Some(run)) => {
            let cur_run = read_i64(dir, "cpu.rt_runtime_us").unwrap_or(0);
            if (per as i64) < cur_run {
                p.push(dir, "cpu.rt_runtime_us", run.to_string());
                p.push(dir, "cpu.rt_period_us", per.to_string());
            } else {
                p.push(dir, "cpu.rt_period_us", per.to_string());
                p.push(dir, "cpu.rt_runtime_us", run.to_string());
            }
        }
        (Some(per), None) => p.push(dir, "cpu.rt_period_us", per.to_string()),
        (None, Some(run)) => p.push(dir, "cpu.rt_runtime_us", run.to_string()),
        (None, None) => {}
    }

    if let Some(s) = cpu.shares() {
        p.push(dir, "cpu.shares", s.to_string());
    }

    let quota = cpu.quota().filter(|q| *q != 0);
    let period = cpu.period().filter(|v| *v != 0);
    let cur_q = read_i64(dir, "cpu.cfs_quota_us").unwrap_or(-1);
    let cur_p = read_i64(dir, "cpu.cfs_period_us").unwrap_or(100_000);
    let burst_step = |p: &mut Plan| {
        if let Some(b) = cpu.burst() {
            p.push(dir, "cpu.cfs_burst_us", b.to_string());
        }
    };
    // burst must stay <= quota: write it first unless it exceeds the current quota
    let burst_first = cpu.burst().is_some_and(|b| cur_q < 0 || b <= cur_q as u64);
    if burst_first {
        burst_step(&mut p);
    }
    match (quota, period) {
        (Some(q), Some(per)) => {
            if quota_first(cur_q, cur_p, q, per as i64) {
                p.push(dir, "cpu.cfs_quota_us", q.to_string());
                p.push(dir, "cpu.cfs_period_us", per.to_string());
            } else {
                p.push(dir, "cpu.cfs_period_us", per.to_string());
                p.push(dir, "cpu.cfs_quota_us", q.to_string());
            }
        }
        (Some(q), None) => p.push(dir, "cpu.cfs_quota_us", q.to_string()),
        (None, Some(per)) => p.push(dir, "cpu.cfs_period_us", per.to_string()),
        (None, None) => {}
    }
    if !burst_first {
        burst_step(&mut p);
    }
    if let Some(i) = cpu.idle() {
        p.push(dir, "cpu.idle", i.to_string());
    }
    Ok(p)
}

pub(crate) fn stats(dir: &Path, s: &mut Stats) -> Result<(), Error> {
    let m = fs::read_flat_keyed(dir, "cpu.stat")?;
    s.cpu.throttling.periods = m.get("nr_periods").copied().unwrap_or(0);
    s.cpu.throttling.throttled_periods = m.get("nr_throttled").copied().unwrap_or(0);
    s.cpu.throttling.throttled_time = m.get("throttled_time").copied().unwrap_or(0);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_order() {
        // from unlimited: quota first
        assert!(quota_first(-1, 100_000, 50_000, 100_000));
        // to unlimited: period first
        assert!(!quota_first(50_000, 100_000, -1, 50_000));
        // 50000/100000 -> 20000/50000: quota first gives 20000/100000 (lower)
        assert!(quota_first(50_000, 100_000, 20_000, 50_000));
        // 20000/50000 -> 50000/100000: period first gives 20000/100000
        assert!(!quota_first(20_000, 50_000, 50_000, 100_000));
    }
}
