//! IPAM and attachment records: berth's replacement for CNI's host-local.
//!
//! Each network has one record file, `<state>/<network>.json`
//! (`{"schema":1,"attachments":[...]}`), and one lock file,
//! `<state>/<network>.lock`. Every change happens with an exclusive `flock`
//! on the lock file held from reading the records to writing them back
//! (atomically: temp file, fsync, rename), so two processes never hand out
//! the same address: an address is in use exactly when a record names it.
//! The allocation itself is pure ([`next_free`]): the lowest address after
//! the gateway, never the network, broadcast or gateway address.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Attachment, BridgeError};

/// The schema version of `<network>.json`.
pub const SCHEMA: u32 = 1;

/// The network mask of `prefix` bits.
pub fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    }
}

/// The network address of `ip/prefix`.
pub fn network(ip: Ipv4Addr, prefix: u8) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(ip) & mask(prefix))
}

/// The broadcast address of `ip/prefix`.
pub fn broadcast(ip: Ipv4Addr, prefix: u8) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(ip) | !mask(prefix))
}

/// Whether `ip` is in `net/prefix`.
pub fn contains(net: Ipv4Addr, prefix: u8, ip: Ipv4Addr) -> bool {
    u32::from(ip) & mask(prefix) == u32::from(net) & mask(prefix)
}

/// Whether `ip` may be given to a container of `net/prefix` with `gateway`.
pub fn usable(net: Ipv4Addr, prefix: u8, gateway: Ipv4Addr, ip: Ipv4Addr) -> bool {
    contains(net, prefix, ip)
        && ip != network(net, prefix)
        && ip != broadcast(net, prefix)
        && ip != gateway
}

/// The lowest free address after the gateway (then, wrapping, the lowest
/// free one before it), or `None` when the subnet is full.
pub fn next_free(
    net: Ipv4Addr,
    prefix: u8,
    gateway: Ipv4Addr,
    used: &[Ipv4Addr],
) -> Option<Ipv4Addr> {
    let first = u32::from(network(net, prefix)) + 1;
    let last = u32::from(broadcast(net, prefix)).checked_sub(1)?;
    let gw = u32::from(gateway);
    let start = if (first..=last).contains(&gw) {
        gw + 1
    } else {
        first
    };
    (start..=last)
        .chain(first..start)
        .map(Ipv4Addr::from)
        .find(|ip| usable(net, prefix, gateway, *ip) && !used.contains(ip))
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct RecordFile {
    schema: u32,
    attachments: Vec<Attachment>,
}

/// The records of one network, locked for as long as this value lives.
#[derive(Debug)]
pub struct Locked {
    _lock: File,
    path: PathBuf,
    /// The network's attachments as read under the lock.
    pub attachments: Vec<Attachment>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BridgeError + '_ {
    move |source| BridgeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Read the records of `network` without locking (a snapshot for listing).
pub fn read(state_dir: &Path, network: &str) -> Result<Vec<Attachment>, BridgeError> {
    let path = state_dir.join(format!("{network}.json"));
    match std::fs::read(&path) {
        Ok(data) => parse(&path, &data),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io_err(&path)(e)),
    }
}

fn parse(path: &Path, data: &[u8]) -> Result<Vec<Attachment>, BridgeError> {
    if data.is_empty() {
        return Ok(Vec::new());
    }
    let f: RecordFile = serde_json::from_slice(data).map_err(|source| BridgeError::State {
        path: path.to_path_buf(),
        source,
    })?;
    if f.schema != SCHEMA {
        return Err(BridgeError::Schema {
            path: path.to_path_buf(),
            found: f.schema,
        });
    }
    Ok(f.attachments)
}

/// Lock `network`'s records (blocking until no other process holds them)
/// and read them.
pub fn lock(state_dir: &Path, network: &str) -> Result<Locked, BridgeError> {
    std::fs::create_dir_all(state_dir).map_err(io_err(state_dir))?;
    let lock_path = state_dir.join(format!("{network}.lock"));
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_err(&lock_path))?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| io_err(&lock_path)(e.into()))?;
    let attachments = read(state_dir, network)?;
    Ok(Locked {
        _lock: lock,
        path: state_dir.join(format!("{network}.json")),
        attachments,
    })
}

