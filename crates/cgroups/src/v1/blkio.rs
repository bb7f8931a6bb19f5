//! v1 `blkio`: weights (cfq or bfq files) and throttling; I/O statistics.

use std::path::Path;

use oci_spec::runtime::{LinuxResources, LinuxThrottleDevice};

use crate::error::Error;
use crate::fs::{self, Plan, Undo};
use crate::stats::{BlkioEntry, Stats};

pub(crate) fn validate(r: &LinuxResources) -> Result<(), Error> {
    let Some(b) = r.block_io() else { return Ok(()) };
    for (name, w) in [
        ("blockIO.weight", b.weight()),
        ("blockIO.leafWeight", b.leaf_weight()),
    ] {
        if let Some(w) = w.filter(|w| *w != 0) {
            if !(10..=1000).contains(&w) {
                return Err(Error::invalid(name, w, "must be between 10 and 1000"));
            }
        }
    }
    for wd in b.weight_device().iter().flatten() {
        if wd.major() < 0 || wd.minor() < 0 {
            return Err(Error::invalid(
                "blockIO.weightDevice",
                format!("{}:{}", wd.major(), wd.minor()),
                "major and minor must be >= 0",
            ));
        }
        for w in [wd.weight(), wd.leaf_weight()].into_iter().flatten() {
            if !(10..=1000).contains(&w) {
                return Err(Error::invalid(
                    "blockIO.weightDevice.weight",
                    w,
                    "must be between 10 and 1000",
                ));
            }
        }
    }
    for (name, list) in throttles(r) {
        for t in list {
            if t.major() < 0 || t.minor() < 0 {
                return Err(Error::invalid(
                    name,
                    format!("{}:{}", t.major(), t.minor()),
                    "major and minor must be >= 0",
                ));
            }
        }
    }
    Ok(())
}

/// (v1 file, entries) for the four throttle lists.
pub(crate) fn throttles(r: &LinuxResources) -> Vec<(&'static str, &[LinuxThrottleDevice])> {
    let Some(b) = r.block_io() else { return vec![] };
    let mut v = Vec::new();
    for (file, list) in [
        (
            "blkio.throttle.read_bps_device",
            b.throttle_read_bps_device(),
        ),
        (
            "blkio.throttle.write_bps_device",
            b.throttle_write_bps_device(),
        ),
        (
            "blkio.throttle.read_iops_device",
            b.throttle_read_iops_device(),
        ),
        (
            "blkio.throttle.write_iops_device",
            b.throttle_write_iops_device(),
        ),
    ] {
        if let Some(l) = list {
            v.push((file, l.as_slice()));
        }
    }
    v
}

fn wants(r: &LinuxResources) -> bool {
    let Some(b) = r.block_io() else { return false };
    b.weight().unwrap_or(0) != 0
        || b.leaf_weight().unwrap_or(0) != 0
        || b.weight_device().as_ref().is_some_and(|v| !v.is_empty())
        || throttles(r).iter().any(|(_, l)| !l.is_empty())
}

/// The current per-device value of a "maj:min value" file.
fn current_device_value(dir: &Path, file: &str, dev: &str) -> Option<String> {
    let s = fs::read_opt(dir, file).ok().flatten()?;
    s.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next()? == dev).then(|| it.next().map(str::to_string))?
    })
}

