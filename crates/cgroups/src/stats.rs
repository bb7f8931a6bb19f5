//! Container statistics, serialised in the shape of runc's `events --stats`
//! `data` object (runc `types/events.go`), plus helpers that parse the kernel files.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::fs;

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// Everything `stats()` reports.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// cpu usage and throttling
    pub cpu: Cpu,
    /// cpuset
    pub cpuset: CpuSet,
    /// memory
    pub memory: Memory,
    /// pids
    pub pids: Pids,
    /// blkio (v1) or io (v2)
    pub blkio: Blkio,
    /// per page size, e.g. "2MB"
    pub hugetlb: HashMap<String, Hugetlb>,
    /// always empty: resctrl is not handled here
    pub intel_rdt: IntelRdt,
    /// always null: network stats come from the network part
    pub network_interfaces: Option<Vec<serde_json::Value>>,
}

/// Placeholder for runc's intel_rdt object.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IntelRdt {}

/// Pressure stall information of one resource.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PsiStats {
    /// "some" line
    #[serde(default)]
    pub some: PsiData,
    /// "full" line
    #[serde(default)]
    pub full: PsiData,
}

/// One line of a *.pressure file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PsiData {
    /// avg10
    pub avg10: f64,
    /// avg60
    pub avg60: f64,
    /// avg300
    pub avg300: f64,
    /// total stall time in microseconds
    pub total: u64,
}

/// Hugetlb usage of one page size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Hugetlb {
    /// bytes in use
    #[serde(default, skip_serializing_if = "is_zero")]
    pub usage: u64,
    /// peak bytes (v1 only)
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max: u64,
    /// allocation failures due to the limit
    pub failcnt: u64,
}

/// One blkio/io counter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlkioEntry {
    /// device major
    #[serde(default, skip_serializing_if = "is_zero")]
    pub major: u64,
    /// device minor
    #[serde(default, skip_serializing_if = "is_zero")]
    pub minor: u64,
    /// "Read", "Write", "Sync", "Async", "Discard", "Total"
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub op: String,
    /// the count
    #[serde(default, skip_serializing_if = "is_zero")]
    pub value: u64,
}

/// Block I/O counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Blkio {
    /// bytes
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    /// operations
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub io_serviced_recursive: Vec<BlkioEntry>,
    /// queued (v1 cfq)
    #[serde(
        default,
        rename = "ioQueueRecursive",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub io_queued_recursive: Vec<BlkioEntry>,
    /// service time (v1 cfq)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub io_service_time_recursive: Vec<BlkioEntry>,
    /// wait time (v1 cfq)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub io_wait_time_recursive: Vec<BlkioEntry>,
    /// merged (v1 cfq)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub io_merged_recursive: Vec<BlkioEntry>,
    /// time (v1 cfq)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub io_time_recursive: Vec<BlkioEntry>,
    /// sectors (v1 cfq)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sectors_recursive: Vec<BlkioEntry>,
    /// io.pressure
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub psi: Option<PsiStats>,
}

/// Pids.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Pids {
    /// tasks now
    #[serde(default, skip_serializing_if = "is_zero")]
    pub current: u64,
    /// the limit; 0 means unlimited
    #[serde(default, skip_serializing_if = "is_zero")]
    pub limit: u64,
}

/// CFS throttling.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Throttling {
    /// enforcement periods elapsed
    #[serde(default, skip_serializing_if = "is_zero")]
    pub periods: u64,
    /// periods in which the group was throttled
    #[serde(default, skip_serializing_if = "is_zero")]
    pub throttled_periods: u64,
    /// total throttled time in ns
    #[serde(default, skip_serializing_if = "is_zero")]
    pub throttled_time: u64,
}

/// CPU time, in nanoseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuUsage {
    /// total
    #[serde(default, skip_serializing_if = "is_zero")]
    pub total: u64,
    /// per cpu (v1)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub percpu: Vec<u64>,
    /// per cpu, kernel mode (v1)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub percpu_kernel: Vec<u64>,
    /// per cpu, user mode (v1)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub percpu_user: Vec<u64>,
    /// kernel mode
    pub kernel: u64,
    /// user mode
    pub user: u64,
}

/// CPU.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cpu {
    /// usage
    pub usage: CpuUsage,
    /// throttling
    pub throttling: Throttling,
    /// cpu.pressure
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub psi: Option<PsiStats>,
}

/// cpuset.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuSet {
    /// effective cpus
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cpus: Vec<u16>,
    /// effective memory nodes
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mems: Vec<u16>,
}

/// usage/limit/peak/failcnt of one memory counter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct MemoryEntry {
    /// the limit (u64::MAX when unlimited)
    pub limit: u64,
    /// current usage
    #[serde(default, skip_serializing_if = "is_zero")]
    pub usage: u64,
    /// peak usage
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max: u64,
    /// times the limit was hit
    pub failcnt: u64,
}

