//! Plugin results, always in the 1.0 shape (`interfaces`, `ips`, `routes`,
//! `dns`). Results of 0.3.x/0.4.0 plugins (which add `version` to each IP) and
//! of 0.1.0/0.2.0 plugins (`ip4`/`ip6`) are converted; `raw` keeps exactly what
//! the plugin printed, which is also what the cache stores and what the next
//! plugin gets as `prevResult`.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::CniError;

/// The result of an ADD (or of a whole chain).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CniResult {
    /// The version the plugin answered in (the shape here is always 1.0).
    pub cni_version: String,
    pub interfaces: Vec<Interface>,
    pub ips: Vec<IpConfig>,
    pub routes: Vec<Route>,
    pub dns: Dns,
    /// The result JSON exactly as the plugin printed it.
    #[serde(default)]
    pub raw: Value,
}

/// An interface the plugin made or touched.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    /// The MAC address; empty when the plugin did not give one.
    #[serde(default)]
    pub mac: String,
    /// The netns path for interfaces inside the container, None on the host.
    #[serde(default)]
    pub sandbox: Option<String>,
    #[serde(default)]
    pub mtu: Option<u32>,
    /// 1.1.0: a vhost-user socket path.
    #[serde(default, rename = "socketPath")]
    pub socket_path: Option<String>,
    /// 1.1.0: the PCI address of a device.
    #[serde(default, rename = "pciID")]
    pub pci_id: Option<String>,
}