impl Locked {
    /// Write the records back atomically (the lock stays held).
    pub fn save(&self) -> Result<(), BridgeError> {
        let tmp = self.path.with_extension("json.tmp");
        let body = serde_json::to_vec_pretty(&RecordFile {
            schema: SCHEMA,
            attachments: self.attachments.clone(),
        })
        .map_err(|source| BridgeError::State {
            path: self.path.clone(),
            source,
        })?;
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(&body).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, &self.path).map_err(io_err(&self.path))
    }

    /// The addresses in use.
    pub fn used(&self) -> Vec<Ipv4Addr> {
        self.attachments.iter().map(|a| a.ip).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn masks_and_ranges() {
        assert_eq!(network(ip("10.1.2.3"), 24), ip("10.1.2.0"));
        assert_eq!(broadcast(ip("10.1.2.3"), 24), ip("10.1.2.255"));
        assert_eq!(broadcast(ip("10.1.2.3"), 30), ip("10.1.2.3"));
        assert!(contains(ip("10.1.0.0"), 16, ip("10.1.255.1")));
        assert!(!contains(ip("10.1.0.0"), 16, ip("10.2.0.1")));
        assert_eq!(mask(0), 0);
        assert_eq!(mask(32), u32::MAX);
    }

    #[test]
    fn allocates_lowest_after_gateway_skipping_used() {
        let (n, gw) = (ip("10.88.0.0"), ip("10.88.0.1"));
        assert_eq!(next_free(n, 24, gw, &[]), Some(ip("10.88.0.2")));
        assert_eq!(
            next_free(n, 24, gw, &[ip("10.88.0.2"), ip("10.88.0.3")]),
            Some(ip("10.88.0.4"))
        );
        // a freed address is reused: lowest free, not round robin
        assert_eq!(
            next_free(n, 24, gw, &[ip("10.88.0.3")]),
            Some(ip("10.88.0.2"))
        );
        // a gateway in the middle: after it first, then wrap to below it
        let gw = ip("10.88.0.253");
        assert_eq!(next_free(n, 24, gw, &[]), Some(ip("10.88.0.254")));
        assert_eq!(
            next_free(n, 24, gw, &[ip("10.88.0.254")]),
            Some(ip("10.88.0.1"))
        );
    }

    #[test]
    fn exhaustion_and_tiny_subnets() {
        let (n, gw) = (ip("10.9.9.0"), ip("10.9.9.1"));
        // /30: .0 network, .1 gateway, .2 the only host, .3 broadcast
        assert_eq!(next_free(n, 30, gw, &[]), Some(ip("10.9.9.2")));
        assert_eq!(next_free(n, 30, gw, &[ip("10.9.9.2")]), None);
        let used: Vec<_> = (2..=254).map(|i| Ipv4Addr::new(10, 9, 9, i)).collect();
        assert_eq!(next_free(n, 24, gw, &used), None);
        assert!(!usable(n, 24, gw, ip("10.9.9.0")));
        assert!(!usable(n, 24, gw, ip("10.9.9.255")));
        assert!(!usable(n, 24, gw, gw));
        assert!(!usable(n, 24, gw, ip("10.9.10.1")));
        assert!(usable(n, 24, gw, ip("10.9.9.77")));
    }

    fn att(id: &str, ip: Ipv4Addr) -> Attachment {
        Attachment {
            network: "n".into(),
            container_id: id.into(),
            ifname: "eth0".into(),
            host_veth: "vethx".into(),
            ip,
            prefix: 24,
            gateway: Ipv4Addr::new(10, 7, 0, 1),
            mac: String::new(),
            ports: Vec::new(),
        }
    }

    #[test]
    fn records_round_trip_and_schema_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut l = lock(dir.path(), "n").unwrap();
            assert!(l.attachments.is_empty());
            l.attachments.push(att("a", ip("10.7.0.2")));
            l.save().unwrap();
        }
        let got = read(dir.path(), "n").unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].container_id, "a");
        std::fs::write(
            dir.path().join("n.json"),
            br#"{"schema":99,"attachments":[]}"#,
        )
        .unwrap();
        let err = read(dir.path(), "n").unwrap_err().to_string();
        assert!(err.contains("schema 99"), "{err}");
    }

    /// Many threads, each with its own lock fd (as separate processes would
    /// have), allocate at once: every address is handed out once.
    #[test]
    fn concurrent_allocation_never_repeats_an_address() {
        let dir = tempfile::tempdir().unwrap();
        let (n, gw) = (ip("10.7.0.0"), ip("10.7.0.1"));
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let d = dir.path().to_path_buf();
                std::thread::spawn(move || {
                    let mut mine = Vec::new();
                    for i in 0..10 {
                        let mut l = lock(&d, "n").unwrap();
                        let ip = next_free(n, 24, gw, &l.used()).unwrap();
                        l.attachments.push(att(&format!("c{t}-{i}"), ip));
                        l.save().unwrap();
                        mine.push(ip);
                    }
                    mine
                })
            })
            .collect();
        let mut all: Vec<Ipv4Addr> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        assert_eq!(all.len(), 80);
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 80, "an address was handed out twice");
        assert_eq!(read(dir.path(), "n").unwrap().len(), 80);
    }
}
