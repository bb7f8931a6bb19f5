//! Published ports: docker's `-p [IP:][HOSTPORT:]CTRPORT[/tcp|udp]` (with
//! equal-length ranges such as `8000-8001:80-81`) and `-P`, which publishes
//! the image's exposed ports on free host ports.
//!
//! A host port of 0 means "any free port": [`assign`] picks one by binding
//! port 0 on the host address, as docker does, just before the network is
//! set up.

use std::fmt;
use std::net::{Ipv4Addr, TcpListener, UdpSocket};

use serde::{Deserialize, Serialize};

/// A bad `-p` value, or an exposed port of the image that is not a port.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// The value's shape or a number in it is wrong.
    #[error("invalid port mapping {spec:?}: {reason}")]
    Invalid {
        /// The value as given.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No free host port could be found.
    #[error("no free host port for {0}")]
    NoFreePort(String),
    /// The host port is taken by a process or another container.
    #[error("cannot publish {mapping}: host port {port}/{protocol} is already in use{by}")]
    InUse {
        /// The mapping asked for.
        mapping: String,
        /// The port.
        port: u16,
        /// tcp or udp.
        protocol: String,
        /// " by container X", or nothing for a host process.
        by: String,
    },
}

/// One published port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// The host address it listens on; None for all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<Ipv4Addr>,
    /// The host port; 0 until [`assign`] chooses one.
    pub host_port: u16,
    /// The container's port.
    pub container_port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
}

impl fmt::Display for PortMapping {
    /// docker's `port` line: `80/tcp -> 0.0.0.0:8080`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} -> {}:{}",
            self.container_port,
            self.protocol,
            self.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED),
            self.host_port
        )
    }
}

fn range(spec: &str, s: &str, what: &str) -> Result<(u16, u16), PortError> {
    let bad = |reason: String| PortError::Invalid {
        spec: spec.to_string(),
        reason,
    };
    let num = |n: &str| -> Result<u16, PortError> {
        n.parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| bad(format!("{what} {n:?} is not a port (1-65535)")))
    };
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (num(a)?, num(b)?);
            if b < a {
                return Err(bad(format!("{what} range {s:?} ends before it starts")));
            }
            Ok((a, b))
        }
        None => {
            let p = num(s)?;
            Ok((p, p))
        }
    }
}

/// Parses one `-p` value into its mappings (several for a range).
pub fn parse(spec: &str) -> Result<Vec<PortMapping>, PortError> {
    let bad = |reason: &str| PortError::Invalid {
        spec: spec.to_string(),
        reason: reason.to_string(),
    };
    let (rest, protocol) = match spec.rsplit_once('/') {
        Some((r, p)) => (r, p.to_ascii_lowercase()),
        None => (spec, "tcp".to_string()),
    };
    if protocol != "tcp" && protocol != "udp" {
        return Err(bad("the protocol must be tcp or udp"));
    }
    if rest.starts_with('[') {
        return Err(bad("IPv6 host addresses are not supported"));
    }
    let parts: Vec<&str> = rest.split(':').collect();
    let (ip, host, ctr) = match parts.as_slice() {
        [c] => (None, "", *c),
        [h, c] => (None, *h, *c),
        [ip, h, c] => (Some(*ip), *h, *c),
        _ => return Err(bad("use [IP:][HOSTPORT:]CTRPORT[/tcp|udp]")),
    };
    let host_ip = match ip {
        None | Some("") => None,
        Some(ip) => match ip.parse::<Ipv4Addr>() {
            Ok(a) if a.is_unspecified() => None,
            Ok(a) => Some(a),
            Err(_) => return Err(bad(&format!("{ip:?} is not an IPv4 address"))),
        },
    };
    let (c0, c1) = range(spec, ctr, "container port")?;
    let hosts: Vec<u16> = if host.is_empty() {
        vec![0; usize::from(c1 - c0) + 1]
    } else {
        let (h0, h1) = range(spec, host, "host port")?;
        if h1 - h0 != c1 - c0 {
            return Err(bad("the host and container port ranges differ in length"));
        }
        (h0..=h1).collect()
    };
    Ok((c0..=c1)
        .zip(hosts)
        .map(|(c, h)| PortMapping {
            host_ip,
            host_port: h,
            container_port: c,
            protocol: protocol.clone(),
        })
        .collect())
}

/// `-P`: the image's exposed ports (`80/tcp`, `53/udp`, `8080`) on free
/// host ports.
pub fn exposed(ports: &[String]) -> Result<Vec<PortMapping>, PortError> {
    let mut out = Vec::new();
    for p in ports {
        let (n, proto) = p.split_once('/').unwrap_or((p, "tcp"));
        out.extend(parse(&format!("{n}/{proto}"))?);
    }
    Ok(out)
}

/// Checks that no two mappings take the same host address, port and
/// protocol.
pub fn check_unique(ports: &[PortMapping]) -> Result<(), PortError> {
    for (i, a) in ports.iter().enumerate() {
        for b in &ports[..i] {
            let ips_meet = a.host_ip.is_none() || b.host_ip.is_none() || a.host_ip == b.host_ip;
            if a.host_port != 0
                && a.host_port == b.host_port
                && a.protocol == b.protocol
                && ips_meet
            {
                return Err(PortError::Invalid {
                    spec: a.to_string(),
                    reason: format!("host port {} is published twice", a.host_port),
                });
            }
        }
    }
    Ok(())
}

