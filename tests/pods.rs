//! Root integration tests of the engine's pods (`berth_engine::pod`): a
//! sandbox held by `berth-pause` on the test's own CNI network (its own
//! bridge and /24, `common::net`), containers that share its namespaces,
//! and what is left after stop, remove and failures: no pin, veth, CNI
//! cache entry, host-local reservation, cgroup, monitor or record.
//!
//! Traffic goes only to loopback and to the pod on the test's bridge.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_engine::container::{Container, Engine, EngineOptions};
use berth_engine::network::{Backend, NetworkOptions};
use berth_engine::pod::{
    DnsConfig, NamespaceMode, PodContainerConfig, PodError, PodFilter, PodOptions, PodPortMapping,
    PodSandboxConfig, PodState, Pods, POD_LABEL,
};
use berth_image::store::{ImageStore, StoreOptions};
use berth_tests::cli::Env;
use berth_tests::net::TestNet;
use berth_tests::*;

/// One test's engine over a `berth` test environment (store, run dir,
/// registry with busybox, CNI config dir with its own bridge network).
/// Dropping it removes every pod, then the cgroup parents it used.
struct PodEnv {
    engine: Engine,
    cni_dir: PathBuf,
    cgroup_parents: Vec<String>,
    env: Env,
}

impl PodEnv {
    fn new(test: &str) -> PodEnv {
        let env = Env::new(test);
        env.ok(&["pull", "-q", &env.image]);
        let store = ImageStore::open(StoreOptions::new(env.root.path())).expect("open store");
        let engine = Engine::new(
            store,
            EngineOptions {
                root: env.root.path().to_path_buf(),
                run_dir: env.run_dir.clone(),
                runtime: runtime_bin(),
                monitor: built_bin("berth-monitor", "BERTH_MONITOR"),
                network: NetworkOptions {
                    config_dir: env.net.dir.clone(),
                    backend: Backend::Cni,
                    ..NetworkOptions::default()
                },
                // Kubernetes' objects live in their own store namespace.
                namespace: berth_engine::namespace::Namespace::new("k8s.io").expect("k8s.io"),
            },
        );
        PodEnv {
            engine,
            cni_dir: env.net.dir.clone(),
            cgroup_parents: Vec::new(),
            env,
        }
    }

    fn pods(&self) -> Pods<'_> {
        self.pods_in(&self.cni_dir)
    }

    fn pods_in(&self, cni_dir: &Path) -> Pods<'_> {
        Pods::new(
            &self.engine,
            PodOptions {
                cni_conf_dir: cni_dir.to_path_buf(),
                cni_plugin_dirs: NetworkOptions::default().plugin_dirs,
                pause: built_bin("berth-pause", "BERTH_PAUSE"),
            },
        )
    }

    /// A pod config with unique names and a cgroup parent of this test's.
    fn config(&mut self, name: &str) -> PodSandboxConfig {
        let u = unique(name);
        let parent = format!("/berth-test-{u}");
        self.cgroup_parents.push(parent.clone());
        PodSandboxConfig {
            name: u.clone(),
            uid: format!("uid-{u}"),
            namespace: "default".into(),
            hostname: format!("h-{}", u.replace('_', "-")),
            cgroup_parent: format!("{parent}/pod-{u}"),
            ..Default::default()
        }
    }

    fn container(&self, pod: &str, name: &str, script: &str, pid: NamespaceMode) -> Container {
        let c = self
            .pods()
            .create_container(
                pod,
                PodContainerConfig {
                    name: name.into(),
                    image: self.env.image.clone(),
                    command: vec!["sh".into(), "-c".into(), script.into()],
                    pid,
                    ..Default::default()
                },
            )
            .expect("create the pod's container");
        self.engine.start(&c, false, &[]).expect("start it");
        c
    }

    /// Waits for `c` to exit; returns its exit code and stdout.
    fn finish(&self, c: &Container) -> (i32, String) {
        let st = self.engine.wait_stopped(c, Some(Duration::from_secs(60)));
        let log = fs::read_to_string(self.engine.log_path(c.id())).unwrap_or_default();
        let out: String = log
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["stream"] == "stdout")
            .filter_map(|v| v["log"].as_str().map(str::to_string))
            .collect();
        (st.exit_code, out)
    }

    /// Asserts that nothing of pod `id` is left, nor of the containers
    /// `ids`: no pod record, container record, directory, mount, process,
    /// pin, veth, CNI cache entry, host-local reservation or cgroup.
    fn assert_gone(&self, id: &str, ids: &[String]) {
        let records: Vec<_> = fs::read_dir(self.env.root.path().join("pods"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n != "lock")
                    .collect()
            })
            .unwrap_or_default();
        assert!(records.is_empty(), "pod records left: {records:?}");
        assert!(self.pods().list(&PodFilter::default()).is_empty());
        let left: Vec<_> = self
            .engine
            .list()
            .unwrap()
            .into_iter()
            .filter(|c| c.config.labels.get(POD_LABEL).map(String::as_str) == Some(id))
            .map(|c| c.record.name)
            .collect();
        assert!(left.is_empty(), "containers of the pod left: {left:?}");
        self.env.assert_clean(ids);
        for parent in &self.cgroup_parents {
            for e in fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
                let d = e.path().join(parent.trim_start_matches('/'));
                assert!(!d.exists(), "cgroup {} left", d.display());
            }
        }
    }
}