/// An address assigned to an interface.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IpConfig {
    /// CIDR notation, e.g. `10.1.2.3/24`.
    pub address: String,
    #[serde(default)]
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces`.
    #[serde(default)]
    pub interface: Option<usize>,
}

/// A route to add in the container.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Route {
    /// Destination in CIDR notation.
    pub dst: String,
    #[serde(default)]
    pub gw: Option<IpAddr>,
    /// 1.1.0 route attributes.
    #[serde(default)]
    pub mtu: Option<u32>,
    #[serde(default)]
    pub advmss: Option<u32>,
    #[serde(default)]
    pub priority: Option<u32>,
    #[serde(default)]
    pub table: Option<u32>,
    #[serde(default)]
    pub scope: Option<u32>,
}

/// DNS settings the plugin suggests.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Dns {
    #[serde(default)]
    pub nameservers: Vec<String>,
    #[serde(default)]
    pub domain: Option<String>,
    #[serde(default)]
    pub search: Vec<String>,
    #[serde(default)]
    pub options: Vec<String>,
}

/// The answer of CNI_COMMAND=VERSION.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionInfo {
    #[serde(rename = "cniVersion", default)]
    pub cni_version: String,
    #[serde(rename = "supportedVersions")]
    pub supported_versions: Vec<String>,
}

// Lenient wire forms: unknown fields (such as 0.3.x's `version`) are ignored.
#[derive(Deserialize)]
struct WireIp {
    address: String,
    #[serde(default)]
    gateway: Option<String>,
    #[serde(default)]
    interface: Option<usize>,
}

#[derive(Deserialize)]
struct WireRoute {
    dst: String,
    #[serde(default)]
    gw: Option<String>,
    #[serde(default)]
    mtu: Option<u32>,
    #[serde(default)]
    advmss: Option<u32>,
    #[serde(default)]
    priority: Option<u32>,
    #[serde(default)]
    table: Option<u32>,
    #[serde(default)]
    scope: Option<u32>,
}

#[derive(Deserialize)]
struct WireLegacyIp {
    ip: String,
    #[serde(default)]
    gateway: Option<String>,
    #[serde(default)]
    routes: Vec<WireRoute>,
}

fn field<T: serde::de::DeserializeOwned>(obj: &Value, key: &str) -> Result<Option<T>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v.clone())
            .map(Some)
            .map_err(|e| format!("field {key:?}: {e}")),
    }
}

fn parse_gw(what: &str, s: Option<String>) -> Result<Option<IpAddr>, String> {
    match s {
        None => Ok(None),
        Some(s) if s.is_empty() => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|_| format!("{what} {s:?} is not an IP address")),
    }
}

fn check_cidr(what: &str, s: &str) -> Result<(), String> {
    let ok = s
        .split_once('/')
        .map(|(ip, len)| ip.parse::<IpAddr>().is_ok() && len.parse::<u8>().is_ok())
        .unwrap_or(false);
    if ok {
        Ok(())
    } else {
        Err(format!("{what} {s:?} is not in CIDR notation"))
    }
}

fn convert_route(r: WireRoute) -> Result<Route, String> {
    check_cidr("route dst", &r.dst)?;
    Ok(Route {
        gw: parse_gw("route gw", r.gw)?,
        dst: r.dst,
        mtu: r.mtu,
        advmss: r.advmss,
        priority: r.priority,
        table: r.table,
        scope: r.scope,
    })
}

impl CniResult {
    /// Parses a plugin's result of any spec version into the 1.0 shape.
    pub fn from_value(plugin: &str, raw: Value) -> Result<Self, CniError> {
        Self::convert(&raw).map_err(|reason| CniError::BadResult {
            plugin: plugin.to_string(),
            reason,
        })
    }

    /// Parses a plugin's stdout.
    pub fn from_slice(plugin: &str, bytes: &[u8]) -> Result<Self, CniError> {
        let raw: Value = serde_json::from_slice(bytes).map_err(|e| CniError::BadResult {
            plugin: plugin.to_string(),
            reason: format!(
                "not JSON ({e}): {:?}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            ),
        })?;
        Self::from_value(plugin, raw)
    }

    fn convert(raw: &Value) -> Result<Self, String> {
        if !raw.is_object() {
            return Err("not a JSON object".to_string());
        }
        let cni_version: String = field(raw, "cniVersion")?.unwrap_or_default();
        let dns: Dns = field(raw, "dns")?.unwrap_or_default();
        let legacy = raw.get("ip4").is_some() || raw.get("ip6").is_some();
        if legacy && raw.get("ips").is_none() {
            // 0.1.0 / 0.2.0: one address per family, routes beside it.
            let mut ips = Vec::new();
            let mut routes = Vec::new();
            for key in ["ip4", "ip6"] {
                if let Some(l) = field::<WireLegacyIp>(raw, key)? {
                    check_cidr(&format!("{key}.ip"), &l.ip)?;
                    ips.push(IpConfig {
                        gateway: parse_gw(&format!("{key}.gateway"), l.gateway)?,
                        address: l.ip,
                        interface: None,
                    });
                    for r in l.routes {
                        routes.push(convert_route(r)?);
                    }
                }
            }
            return Ok(CniResult {
                cni_version,
                interfaces: Vec::new(),
                ips,
                routes,
                dns,
                raw: raw.clone(),
            });
        }
        let interfaces: Vec<Interface> = field(raw, "interfaces")?.unwrap_or_default();
        let wire_ips: Vec<WireIp> = field(raw, "ips")?.unwrap_or_default();
        let mut ips = Vec::with_capacity(wire_ips.len());
        for ip in wire_ips {
            check_cidr("ip address", &ip.address)?;
            if let Some(i) = ip.interface {
                if i >= interfaces.len() {
                    return Err(format!(
                        "ip {} refers to interface {i}, but there are {} interfaces",
                        ip.address,
                        interfaces.len()
                    ));
                }
            }
            ips.push(IpConfig {
                gateway: parse_gw("ip gateway", ip.gateway)?,
                address: ip.address,
                interface: ip.interface,
            });
        }
        let routes = field::<Vec<WireRoute>>(raw, "routes")?
            .unwrap_or_default()
            .into_iter()
            .map(convert_route)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(CniResult {
            cni_version,
            interfaces,
            ips,
            routes,
            dns,
            raw: raw.clone(),
        })
    }
}

/// A result (as JSON) in the shape of spec version `target`, as libcni hands
/// the cached result to plugins: 0.3.0..0.4.0 results carry `version` ("4" or
/// "6") in each IP, 1.0.0 and later do not. `cniVersion` becomes `target`.
/// Results older than 0.3.0 and non-objects are returned unchanged.
pub fn as_version(raw: &Value, target: &str) -> Value {
    use crate::config::version_at_least;
    let mut out = raw.clone();
    let Some(obj) = out.as_object_mut() else {
        return out;
    };
    let from = obj
        .get("cniVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let shaped = |v: &str| version_at_least(v, "0.3.0");
    if !shaped(&from) || !shaped(target) {
        return out;
    }
    let want_version_field = !version_at_least(target, "1.0.0");
    if let Some(Value::Array(ips)) = obj.get_mut("ips") {
        for ip in ips.iter_mut().filter_map(Value::as_object_mut) {
            if want_version_field {
                let v6 = ip
                    .get("address")
                    .and_then(Value::as_str)
                    .is_some_and(|a| a.contains(':'));
                ip.insert(
                    "version".into(),
                    Value::String(if v6 { "6" } else { "4" }.into()),
                );
            } else {
                ip.remove("version");
            }
        }
    }
    obj.insert("cniVersion".into(), Value::String(target.to_string()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_1_0() {
        let raw = json!({
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "cni0", "mac": "aa:bb:cc:dd:ee:ff"},
                           {"name": "eth0", "mac": "11:22:33:44:55:66", "sandbox": "/run/netns/x", "mtu": 1400}],
            "ips": [{"address": "10.9.0.5/24", "gateway": "10.9.0.1", "interface": 1}],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "10.0.0.0/8", "gw": "10.9.0.254", "mtu": 1300}],
            "dns": {"nameservers": ["10.9.0.1"], "search": ["example"]}
        });
        let r = CniResult::from_value("bridge", raw.clone()).unwrap();
        assert_eq!(r.cni_version, "1.0.0");
        assert_eq!(r.interfaces[1].sandbox.as_deref(), Some("/run/netns/x"));
        assert_eq!(r.interfaces[1].mtu, Some(1400));
        assert_eq!(r.ips[0].address, "10.9.0.5/24");
        assert_eq!(r.ips[0].gateway, Some("10.9.0.1".parse().unwrap()));
        assert_eq!(r.ips[0].interface, Some(1));
        assert_eq!(r.routes[0].gw, None);
        assert_eq!(r.routes[1].mtu, Some(1300));
        assert_eq!(r.dns.nameservers, vec!["10.9.0.1"]);
        assert_eq!(r.raw, raw);
    }

    #[test]
    fn converts_0_4_and_0_3() {
        for v in ["0.3.0", "0.3.1", "0.4.0"] {
            let raw = json!({
                "cniVersion": v,
                "interfaces": [{"name": "eth0", "sandbox": "/x"}],
                "ips": [{"version": "4", "address": "10.9.0.5/24", "gateway": "10.9.0.1", "interface": 0},
                        {"version": "6", "address": "fd00::5/64"}],
                "routes": [{"dst": "0.0.0.0/0", "gw": "10.9.0.1"}],
            });
            let r = CniResult::from_value("p", raw).unwrap();
            assert_eq!(r.ips.len(), 2, "{v}");
            assert_eq!(r.ips[1].address, "fd00::5/64");
            assert_eq!(r.interfaces[0].mac, "");
            // Serialized, the shape is 1.0: no `version` anywhere.
            let out = serde_json::to_value(&r.ips).unwrap();
            assert!(out[0].get("version").is_none());
        }
    }

    #[test]
    fn as_version_reshapes_ips() {
        let old = json!({"cniVersion": "0.4.0", "ips": [
            {"version": "4", "address": "10.0.0.2/24"}, {"version": "6", "address": "fd00::2/64"}]});
        let new = as_version(&old, "1.0.0");
        assert_eq!(new["cniVersion"], "1.0.0");
        assert!(new["ips"][0].get("version").is_none());
        let back = as_version(&new, "0.3.1");
        assert_eq!(back["cniVersion"], "0.3.1");
        assert_eq!(back["ips"][0]["version"], "4");
        assert_eq!(back["ips"][1]["version"], "6");
        let legacy = json!({"cniVersion": "0.2.0", "ip4": {"ip": "10.0.0.2/24"}});
        assert_eq!(as_version(&legacy, "1.0.0"), legacy);
    }

    #[test]
    fn converts_0_2() {
        let raw = json!({
            "cniVersion": "0.2.0",
            "ip4": {"ip": "10.9.0.5/24", "gateway": "10.9.0.1", "routes": [{"dst": "0.0.0.0/0"}]},
            "ip6": {"ip": "fd00::5/64"},
            "dns": {"nameservers": ["1.1.1.1"]}
        });
        let r = CniResult::from_value("p", raw).unwrap();
        assert_eq!(r.ips.len(), 2);
        assert_eq!(r.ips[0].gateway, Some("10.9.0.1".parse().unwrap()));
        assert_eq!(r.routes.len(), 1);
        assert_eq!(r.dns.nameservers, vec!["1.1.1.1"]);
    }

    #[test]
    fn bad_results_are_named() {
        let cases = [
            (json!([1]), "not a JSON object"),
            (json!({"ips": [{"address": "10.0.0.1"}]}), "CIDR"),
            (
                json!({"ips": [{"address": "10.0.0.1/8", "gateway": "nope"}]}),
                "not an IP",
            ),
            (
                json!({"ips": [{"address": "10.0.0.1/8", "interface": 3}]}),
                "interface 3",
            ),
            (json!({"routes": "x"}), "routes"),
        ];
        for (raw, want) in cases {
            let err = CniResult::from_value("myplug", raw.clone())
                .unwrap_err()
                .to_string();
            assert!(err.contains("myplug") && err.contains(want), "{raw}: {err}");
        }
        let err = CniResult::from_slice("myplug", b"hello")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not JSON"), "{err}");
    }
}
