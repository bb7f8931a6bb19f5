//! docker's inspect document of a container, built from its record, its
//! state and its network state.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::container::{Container, Engine, State, Status};
use crate::network::NetState;

/// Where a container's files are, for the document.
#[derive(Debug, Clone)]
pub struct Paths {
    /// `<root>/containers/<id>`.
    pub dir: PathBuf,
    /// Its bundle.
    pub bundle: PathBuf,
    /// Its log.
    pub log: PathBuf,
    /// The engine's default runtime.
    pub runtime: PathBuf,
}

/// docker's `NetworkSettings`: the namespace, each network's address, and
/// the published ports.
pub fn network_settings(st: &NetState) -> Value {
    let mut networks = serde_json::Map::new();
    for a in &st.attachments {
        networks.insert(
            a.network.clone(),
            json!({
                "IPAddress": a.ip.map(|i| i.to_string()).unwrap_or_default(),
                "IPPrefixLen": a.prefix,
                "Gateway": a.gateway.map(|g| g.to_string()).unwrap_or_default(),
                "MacAddress": a.mac,
                "InterfaceName": a.ifname,
            }),
        );
    }
    let mut ports: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for m in &st.ports {
        ports
            .entry(format!("{}/{}", m.container_port, m.protocol))
            .or_default()
            .push(json!({
                "HostIp": m.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED).to_string(),
                "HostPort": m.host_port.to_string(),
            }));
    }
    let first = st.attachments.first();
    json!({
        "SandboxKey": st.netns.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
        "IPAddress": first.and_then(|a| a.ip).map(|i| i.to_string()).unwrap_or_default(),
        "IPPrefixLen": first.map(|a| a.prefix).unwrap_or(0),
        "Gateway": first.and_then(|a| a.gateway).map(|g| g.to_string()).unwrap_or_default(),
        "MacAddress": first.map(|a| a.mac.clone()).unwrap_or_default(),
        "Networks": networks,
        "Ports": ports,
    })
}

/// The zero time docker shows for a time that never was.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// docker's inspect document of `c` in state `st`.
pub fn document(c: &Container, st: &State, net: &NetState, p: &Paths) -> Value {
    let cfg = &c.config;
    let argv = &c.record.command;
    let bundle: &Path = &p.bundle;
    json!({
        "Id": c.id(),
        "Created": c.record.created,
        "Path": argv.first().cloned().unwrap_or_default(),
        "Args": argv.iter().skip(1).collect::<Vec<_>>(),
        "State": {
            "Status": st.status.to_string(),
            "Running": matches!(st.status, Status::Running | Status::Paused),
            "Paused": st.status == Status::Paused,
            "Restarting": st.status == Status::Restarting,
            "OOMKilled": st.oom_killed,
            "Dead": false,
            "Pid": st.pid,
            "ExitCode": st.exit_code,
            "Error": st.error,
            "StartedAt": st.started_at.clone().unwrap_or_else(|| ZERO_TIME.into()),
            "FinishedAt": st.finished_at.clone().unwrap_or_else(|| ZERO_TIME.into()),
        },
        "Image": c.record.image_id,
        "ImageName": c.record.image,
        "Namespace": c.record.namespace,
        "ResolvConfPath": bundle.join("resolv.conf"),
        "HostnamePath": bundle.join("hostname"),
        "HostsPath": bundle.join("hosts"),
        "LogPath": if cfg.log_driver == "none" { Value::String(String::new()) } else { json!(p.log) },
        "Name": format!("/{}", c.name()),
        "RestartCount": st.restart_count,
        "Driver": "overlay",
        "Platform": "linux",
        "HostConfig": {
            "RestartPolicy": {"Name": cfg.restart.name, "MaximumRetryCount": cfg.restart.max_retries},
            "AutoRemove": cfg.auto_remove,
            "LogConfig": {"Type": cfg.log_driver, "Config": {
                "max-size": cfg.log_max_size.map(|s| s.to_string()),
                "max-file": cfg.log_max_file.to_string(),
            }},
            "NetworkMode": cfg.network,
            "Runtime": if cfg.runtime.as_os_str().is_empty() { &p.runtime } else { &cfg.runtime },
            "Init": cfg.init,
            "CgroupParent": cfg.cgroups_path,
            "Host": cfg.host,
        },
        "NetworkSettings": network_settings(net),
        "GraphDriver": {"Name": "overlay", "Data": {"MergedDir": bundle.join("rootfs")}},
        "Mounts": cfg.host.get("mounts").cloned().unwrap_or_else(|| json!([])),
        "Config": {
            "Hostname": if cfg.hostname.is_empty() { c.id().chars().take(12).collect() } else { cfg.hostname.clone() },
            "User": cfg.user,
            "Tty": cfg.tty,
            "OpenStdin": cfg.open_stdin,
            "Env": cfg.env,
            "Cmd": cfg.cmd,
            "Entrypoint": cfg.entrypoint,
            "Image": c.record.image,
            "WorkingDir": cfg.working_dir,
            "Labels": cfg.labels,
            "StopSignal": cfg.stop_signal,
            "StopTimeout": cfg.stop_timeout,
        },
        "BundlePath": bundle,
        "StateDir": p.dir,
    })
}