impl Drop for PodEnv {
    fn drop(&mut self) {
        let pods = self.pods();
        for p in pods.list(&PodFilter::default()) {
            if let Err(e) = pods.remove(&p.id) {
                eprintln!("cleanup: removing pod {}: {e}", p.id);
            }
        }
        for parent in &self.cgroup_parents {
            for e in fs::read_dir("/sys/fs/cgroup")
                .into_iter()
                .flatten()
                .flatten()
            {
                let d = e.path().join(parent.trim_start_matches('/'));
                if let Ok(rd) = fs::read_dir(&d) {
                    for sub in rd.flatten().filter(|s| s.path().is_dir()) {
                        let _ = fs::remove_dir(sub.path());
                    }
                }
                let _ = fs::remove_dir(&d);
            }
        }
    }
}

/// Whether something listens on TCP `port` in the network namespace of
/// process `pid`.
fn listening(pid: i32, port: u16) -> bool {
    // busybox's nc listens on the IPv6 wildcard where it can.
    let tcp = fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap_or_default()
        + &fs::read_to_string(format!("/proc/{pid}/net/tcp6")).unwrap_or_default();
    let want = format!(":{port:04X} ");
    tcp.lines().skip(1).any(|l| {
        l.split_whitespace()
            .nth(1)
            .is_some_and(|a| format!("{a} ").ends_with(&want))
            && l.split_whitespace().nth(3) == Some("0A")
    })
}