/// Checks that every fixed host port is free: no other container publishes
/// it (`taken`, with the containers' names) and no process of the host
/// listens on it (tried by binding it, as docker does).
pub fn check_free(ports: &[PortMapping], taken: &[(String, PortMapping)]) -> Result<(), PortError> {
    for p in ports.iter().filter(|p| p.host_port != 0) {
        let in_use = |by: String| PortError::InUse {
            mapping: p.to_string(),
            port: p.host_port,
            protocol: p.protocol.clone(),
            by,
        };
        for (name, t) in taken {
            let ips_meet = p.host_ip.is_none() || t.host_ip.is_none() || p.host_ip == t.host_ip;
            if t.host_port == p.host_port && t.protocol == p.protocol && ips_meet {
                return Err(in_use(format!(" by container {name}")));
            }
        }
        let ip = p.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
        let bound = if p.protocol == "udp" {
            UdpSocket::bind((ip, p.host_port)).map(drop)
        } else {
            TcpListener::bind((ip, p.host_port)).map(drop)
        };
        if bound.is_err() {
            return Err(in_use(String::new()));
        }
    }
    Ok(())
}

/// Gives every mapping with host port 0 a free port of the host, found by
/// binding port 0 on its address.
pub fn assign(ports: &mut [PortMapping]) -> Result<(), PortError> {
    for p in ports.iter_mut().filter(|p| p.host_port == 0) {
        let ip = p.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
        let port = if p.protocol == "udp" {
            UdpSocket::bind((ip, 0)).and_then(|s| s.local_addr())
        } else {
            TcpListener::bind((ip, 0)).and_then(|s| s.local_addr())
        };
        p.host_port = port
            .map(|a| a.port())
            .map_err(|_| PortError::NoFreePort(p.to_string()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(s: &str) -> PortMapping {
        let v = parse(s).unwrap();
        assert_eq!(v.len(), 1, "{s}");
        v.into_iter().next().unwrap()
    }

    #[test]
    fn docker_shapes() {
        let p = one("8080:80");
        assert_eq!((p.host_ip, p.host_port, p.container_port), (None, 8080, 80));
        assert_eq!(p.protocol, "tcp");
        let p = one("127.0.0.1:5353:53/udp");
        assert_eq!(p.host_ip, Some(Ipv4Addr::LOCALHOST));
        assert_eq!((p.host_port, p.container_port), (5353, 53));
        assert_eq!(p.protocol, "udp");
        assert_eq!(one("80").host_port, 0);
        assert_eq!(one("127.0.0.1::80").host_port, 0);
        assert_eq!(one("0.0.0.0:81:80").host_ip, None);
        let r = parse("8000-8002:80-82/tcp").unwrap();
        assert_eq!(
            r.iter()
                .map(|p| (p.host_port, p.container_port))
                .collect::<Vec<_>>(),
            vec![(8000, 80), (8001, 81), (8002, 82)]
        );
        assert_eq!(one("8080:80").to_string(), "80/tcp -> 0.0.0.0:8080");
    }

    #[test]
    fn bad_values_name_the_fault() {
        for (s, want) in [
            ("80/sctp", "tcp or udp"),
            ("a:b:c:d", "[IP:]"),
            ("x:80", "host port \"x\""),
            ("8080:0", "container port \"0\""),
            ("1.2.3:80:80", "IPv4"),
            ("8000-8001:80", "differ in length"),
            ("[::1]:80:80", "IPv6"),
            ("90-80:90-80", "ends before"),
        ] {
            let e = parse(s).unwrap_err().to_string();
            assert!(e.contains(s) && e.contains(want), "{s}: {e}");
        }
    }

    #[test]
    fn exposed_ports_and_duplicates() {
        let v = exposed(&["80/tcp".into(), "53/udp".into(), "8080".into()]).unwrap();
        assert_eq!(v.len(), 3);
        assert!(v.iter().all(|p| p.host_port == 0));
        assert_eq!(v[1].protocol, "udp");
        let mut dup = parse("8080:80").unwrap();
        dup.extend(parse("127.0.0.1:8080:81").unwrap());
        assert!(check_unique(&dup)
            .unwrap_err()
            .to_string()
            .contains("twice"));
        let mut ok = parse("8080:80").unwrap();
        ok.extend(parse("8080:80/udp").unwrap());
        check_unique(&ok).unwrap();
    }

    #[test]
    fn ports_in_use_are_refused() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let want = parse(&format!("127.0.0.1:{port}:80")).unwrap();
        let e = check_free(&want, &[]).unwrap_err().to_string();
        assert!(e.contains(&format!("host port {port}/tcp")), "{e}");
        drop(l);
        check_free(&want, &[]).unwrap();
        let other = parse(&format!("{port}:81")).unwrap().remove(0);
        let e = check_free(&want, &[("web".into(), other)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("by container web"), "{e}");
    }

    #[test]
    fn assign_picks_free_ports() {
        let mut v = parse("127.0.0.1::80").unwrap();
        v.extend(parse("127.0.0.1::53/udp").unwrap());
        assign(&mut v).unwrap();
        assert!(v.iter().all(|p| p.host_port != 0));
    }
}