impl Engine {
    /// docker's inspect document of `c`, now.
    pub fn inspect_container(&self, c: &Container) -> Value {
        let st = self.state(c);
        let net = self.net_state(c.id());
        let p = Paths {
            dir: self.dir(c.id()),
            bundle: self.bundle_dir(c.id()),
            log: self.log_path(c.id()),
            runtime: self.options().runtime.clone(),
        };
        document(c, &st, &net, &p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::ContainerConfig;
    use crate::network::Attachment;
    use crate::records::ContainerRecord;

    #[test]
    fn the_document_has_dockers_shape() {
        let config = ContainerConfig {
            log_driver: "json-file".into(),
            log_max_file: 2,
            stop_timeout: 10,
            stop_signal: "SIGTERM".into(),
            labels: [("a".to_string(), "b".to_string())].into(),
            ..ContainerConfig::default()
        };
        let c = Container {
            record: ContainerRecord {
                id: "f".repeat(64),
                name: "web".into(),
                namespace: "k8s.io".into(),
                image: "busybox".into(),
                image_id: "sha256:abc".into(),
                created: "2026-01-01T00:00:00Z".into(),
                command: vec!["sh".into(), "-c".into(), "true".into()],
                config: serde_json::to_value(&config).unwrap(),
            },
            config,
        };
        let st = State {
            status: Status::Paused,
            pid: 42,
            exit_code: 0,
            oom_killed: false,
            started_at: Some("2026-01-01T00:00:01Z".into()),
            finished_at: None,
            restart_count: 1,
            error: String::new(),
        };
        let net = NetState {
            netns: Some("/run/berth/netns/x".into()),
            attachments: vec![Attachment {
                network: "berth".into(),
                ifname: "eth0".into(),
                backend: "fast".into(),
                ip: Some(Ipv4Addr::new(10, 90, 0, 2)),
                prefix: 16,
                gateway: Some(Ipv4Addr::new(10, 90, 0, 1)),
                mac: "02:00:00:00:00:01".into(),
                nameservers: vec![],
                search: vec![],
            }],
            ..NetState::default()
        };
        let p = Paths {
            dir: "/r/containers/f".into(),
            bundle: "/r/containers/f/bundle".into(),
            log: "/r/containers/f/ctr.log".into(),
            runtime: "/usr/bin/berth-runtime".into(),
        };
        let d = document(&c, &st, &net, &p);
        assert_eq!(d["Path"], "sh");
        assert_eq!(d["Args"], json!(["-c", "true"]));
        assert_eq!(d["Name"], "/web");
        assert_eq!(d["Namespace"], "k8s.io");
        assert_eq!(d["State"]["Status"], "paused");
        assert_eq!(d["State"]["Running"], true);
        assert_eq!(d["State"]["Paused"], true);
        assert_eq!(d["State"]["Pid"], 42);
        assert_eq!(d["State"]["FinishedAt"], ZERO_TIME);
        assert_eq!(d["RestartCount"], 1);
        assert_eq!(d["LogPath"], "/r/containers/f/ctr.log");
        assert_eq!(d["HostConfig"]["Runtime"], "/usr/bin/berth-runtime");
        assert_eq!(d["HostConfig"]["LogConfig"]["Config"]["max-file"], "2");
        assert_eq!(d["Config"]["Hostname"], "ffffffffffff");
        assert_eq!(d["Config"]["Labels"]["a"], "b");
        assert_eq!(d["Mounts"], json!([]));
        let ns = &d["NetworkSettings"];
        assert_eq!(ns["SandboxKey"], "/run/berth/netns/x");
        assert_eq!(ns["IPAddress"], "10.90.0.2");
        assert_eq!(ns["Networks"]["berth"]["Gateway"], "10.90.0.1");
        assert_eq!(ns["Networks"]["berth"]["InterfaceName"], "eth0");
    }
}