/// Reads what the server at `addr` sends, until it closes.
fn fetch(addr: &str) -> String {
    let mut s = TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out)
        .unwrap_or_else(|e| panic!("read from {addr}: {e}"));
    out
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Two containers of one pod share localhost, IPC (a POSIX message queue
/// made in one is seen in the other), the hostname, the DNS config and
/// the PID namespace (PID 1 is the pause); the pod's IP is in its status
/// and reachable from the host, and its port mapping from 127.0.0.1. Stop
/// and remove are idempotent and leave nothing.
#[test]
fn a_pod_shares_its_namespaces_and_network() {
    if !need_root("a_pod_shares_its_namespaces_and_network") {
        return;
    }
    let mut t = PodEnv::new("pod-share");
    for runtime in runtimes() {
        share_case(&mut t, runtime);
    }
}

/// The runtimes the pods run on, as a runtime handler gives them: the
/// engine's default (berth-runtime, or `BERTH_RUNTIME`), and runc.
fn runtimes() -> Vec<Option<PathBuf>> {
    let mut v = vec![None];
    let runc = PathBuf::from("/usr/sbin/runc");
    if runc.exists() {
        v.push(Some(runc));
    }
    v
}

fn share_case(t: &mut PodEnv, runtime: Option<PathBuf>) {
    let host_port = free_port();
    let mut cfg = t.config("share");
    cfg.runtime_handler = if runtime.is_some() {
        "runc".into()
    } else {
        String::new()
    };
    cfg.runtime = runtime.clone();
    cfg.namespaces.pid = NamespaceMode::Pod;
    cfg.dns = Some(DnsConfig {
        servers: vec!["10.0.0.53".into()],
        searches: vec!["pods.test".into()],
        options: vec!["ndots:5".into()],
    });
    cfg.port_mappings = vec![PodPortMapping {
        protocol: "tcp".into(),
        container_port: 8080,
        host_port,
        host_ip: None,
    }];
    cfg.labels = BTreeMap::from([("app".to_string(), "share".to_string())]);
    cfg.sysctls = BTreeMap::from([(
        "net.ipv4.ip_local_port_range".to_string(),
        "20000 30000".to_string(),
    )]);
    let hostname = cfg.hostname.clone();
    let pods = t.pods();
    let id = pods.run(cfg.clone()).expect("run the pod");
    // The same name again is refused, and nothing of it is made.
    match pods.run(cfg.clone()) {
        Err(PodError::AlreadyExists { id: other, .. }) => assert_eq!(other, id),
        r => panic!("a second pod of the same name: {r:?}"),
    }
    let st = pods.status(&id).unwrap();
    assert_eq!(st.state, PodState::Ready);
    assert_eq!(st.runtime, runtime.clone().unwrap_or_else(runtime_bin));
    let prefix = t.env.net.subnet.trim_end_matches("0/24");
    assert!(
        st.ip.starts_with(prefix),
        "pod IP {:?} not in {}",
        st.ip,
        t.env.net.subnet
    );
    let pin = st.netns.clone().expect("a pinned netns");
    assert!(berth_engine::netns::is_pinned(&pin));
    // The sandbox runs in the pinned namespace.
    assert_eq!(
        nix::sys::stat::stat(format!("/proc/{}/ns/net", st.pid).as_str())
            .unwrap()
            .st_ino,
        nix::sys::stat::stat(&pin).unwrap().st_ino
    );
    let cmd1 = fs::read_to_string(format!("/proc/{}/cmdline", st.pid)).unwrap();
    assert_eq!(cmd1.trim_end_matches('\0'), "/berth-pause");
    // The CNI_ARGS kubelet's runtimes pass, as the CNI cache keeps them.
    let cached = t.env.root.path().join("cni/results");
    let entry = fs::read_dir(&cached)
        .unwrap()
        .flatten()
        .find(|e| {
            e.file_name()
                .to_string_lossy()
                .ends_with(&format!("{id}-eth0"))
        })
        .expect("the pod's CNI cache entry");
    let entry: serde_json::Value =
        serde_json::from_slice(&fs::read(entry.path()).unwrap()).unwrap();
    let args = entry["cniArgs"].to_string();
    assert_eq!(
        entry["capabilityArgs"]["portMappings"][0]["hostPort"],
        serde_json::json!(host_port)
    );
    for (k, v) in [
        ("IgnoreUnknown", "1"),
        ("K8S_POD_NAMESPACE", "default"),
        ("K8S_POD_NAME", cfg.name.as_str()),
        ("K8S_POD_INFRA_CONTAINER_ID", id.as_str()),
        ("K8S_POD_UID", cfg.uid.as_str()),
    ] {
        assert!(
            args.contains(&format!("[\"{k}\",\"{v}\"]")),
            "{k}={v} not in {args}"
        );
    }
    // Filters: by label, state and ID prefix.
    let only = |f: PodFilter| pods.list(&f).into_iter().map(|p| p.id).collect::<Vec<_>>();
    assert_eq!(only(PodFilter::default()), vec![id.clone()]);
    assert_eq!(
        only(PodFilter {
            labels: BTreeMap::from([("app".to_string(), "share".to_string())]),
            state: Some(PodState::Ready),
            id: Some(id[..12].to_string()),
        }),
        vec![id.clone()]
    );
    assert!(only(PodFilter {
        labels: BTreeMap::from([("app".to_string(), "other".to_string())]),
        ..Default::default()
    })
    .is_empty());
    assert!(only(PodFilter {
        state: Some(PodState::NotReady),
        ..Default::default()
    })
    .is_empty());

    let queue = format!("q{}", std::process::id());
    let server = t.container(
        &id,
        "server",
        &format!("touch /dev/mqueue/{queue} && exec nc -ll -p 8080 -e echo pong"),
        NamespaceMode::Pod,
    );
    wait_until("the pod's server to listen", || {
        if !t.engine.state(&server).is_active() {
            let log = fs::read_to_string(t.engine.log_path(server.id())).unwrap_or_default();
            panic!("the server exited: {:?}\n{log}", t.engine.state(&server));
        }
        listening(st.pid, 8080)
    });
    // It runs on the pod's runtime handler's binary.
    assert_eq!(
        t.engine.runtime_of(&server),
        runtime.clone().unwrap_or_else(runtime_bin)
    );
    // Its cgroup is under the pod's cgroup parent.
    let cg = &server.config.cgroups_path;
    assert!(cg.starts_with(&format!("{}/", cfg.cgroup_parent)), "{cg}");
    let client = t.container(
        &id,
        "client",
        "echo \"mq=$(ls /dev/mqueue)\"; echo \"host=$(hostname)\"; \
         echo \"pid1=$(cat /proc/1/cmdline)\"; grep -v '^#' /etc/resolv.conf; \
         echo \"ports=$(cat /proc/sys/net/ipv4/ip_local_port_range | tr '\\t' ' ')\"; \
         echo \"reply=$(nc 127.0.0.1 8080 </dev/null)\"; (true &)",
        NamespaceMode::Pod,
    );
    let (code, out) = t.finish(&client);
    assert_eq!(code, 0, "{out}");
    for want in [
        format!("mq={queue}"),
        format!("host={hostname}"),
        "pid1=/berth-pause".to_string(),
        "search pods.test".to_string(),
        "nameserver 10.0.0.53".to_string(),
        "options ndots:5".to_string(),
        "reply=pong".to_string(),
        "ports=20000 30000".to_string(),
    ] {
        assert!(out.lines().any(|l| l == want), "want {want:?} in:\n{out}");
    }
    // The orphan the client left went to the pause, which reaped it.
    let children = format!("/proc/{0}/task/{0}/children", st.pid);
    wait_until("the pause to reap the orphan", || {
        fs::read_to_string(&children).is_ok_and(|c| c.trim().is_empty())
    });
    // The sandbox runs its own copy of berth-pause, from a read-only root.
    let host_pause = nix::sys::stat::stat(&built_bin("berth-pause", "BERTH_PAUSE")).unwrap();
    let running = nix::sys::stat::stat(format!("/proc/{}/exe", st.pid).as_str()).unwrap();
    assert_ne!(
        (host_pause.st_dev, host_pause.st_ino),
        (running.st_dev, running.st_ino)
    );
    let e = fs::write(format!("/proc/{}/root/x", st.pid), b"x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}");
    // From the host: the pod's IP, and the port mapping on 127.0.0.1.
    assert_eq!(fetch(&format!("{}:8080", st.ip)).trim(), "pong");
    wait_until("the server to listen again", || listening(st.pid, 8080));
    assert_eq!(fetch(&format!("127.0.0.1:{host_port}")).trim(), "pong");

    let mut ids: Vec<String> = pods
        .containers(&id)
        .unwrap()
        .iter()
        .map(|c| c.id().to_string())
        .collect();
    assert_eq!(ids.len(), 3, "server, client and the sandbox");
    let sandbox = t
        .engine
        .get(st.sandbox_container.as_deref().unwrap())
        .unwrap();
    pods.stop(&id, 0).expect("stop");
    // The pause ended on SIGTERM with 0.
    assert_eq!(t.engine.state(&sandbox).exit_code, 0);
    pods.stop(&id, 0).expect("stop again");
    let st2 = pods.status(&id).unwrap();
    assert_eq!(st2.state, PodState::NotReady);
    assert_eq!(st2.ip, "");
    assert!(!pin.exists(), "the pin outlives stop");
    t.env.assert_no_network_left();
    assert!(!t.engine.state(&server).is_active());
    pods.remove(&id).expect("remove");
    pods.remove(&id).expect("remove again");
    assert!(matches!(pods.status(&id), Err(PodError::NotFound(_))));
    ids.push(id.clone());
    t.assert_gone(&id, &ids);
}

/// A pod on the node's network: its containers see the host's network
/// namespace and hostname and get no pod IP; with the PID namespace per
/// container, PID 1 is the container's own process, not the pause.
#[test]
fn a_host_network_pod_without_pid_sharing() {
    if !need_root("a_host_network_pod_without_pid_sharing") {
        return;
    }
    let mut t = PodEnv::new("pod-host");
    for runtime in runtimes() {
        host_case(&mut t, runtime);
    }
}

fn host_case(t: &mut PodEnv, runtime: Option<PathBuf>) {
    let mut cfg = t.config("host");
    cfg.runtime = runtime;
    cfg.hostname = String::new();
    cfg.namespaces.network = NamespaceMode::Node;
    cfg.namespaces.pid = NamespaceMode::Container;
    let pods = t.pods();
    let id = pods.run(cfg).expect("run the pod");
    let st = pods.status(&id).unwrap();
    assert_eq!(st.state, PodState::Ready);
    assert_eq!(st.ip, "");
    assert!(st.netns.is_none());
    let c = t.container(
        &id,
        "probe",
        "echo \"net=$(readlink /proc/self/ns/net)\"; echo \"host=$(hostname)\"; \
         echo \"pid1=$(cat /proc/1/cmdline | tr '\\0' ' ')\"",
        NamespaceMode::Container,
    );
    let (code, out) = t.finish(&c);
    assert_eq!(code, 0, "{out}");
    let host_ns = fs::read_link("/proc/self/ns/net").unwrap();
    let nodename = nix::sys::utsname::uname().unwrap();
    for want in [
        format!("net={}", host_ns.display()),
        format!("host={}", nodename.nodename().to_string_lossy()),
    ] {
        assert!(out.lines().any(|l| l == want), "want {want:?} in:\n{out}");
    }
    let pid1 = out
        .lines()
        .find(|l| l.starts_with("pid1="))
        .unwrap_or_default();
    assert!(pid1.starts_with("pid1=sh -c"), "{out}");
    // A container can join another container's PID namespace.
    let target = t.container(&id, "target", "exec sleep 3600", NamespaceMode::Container);
    let joined = t.container(
        &id,
        "joined",
        "echo \"pid1=$(cat /proc/1/cmdline | tr '\\0' ' ')\"",
        NamespaceMode::Target(target.id().to_string()),
    );
    let (code, out) = t.finish(&joined);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.trim(), "pid1=sleep 3600", "{out}");
    let ids: Vec<String> = pods
        .containers(&id)
        .unwrap()
        .iter()
        .map(|c| c.id().to_string())
        .collect();
    pods.remove(&id).expect("remove");
    t.assert_gone(&id, &ids);
}