pub(crate) fn plan(dir: Option<&Path>, r: &LinuxResources) -> Result<Plan, Error> {
    let mut p = Plan::default();
    if !wants(r) {
        return Ok(p);
    }
    let dir = dir.ok_or_else(|| Error::missing("blkio", "blockIO limits"))?;
    let Some(b) = r.block_io() else { return Ok(p) };
    // proportional weight: cfq's blkio.weight, else bfq's blkio.bfq.weight
    let weight_file = |cfq: &'static str, bfq_name: &'static str, what: String| {
        if fs::exists(dir, cfq) {
            Ok(cfq)
        } else if fs::exists(dir, bfq_name) {
            Ok(bfq_name)
        } else {
            Err(Error::Unsupported {
                path: dir.join(cfq),
                what: format!(
                    "{what} (neither {cfq} nor {bfq_name}: no proportional-weight I/O scheduler)"
                ),
            })
        }
    };
    if let Some(w) = b.weight().filter(|w| *w != 0) {
        let f = weight_file(
            "blkio.weight",
            "blkio.bfq.weight",
            format!("blockIO.weight {w}"),
        )?;
        p.push(dir, f, w.to_string());
    }
    if let Some(w) = b.leaf_weight().filter(|w| *w != 0) {
        let f = weight_file(
            "blkio.leaf_weight",
            "blkio.leaf_weight",
            format!("blockIO.leafWeight {w}"),
        )?;
        p.push(dir, f, w.to_string());
    }
    for wd in b.weight_device().iter().flatten() {
        let dev = format!("{}:{}", wd.major(), wd.minor());
        if let Some(w) = wd.weight() {
            let f = weight_file(
                "blkio.weight_device",
                "blkio.bfq.weight_device",
                format!("blockIO.weightDevice {dev}"),
            )?;
            let prev = current_device_value(dir, f, &dev).unwrap_or_else(|| "0".into());
            p.push_undo(
                dir,
                f,
                format!("{dev} {w}"),
                Undo::Explicit(vec![(f.into(), format!("{dev} {prev}"))]),
            );
        }
        if let Some(w) = wd.leaf_weight() {
            let f = weight_file(
                "blkio.leaf_weight_device",
                "blkio.leaf_weight_device",
                format!("blockIO.weightDevice.leafWeight {dev}"),
            )?;
            let prev = current_device_value(dir, f, &dev).unwrap_or_else(|| "0".into());
            p.push_undo(
                dir,
                f,
                format!("{dev} {w}"),
                Undo::Explicit(vec![(f.into(), format!("{dev} {prev}"))]),
            );
        }
    }
    for (file, list) in throttles(r) {
        if !fs::exists(dir, file) {
            return Err(Error::Unsupported {
                path: dir.join(file),
                what: "blockIO throttling".into(),
            });
        }
        for t in list {
            let dev = format!("{}:{}", t.major(), t.minor());
            // an absent entry reads back as nothing; "0" removes the limit
            let prev = current_device_value(dir, file, &dev).unwrap_or_else(|| "0".into());
            p.push_undo(
                dir,
                file,
                format!("{dev} {}", t.rate()),
                Undo::Explicit(vec![(file.into(), format!("{dev} {prev}"))]),
            );
        }
    }
    Ok(p)
}

/// Parse a v1 blkio recursive stats file: "8:0 Read 123" lines and a "Total" line.
pub(crate) fn parse_entries(s: &str) -> Vec<BlkioEntry> {
    let mut v = Vec::new();
    for line in s.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (dev, op, val) = match f.as_slice() {
            [dev, op, val] => (*dev, *op, *val),
            [dev, val] if dev.contains(':') => (*dev, "", *val),
            _ => continue,
        };
        let Some((ma, mi)) = dev.split_once(':') else {
            continue;
        };
        let (Ok(major), Ok(minor), Ok(value)) = (ma.parse(), mi.parse(), val.parse()) else {
            continue;
        };
        v.push(BlkioEntry {
            major,
            minor,
            op: op.to_string(),
            value,
        });
    }
    v
}

pub(crate) fn stats(dir: &Path, s: &mut Stats) -> Result<(), Error> {
    let get = |f: &str| -> Result<Vec<BlkioEntry>, Error> {
        Ok(fs::read_opt(dir, f)?
            .map(|t| parse_entries(&t))
            .unwrap_or_default())
    };
    let b = &mut s.blkio;
    if fs::exists(dir, "blkio.io_service_bytes_recursive") {
        // cfq
        b.io_service_bytes_recursive = get("blkio.io_service_bytes_recursive")?;
        b.io_serviced_recursive = get("blkio.io_serviced_recursive")?;
        b.io_queued_recursive = get("blkio.io_queued_recursive")?;
        b.io_service_time_recursive = get("blkio.io_service_time_recursive")?;
        b.io_wait_time_recursive = get("blkio.io_wait_time_recursive")?;
        b.io_merged_recursive = get("blkio.io_merged_recursive")?;
        b.io_time_recursive = get("blkio.time_recursive")?;
        b.sectors_recursive = get("blkio.sectors_recursive")?;
    }
    if b.io_service_bytes_recursive.is_empty()
        && fs::exists(dir, "blkio.bfq.io_service_bytes_recursive")
    {
        b.io_service_bytes_recursive = get("blkio.bfq.io_service_bytes_recursive")?;
        b.io_serviced_recursive = get("blkio.bfq.io_serviced_recursive")?;
    }
    if b.io_service_bytes_recursive.is_empty() {
        b.io_service_bytes_recursive = get("blkio.throttle.io_service_bytes_recursive")?;
        b.io_serviced_recursive = get("blkio.throttle.io_serviced_recursive")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_v1_entries() {
        let v = parse_entries("8:0 Read 4096\n8:0 Write 0\n8:0 Total 4096\nTotal 4096\n");
        assert_eq!(v.len(), 3);
        assert_eq!(
            v[0],
            BlkioEntry {
                major: 8,
                minor: 0,
                op: "Read".into(),
                value: 4096
            }
        );
    }
}