/// Memory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Memory {
    /// page cache
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache: u64,
    /// memory
    pub usage: MemoryEntry,
    /// memory+swap (as in v1's memsw; v2 adds memory and swap)
    pub swap: MemoryEntry,
    /// kernel memory (v1)
    pub kernel: MemoryEntry,
    /// kernel TCP memory (v1)
    #[serde(rename = "kernelTCP")]
    pub kernel_tcp: MemoryEntry,
    /// memory.stat
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub raw: BTreeMap<String, u64>,
    /// memory.pressure
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub psi: Option<PsiStats>,
    /// usage minus inactive file pages (what kubelet calls the working set).
    /// Not in runc's JSON.
    #[serde(skip)]
    pub working_set: u64,
    /// times the cgroup hit its limit and the OOM killer was invoked (v2
    /// memory.events oom; v1 under_oom is not a count, so 0). Not in runc's
    /// JSON: serialised as `oomEvents`, so `events --stats` shows OOMs.
    #[serde(default)]
    pub oom_events: u64,
    /// processes killed by the OOM killer (v2 memory.events oom_kill, v1
    /// memory.oom_control oom_kill). Not in runc's JSON: serialised as `oomKill`.
    #[serde(default)]
    pub oom_kill: u64,
}

/// Parse a *.pressure file.
pub(crate) fn parse_psi(path: &Path, s: &str) -> Result<PsiStats, Error> {
    let mut out = PsiStats::default();
    for line in s.lines() {
        let mut it = line.split_whitespace();
        let data = match it.next() {
            Some("some") => &mut out.some,
            Some("full") => &mut out.full,
            _ => continue,
        };
        for kv in it {
            let (k, v) = kv.split_once('=').ok_or_else(|| Error::Parse {
                path: path.to_path_buf(),
                reason: format!("bad field {kv:?}"),
            })?;
            let bad = |e: String| Error::Parse {
                path: path.to_path_buf(),
                reason: format!("bad value in {kv:?}: {e}"),
            };
            match k {
                "avg10" => data.avg10 = v.parse().map_err(|e| bad(format!("{e}")))?,
                "avg60" => data.avg60 = v.parse().map_err(|e| bad(format!("{e}")))?,
                "avg300" => data.avg300 = v.parse().map_err(|e| bad(format!("{e}")))?,
                "total" => data.total = v.parse().map_err(|e| bad(format!("{e}")))?,
                _ => {}
            }
        }
    }
    Ok(out)
}

/// Read `dir/file` as PSI; `None` if absent or unsupported (EOPNOTSUPP when psi is off).
pub(crate) fn read_psi(dir: &Path, file: &str) -> Result<Option<PsiStats>, Error> {
    match fs::read(dir, file) {
        Ok(s) => parse_psi(&dir.join(file), &s).map(Some),
        Err(Error::Read { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound
                || source.raw_os_error() == Some(libc::EOPNOTSUPP) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Parse a cpuset list like "0-3,5".
pub(crate) fn parse_cpu_list(s: &str) -> Vec<u16> {
    let mut out = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        if let Some((a, b)) = part.split_once('-') {
            if let (Ok(a), Ok(b)) = (a.parse::<u16>(), b.parse::<u16>()) {
                out.extend(a..=b);
            }
        } else if let Ok(v) = part.parse::<u16>() {
            out.push(v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psi() {
        let s = "some avg10=1.50 avg60=0.00 avg300=0.25 total=1234\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=7\n";
        let p = parse_psi(Path::new("cpu.pressure"), s).unwrap();
        assert_eq!(p.some.avg10, 1.5);
        assert_eq!(p.some.total, 1234);
        assert_eq!(p.full.total, 7);
    }

    #[test]
    fn cpu_list() {
        assert_eq!(parse_cpu_list("0-2,5\n"), vec![0, 1, 2, 5]);
        assert!(parse_cpu_list("\n").is_empty());
    }

    #[test]
    fn json_shape_matches_runc() {
        let mut s = Stats::default();
        s.cpu.usage.total = 5;
        s.memory.usage.limit = 10;
        s.pids.current = 1;
        s.hugetlb.insert("2MB".into(), Hugetlb::default());
        s.memory.working_set = 3;
        s.memory.oom_kill = 2;
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["cpu"]["usage"]["total"], 5);
        assert_eq!(v["cpu"]["usage"]["kernel"], 0);
        assert_eq!(v["memory"]["usage"]["limit"], 10);
        assert_eq!(v["memory"]["kernelTCP"]["failcnt"], 0);
        assert!(v["memory"].get("working_set").is_none());
        // OOM counters are berth's addition, always present so a consumer can tell 0 from absent.
        assert_eq!(v["memory"]["oomKill"], 2);
        assert_eq!(v["memory"]["oomEvents"], 0);
        let back: Stats = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(back.memory.oom_kill, 2);
        assert_eq!(v["pids"]["current"], 1);
        assert_eq!(v["hugetlb"]["2MB"]["failcnt"], 0);
        assert!(v["network_interfaces"].is_null());
        assert!(v["intel_rdt"].is_object());
        assert!(v["blkio"].as_object().unwrap().is_empty());
    }
}