/// A missing CNI config, a plugin that fails after the bridge made its
/// veth and host-local its reservation, a bad config and an unknown pod:
/// each is a clear error, and nothing is left.
#[test]
fn bad_input_leaves_nothing() {
    if !need_root("bad_input_leaves_nothing") {
        return;
    }
    let mut t = PodEnv::new("pod-bad");
    // No CNI config at all.
    let empty = t.env.root.path().join("empty.d");
    fs::create_dir(&empty).unwrap();
    let cfg = t.config("nocni");
    let e = t.pods_in(&empty).run(cfg).unwrap_err();
    assert!(matches!(e, PodError::NoCniConfig { .. }), "{e}");
    assert!(e.to_string().contains(&empty.display().to_string()), "{e}");
    t.assert_gone("", &[]);

    // A chain whose last plugin fails: bridge and host-local have run.
    let failing = t.env.root.path().join("failing.d");
    fs::create_dir(&failing).unwrap();
    let list = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "failing",
        "plugins": [
            {"type": "bridge", "bridge": t.env.net.bridge, "isGateway": true,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": t.env.net.subnet(1)}]],
                      "dataDir": t.env.net.dir.join("ipam")}},
            {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.no_such_sysctl_here": "1"}}
        ]
    });
    fs::write(failing.join("10-failing.conflist"), list.to_string()).unwrap();
    let cfg = t.config("failing");
    let e = t.pods_in(&failing).run(cfg).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, PodError::Network { .. }), "{msg}");
    assert!(msg.contains("tuning") && msg.contains("failing"), "{msg}");
    assert!(TestNet::ports_of(&t.env.net.bridge).is_empty());
    t.assert_gone("", &[]);

    // A config refused before anything is made.
    let mut cfg = t.config("invalid");
    cfg.cgroup_parent = "relative/path".into();
    let e = t.pods().run(cfg).unwrap_err();
    assert!(
        matches!(e, PodError::Invalid { .. }) && e.to_string().contains("cgroup_parent"),
        "{e}"
    );

    // An unknown pod.
    let pods = t.pods();
    let unknown = "0123456789abcdef";
    assert!(matches!(pods.status(unknown), Err(PodError::NotFound(_))));
    assert!(matches!(pods.stop(unknown, 0), Err(PodError::NotFound(_))));
    pods.remove(unknown)
        .expect("removing an unknown pod is fine");
    let e = pods
        .create_container(
            unknown,
            PodContainerConfig {
                name: "x".into(),
                image: t.env.image.clone(),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(matches!(e, PodError::NotFound(_)), "{e}");
    t.assert_gone("", &[]);
}

/// `berth system prune`'s sweep of leaked networks (pins and CNI
/// attachments of no container) and CNI GC keep a running pod's: its
/// pin and attachment are named by the pod's ID, not a container's.
#[test]
fn prune_keeps_a_running_pods_network() {
    if !need_root("prune_keeps_a_running_pods_network") {
        return;
    }
    let mut t = PodEnv::new("pod-prune");
    let cfg = t.config("prune");
    let pods = t.pods();
    let id = pods.run(cfg).expect("run the pod");
    let before = pods.status(&id).unwrap();
    let removed = t
        .engine
        .remove_leaked_networks()
        .expect("sweep leaked networks");
    assert!(removed.is_empty(), "the sweep took {removed:?}");
    t.engine.gc_networks().expect("CNI GC");
    let pin = before.netns.clone().unwrap();
    assert!(
        berth_engine::netns::is_pinned(&pin),
        "the pod's pin is gone"
    );
    assert_eq!(
        TestNet::ports_of(&t.env.net.bridge).len(),
        1,
        "the pod's veth is gone"
    );
    assert_eq!(pods.status(&id).unwrap().ip, before.ip);
    let ids: Vec<String> = pods
        .containers(&id)
        .unwrap()
        .iter()
        .map(|c| c.id().to_string())
        .collect();
    pods.remove(&id).expect("remove");
    t.assert_gone(&id, &ids);
}
