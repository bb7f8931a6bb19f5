//! v2 `io`: io.weight / io.bfq.weight (from blkio weights) and io.max; io.stat.

use std::path::Path;

use oci_spec::runtime::LinuxResources;

use crate::error::Error;
use crate::fs::{self, Plan, Undo};
use crate::stats::{read_psi, BlkioEntry, Stats};

/// runc's linear map of blkio weight [10, 1000] to io.weight [1, 10000]; 0 stays unset.
pub fn blkio_weight_to_io_weight(w: u16) -> u64 {
    if w == 0 {
        return 0;
    }
    1 + (u64::from(w).saturating_sub(10)) * 9999 / 990
}

fn weight_write(dir: &Path, dev: Option<&str>, w: u16) -> (String, String) {
    // BFQ takes the blkio range as is; io.weight needs the conversion
    if fs::exists(dir, "io.bfq.weight") {
        let v = match dev {
            Some(d) => format!("{d} {w}"),
            None => w.to_string(),
        };
        ("io.bfq.weight".into(), v)
    } else {
        let c = blkio_weight_to_io_weight(w);
        let v = match dev {
            Some(d) => format!("{d} {c}"),
            None => format!("default {c}"),
        };
        ("io.weight".into(), v)
    }
}

pub(crate) fn plan(dir: &Path, r: &LinuxResources) -> Result<Plan, Error> {
    let mut p = Plan::default();
    let Some(b) = r.block_io() else { return Ok(p) };
    if b.leaf_weight().unwrap_or(0) != 0 {
        return Err(Error::invalid(
            "blockIO.leafWeight",
            b.leaf_weight().unwrap_or(0),
            "leaf weights do not exist on cgroup v2",
        ));
    }
    let need = |file: &str, what: String| -> Result<(), Error> {
        if fs::exists(dir, file) {
            Ok(())
        } else {
            Err(Error::Unsupported {
                path: dir.join(file),
                what,
            })
        }
    };
    if let Some(w) = b.weight().filter(|w| *w != 0) {
        let (f, v) = weight_write(dir, None, w);
        need(&f, format!("blockIO.weight {w}"))?;
        p.push(dir, &f, v);
    }
    for wd in b.weight_device().iter().flatten() {
        if let Some(w) = wd.weight() {
            let dev = format!("{}:{}", wd.major(), wd.minor());
            let (f, v) = weight_write(dir, Some(&dev), w);
            need(&f, format!("blockIO.weightDevice {dev}"))?;
            p.push_undo(
                dir,
                &f,
                v,
                Undo::Explicit(vec![(f.clone(), format!("{dev} default"))]),
            );
        }
    }
    let throttles = crate::v1::blkio::throttles(r);
    if throttles.iter().any(|(_, l)| !l.is_empty()) {
        need("io.max", "blockIO throttling".into())?;
        let cur = fs::read_opt(dir, "io.max")?.unwrap_or_default();
        for (v1file, list) in throttles {
            let key = match v1file {
                "blkio.throttle.read_bps_device" => "rbps",
                "blkio.throttle.write_bps_device" => "wbps",
                "blkio.throttle.read_iops_device" => "riops",
                _ => "wiops",
            };
            for t in list {
                let dev = format!("{}:{}", t.major(), t.minor());
                // a rate of 0 means "no limit", as in v1
                let rate = if t.rate() == 0 {
                    "max".to_string()
                } else {
                    t.rate().to_string()
                };
                let prev = cur
                    .lines()
                    .find(|l| l.split_whitespace().next() == Some(dev.as_str()))
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("{dev} rbps=max wbps=max riops=max wiops=max"));
                p.push_undo(
                    dir,
                    "io.max",
                    format!("{dev} {key}={rate}"),
                    Undo::Explicit(vec![("io.max".into(), prev)]),
                );
            }
        }
    }
    Ok(p)
}

/// Parse io.stat: "8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0".
pub(crate) fn parse_io_stat(s: &str, st: &mut Stats) {
    for line in s.lines() {
        let mut it = line.split_whitespace();
        let Some((ma, mi)) = it.next().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (ma.parse::<u64>(), mi.parse::<u64>()) else {
            continue;
        };
        for kv in it {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let Ok(value) = v.parse::<u64>() else {
                continue;
            };
            let (list, op) = match k {
                "rbytes" => (&mut st.blkio.io_service_bytes_recursive, "Read"),
                "wbytes" => (&mut st.blkio.io_service_bytes_recursive, "Write"),
                "dbytes" => (&mut st.blkio.io_service_bytes_recursive, "Discard"),
                "rios" => (&mut st.blkio.io_serviced_recursive, "Read"),
                "wios" => (&mut st.blkio.io_serviced_recursive, "Write"),
                "dios" => (&mut st.blkio.io_serviced_recursive, "Discard"),
                _ => continue,
            };
            list.push(BlkioEntry {
                major,
                minor,
                op: op.into(),
                value,
            });
        }
    }
}

pub(crate) fn stats(dir: &Path, s: &mut Stats) -> Result<(), Error> {
    if let Some(t) = fs::read_opt(dir, "io.stat")? {
        parse_io_stat(&t, s);
    }
    s.blkio.psi = read_psi(dir, "io.pressure")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_conversion() {
        assert_eq!(blkio_weight_to_io_weight(0), 0);
        assert_eq!(blkio_weight_to_io_weight(10), 1);
        assert_eq!(blkio_weight_to_io_weight(500), 4950);
        assert_eq!(blkio_weight_to_io_weight(1000), 10000);
    }

    #[test]
    fn io_stat() {
        let mut s = Stats::default();
        parse_io_stat(
            "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n",
            &mut s,
        );
        assert_eq!(s.blkio.io_service_bytes_recursive.len(), 3);
        assert_eq!(s.blkio.io_service_bytes_recursive[1].op, "Write");
        assert_eq!(s.blkio.io_service_bytes_recursive[1].value, 8192);
        assert_eq!(s.blkio.io_serviced_recursive[0].value, 1);
    }
}
