//! v1 `hugetlb`: hugetlb.<size>.limit_in_bytes (and .rsvd when present); stats.

use std::path::Path;

use oci_spec::runtime::LinuxResources;

use crate::error::Error;
use crate::fs::{self, Plan};
use crate::stats::{Hugetlb, Stats};

/// Validate page sizes ("2MB", "1GB", "64KB") and limits.
pub(crate) fn validate(r: &LinuxResources) -> Result<(), Error> {
    for h in r.hugepage_limits().iter().flatten() {
        let ps = h.page_size();
        let num = ps
            .strip_suffix("KB")
            .or_else(|| ps.strip_suffix("MB"))
            .or_else(|| ps.strip_suffix("GB"));
        if !num.is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())) {
            return Err(Error::invalid(
                "hugepageLimits.pageSize",
                format!("{ps:?}"),
                "expected a size like 2MB, 1GB or 64KB",
            ));
        }
        if h.limit() < 0 {
            return Err(Error::invalid(
                format!("hugetlb.{ps} limit"),
                h.limit(),
                "must be >= 0",
            ));
        }
    }
    Ok(())
}

/// Plan writes for `file_of(size)` (and its rsvd twin when it exists).
pub(crate) fn plan_with(
    dir: &Path,
    r: &LinuxResources,
    limit_file: impl Fn(&str) -> String,
    rsvd_file: impl Fn(&str) -> String,
) -> Result<Plan, Error> {
    let mut p = Plan::default();
    for h in r.hugepage_limits().iter().flatten() {
        let f = limit_file(h.page_size());
        if !fs::exists(dir, &f) {
            return Err(Error::Unsupported {
                path: dir.join(&f),
                what: format!("a hugetlb limit for page size {}", h.page_size()),
            });
        }
        p.push(dir, &f, h.limit().to_string());
        let rf = rsvd_file(h.page_size());
        if fs::exists(dir, &rf) {
            p.push(dir, &rf, h.limit().to_string());
        }
    }
    Ok(p)
}

pub(crate) fn plan(dir: &Path, r: &LinuxResources) -> Result<Plan, Error> {
    plan_with(
        dir,
        r,
        |ps| format!("hugetlb.{ps}.limit_in_bytes"),
        |ps| format!("hugetlb.{ps}.rsvd.limit_in_bytes"),
    )
}

/// Page sizes present in a hugetlb cgroup directory, from its file names.
pub(crate) fn sizes(dir: &Path, suffix: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    let rest = n.strip_prefix("hugetlb.")?.strip_suffix(suffix)?;
                    (!rest.contains('.')).then(|| rest.to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

pub(crate) fn stats(dir: &Path, s: &mut Stats) -> Result<(), Error> {
    for ps in sizes(dir, ".limit_in_bytes") {
        let f = |n: &str| fs::read_u64_or_zero(dir, &format!("hugetlb.{ps}.{n}"));
        s.hugetlb.insert(
            ps.clone(),
            Hugetlb {
                usage: f("usage_in_bytes")?,
                max: f("max_usage_in_bytes")?,
                failcnt: f("failcnt")?,
            },
        );
    }
    Ok(())
}
