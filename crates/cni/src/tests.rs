//! Executor tests against small shell-script plugins in a temp dir. Each
//! plugin records its stdin and environment per command and appends
//! "NAME COMMAND" to a shared log, so tests can check order and contents.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use serde_json::{json, Value};

use super::*;

struct Fixture {
    _dir: tempfile::TempDir,
    plugins: PathBuf,
    extra: PathBuf,
    rec: PathBuf,
    cni: Cni,
}

/// What a plugin does beyond recording.
const OK: &str = r#"case "$CNI_COMMAND" in
ADD) printf '{"cniVersion":"1.0.0","interfaces":[{"name":"if-%s"}],"ips":[{"address":"10.1.0.%s/24","gateway":"10.1.0.1","interface":0}]}' "$NAME" "$NUM" ;;
VERSION) printf '{"cniVersion":"1.1.0","supportedVersions":["0.4.0","1.0.0","1.1.0"]}' ;;
esac
exit 0"#;

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let plugins = dir.path().join("plugins");
        let extra = dir.path().join("extra");
        let rec = dir.path().join("rec");
        for d in [&plugins, &extra, &rec] {
            fs::create_dir(d).unwrap();
        }
        let cni = Cni::new(
            vec![extra.clone(), plugins.clone()],
            dir.path().join("cache"),
        );
        Fixture {
            _dir: dir,
            plugins,
            extra,
            rec,
            cni,
        }
    }

    fn plugin(&self, name: &str, num: u32, body: &str) {
        let script = format!(
            "#!/bin/sh\nNAME={name}\nNUM={num}\nREC={rec}\ncat > \"$REC/$NAME.$CNI_COMMAND.stdin\"\n\
             env > \"$REC/$NAME.$CNI_COMMAND.env\"\necho \"$NAME $CNI_COMMAND\" >> \"$REC/log\"\n{body}\n",
            rec = self.rec.display()
        );
        let path = self.plugins.join(name);
        fs::write(&path, script).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn log(&self) -> Vec<String> {
        fs::read_to_string(self.rec.join("log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn stdin(&self, name: &str, cmd: &str) -> Value {
        let p = self.rec.join(format!("{name}.{cmd}.stdin"));
        serde_json::from_slice(&fs::read(&p).unwrap()).unwrap()
    }

    fn env(&self, name: &str, cmd: &str) -> Vec<(String, String)> {
        let p = self.rec.join(format!("{name}.{cmd}.env"));
        fs::read_to_string(p)
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            // Variables the shell itself sets.
            .filter(|(k, _)| !matches!(k.as_str(), "PWD" | "SHLVL" | "_" | "OLDPWD"))
            .collect()
    }

    fn cache_entries(&self) -> usize {
        self.cni.cached_attachments().unwrap().len()
    }
}

fn list(version: &str, plugins: Value) -> NetworkConfigList {
    let v = json!({"cniVersion": version, "name": "testnet", "plugins": plugins});
    NetworkConfigList::parse(&serde_json::to_vec(&v).unwrap()).unwrap()
}

fn rt(id: &str) -> RuntimeConf {
    RuntimeConf {
        container_id: id.into(),
        netns: "/run/netns/test".into(),
        ifname: "eth0".into(),
        args: vec![("K".into(), "V".into()), ("K2".into(), "V2".into())],
        capability_args:
            json!({"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}],
                                "bandwidth": {"ingressRate": 1}})
            .as_object()
            .unwrap()
            .clone(),
    }
}

#[test]
fn plugin_config_filters_capabilities() {
    let net = list(
        "1.0.0",
        json!([{"type": "x", "capabilities": {"portMappings": true, "ips": true, "bandwidth": false}}]),
    );
    let prev = json!({"cniVersion": "1.0.0"});
    let conf = plugin_config(&net, &net.plugins[0], Some(&prev), &rt("c").capability_args);
    assert_eq!(conf["name"], "testnet");
    assert_eq!(conf["cniVersion"], "1.0.0");
    assert_eq!(conf["prevResult"], prev);
    // Declared and given: portMappings. Declared off: bandwidth. Not given: ips.
    let rc = conf["runtimeConfig"].as_object().unwrap();
    assert_eq!(rc.keys().collect::<Vec<_>>(), vec!["portMappings"]);
    let conf = plugin_config(&net, &net.plugins[0], None, &Map::new());
    assert!(conf.get("runtimeConfig").is_none() && conf.get("prevResult").is_none());
}

#[test]
fn add_chains_and_caches_then_del_reverses() {
    let f = Fixture::new();
    f.plugin("a", 2, OK);
    f.plugin("b", 3, OK);
    let net = list(
        "1.0.0",
        json!([{"type": "a", "k": 1}, {"type": "b", "capabilities": {"portMappings": true}}]),
    );
    let r = f.cni.add(&net, &rt("c1")).unwrap();
    assert_eq!(r.ips[0].address, "10.1.0.3/24");
    assert_eq!(r.interfaces[0].name, "if-b");
    assert_eq!(f.log(), vec!["a ADD", "b ADD"]);

    let a_in = f.stdin("a", "ADD");
    assert_eq!(a_in["k"], 1);
    assert_eq!(a_in["name"], "testnet");
    assert!(a_in.get("prevResult").is_none());
    assert!(a_in.get("runtimeConfig").is_none());
    let b_in = f.stdin("b", "ADD");
    assert_eq!(b_in["prevResult"]["ips"][0]["address"], "10.1.0.2/24");
    assert_eq!(b_in["runtimeConfig"]["portMappings"][0]["hostPort"], 8080);
    assert!(b_in["runtimeConfig"].get("bandwidth").is_none());

    let mut env = f.env("a", "ADD");
    env.sort();
    let path = std::env::var("PATH").unwrap();
    let want: Vec<(String, String)> = vec![
        ("CNI_ARGS", "K=V;K2=V2".to_string()),
        ("CNI_COMMAND", "ADD".to_string()),
        ("CNI_CONTAINERID", "c1".to_string()),
        ("CNI_IFNAME", "eth0".to_string()),
        ("CNI_NETNS", "/run/netns/test".to_string()),
        (
            "CNI_PATH",
            format!("{}:{}", f.extra.display(), f.plugins.display()),
        ),
        ("PATH", path),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(env, want);

    let cached = f.cni.cached("testnet", "c1", "eth0").unwrap().unwrap();
    assert_eq!(cached.config, net.bytes);
    assert_eq!(cached.result.as_ref().unwrap(), &r.raw);
    assert_eq!(cached.args, rt("c1").args);

    f.cni.check(&net, &rt("c1")).unwrap();
    assert_eq!(f.stdin("a", "CHECK")["prevResult"], r.raw);

    f.cni.del(&net, &rt("c1")).unwrap();
    assert_eq!(
        f.log(),
        vec!["a ADD", "b ADD", "a CHECK", "b CHECK", "b DEL", "a DEL"]
    );
    assert_eq!(f.stdin("b", "DEL")["prevResult"], r.raw);
    assert_eq!(f.stdin("a", "DEL")["prevResult"], r.raw);
    assert_eq!(
        f.stdin("b", "DEL")["runtimeConfig"]["portMappings"][0]["containerPort"],
        80
    );
    assert!(f.cni.cached("testnet", "c1", "eth0").unwrap().is_none());

    // DEL without a cache entry still runs, without prevResult.
    f.cni.del(&net, &rt("c1")).unwrap();
    assert!(f.stdin("a", "DEL").get("prevResult").is_none());
    // CHECK with nothing cached says so.
    assert!(matches!(
        f.cni.check(&net, &rt("c1")),
        Err(CniError::NotAttached { .. })
    ));
}

#[test]
fn failing_plugin_rolls_back_the_chain() {
    let f = Fixture::new();
    f.plugin("a", 2, OK);
    f.plugin(
        "f",
        0,
        r#"if [ "$CNI_COMMAND" = ADD ]; then
printf '{"cniVersion":"1.0.0","code":11,"msg":"boom","details":"no bridge"}'; exit 1; fi"#,
    );
    f.plugin("c", 4, OK);
    let net = list(
        "1.0.0",
        json!([{"type": "a"}, {"type": "f"}, {"type": "c"}]),
    );
    let err = f.cni.add(&net, &rt("c1")).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"CNI plugin "f" for network "testnet" failed: boom: no bridge (code 11)"#
    );
    assert_eq!(f.log(), vec!["a ADD", "f ADD", "c DEL", "f DEL", "a DEL"]);
    assert_eq!(f.cache_entries(), 0);
}

#[test]
fn non_json_errors_and_bad_results() {
    let f = Fixture::new();
    f.plugin("t", 0, "echo 'something broke' >&2; exit 3");
    let net = list("1.0.0", json!([{"type": "t"}]));
    match f.cni.add(&net, &rt("c1")).unwrap_err() {
        CniError::Plugin {
            plugin,
            msg,
            details,
            ..
        } => {
            assert_eq!(plugin, "t");
            assert_eq!(msg, "something broke");
            assert_eq!(details, "exit status 3");
        }
        other => panic!("{other:?}"),
    }
    f.plugin("g", 0, "[ \"$CNI_COMMAND\" = ADD ] && echo garbage; exit 0");
    let net = list("1.0.0", json!([{"type": "g"}]));
    let err = f.cni.add(&net, &rt("c1")).unwrap_err();
    assert!(
        matches!(err, CniError::BadResult { ref plugin, .. } if plugin == "g"),
        "{err}"
    );
    assert_eq!(f.log().last().unwrap(), "g DEL");
    assert_eq!(f.cache_entries(), 0);
}

#[test]
fn missing_plugin_names_the_dirs() {
    let f = Fixture::new();
    f.plugin("a", 2, OK);
    let net = list("1.0.0", json!([{"type": "a"}, {"type": "nope"}]));
    let err = f.cni.add(&net, &rt("c1")).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, CniError::PluginNotFound { .. }), "{msg}");
    assert!(msg.contains("\"nope\""), "{msg}");
    assert!(msg.contains(&f.extra.display().to_string()), "{msg}");
    assert!(msg.contains(&f.plugins.display().to_string()), "{msg}");
    // a was added, then deleted again.
    assert_eq!(f.log(), vec!["a ADD", "a DEL"]);
    assert!(f.cni.version("nope").is_err());
}

fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

#[test]
fn timeout_kills_the_process_group() {
    let mut f = Fixture::new();
    f.cni.timeout = Duration::from_secs(1);
    let pidfile = f.rec.join("sleeper");
    f.plugin(
        "h",
        0,
        &format!("sleep 1000 & echo $! > {}; wait", pidfile.display()),
    );
    let net = list("1.0.0", json!([{"type": "h"}]));
    let err = f.cni.add(&net, &rt("c1")).unwrap_err();
    assert!(
        matches!(err, CniError::Timeout { ref plugin, secs: 1, .. } if plugin == "h"),
        "{err}"
    );
    assert!(err.to_string().contains("timed out"), "{err}");
    let pid: i32 = fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SIGKILL is delivered asynchronously: give the kernel a moment.
    let mut tries = 0;
    while alive(pid) && tries < 100 {
        std::thread::sleep(Duration::from_millis(50));
        tries += 1;
    }
    assert!(!alive(pid), "the plugin's child {pid} survived the timeout");
}

#[test]
fn check_rules() {
    let f = Fixture::new();
    f.plugin("a", 2, OK);
    let old = list("0.3.1", json!([{"type": "a"}]));
    let err = f.cni.check(&old, &rt("c1")).unwrap_err().to_string();
    assert!(err.contains("does not support CHECK"), "{err}");
    let v = json!({"cniVersion": "1.0.0", "name": "testnet", "disableCheck": true, "plugins": [{"type": "a"}]});
    let off = NetworkConfigList::parse(&serde_json::to_vec(&v).unwrap()).unwrap();
    f.cni.add(&off, &rt("c1")).unwrap();
    f.cni.check(&off, &rt("c1")).unwrap();
    assert_eq!(f.log(), vec!["a ADD"]);
    // A 0.3.1 DEL gets no prevResult (that came with 0.4.0).
    f.cni.del(&old, &rt("c1")).unwrap();
    assert!(f.stdin("a", "DEL").get("prevResult").is_none());
}

#[test]
fn gc_and_status_by_version() {
    let f = Fixture::new();
    f.plugin("a", 2, OK);
    let v10 = list("1.0.0", json!([{"type": "a"}]));
    f.cni.add(&v10, &rt("keep")).unwrap();
    f.cni.add(&v10, &rt("stale")).unwrap();
    let keep = GcAttachment {
        container_id: "keep".into(),
        ifname: "eth0".into(),
    };
    f.cni.gc(&v10, std::slice::from_ref(&keep)).unwrap();
    assert_eq!(f.log(), vec!["a ADD", "a ADD", "a DEL"]);
    assert_eq!(
        f.env("a", "DEL")
            .iter()
            .find(|(k, _)| k == "CNI_CONTAINERID")
            .unwrap()
            .1,
        "stale"
    );
    let left: Vec<_> = f
        .cni
        .cached_attachments()
        .unwrap()
        .into_iter()
        .map(|a| a.container_id)
        .collect();
    assert_eq!(left, vec!["keep"]);
    f.cni.status(&v10).unwrap();
    assert_eq!(f.log().len(), 3, "no STATUS for 1.0.0");

    let v11 = list("1.1.0", json!([{"type": "a"}]));
    f.cni.gc(&v11, std::slice::from_ref(&keep)).unwrap();
    assert_eq!(f.log().last().unwrap(), "a GC");
    let gc_in = f.stdin("a", "GC");
    assert_eq!(
        gc_in["cni.dev/valid-attachments"],
        json!([{"containerID": "keep", "ifname": "eth0"}])
    );
    assert_eq!(gc_in["cniVersion"], "1.1.0");
    f.cni.status(&v11).unwrap();
    assert_eq!(f.log().last().unwrap(), "a STATUS");
    assert_eq!(
        f.env("a", "STATUS")
            .iter()
            .find(|(k, _)| k == "CNI_CONTAINERID")
            .unwrap()
            .1,
        ""
    );

    f.plugin("s", 0, r#"[ "$CNI_COMMAND" = STATUS ] && { printf '{"code":50,"msg":"not ready"}'; exit 1; }; exit 0"#);
    let bad = list("1.1.0", json!([{"type": "a"}, {"type": "s"}]));
    let err = f.cni.status(&bad).unwrap_err().to_string();
    assert!(
        err.contains("\"s\"") && err.contains("not ready") && err.contains("code 50"),
        "{err}"
    );

    let v = json!({"cniVersion": "1.1.0", "name": "testnet", "disableGC": true, "plugins": [{"type": "a"}]});
    let off = NetworkConfigList::parse(&serde_json::to_vec(&v).unwrap()).unwrap();
    let before = f.log().len();
    f.cni.gc(&off, &[]).unwrap();
    assert_eq!(f.log().len(), before);
    assert_eq!(f.cache_entries(), 1);
}

#[test]
fn version_query() {
    let f = Fixture::new();
    f.plugin("a", 2, OK);
    let v = f.cni.version("a").unwrap();
    assert_eq!(v.supported_versions, vec!["0.4.0", "1.0.0", "1.1.0"]);
    assert_eq!(f.stdin("a", "VERSION"), json!({"cniVersion": "1.1.0"}));
    f.plugin("b", 0, "echo nonsense");
    assert!(matches!(
        f.cni.version("b"),
        Err(CniError::BadResult { .. })
    ));
}

#[test]
fn del_cached_needs_only_the_cache() {
    let f = Fixture::new();
    f.plugin("a", 2, OK);
    f.plugin("b", 3, OK);
    let net = list(
        "1.0.0",
        json!([{"type": "a"}, {"type": "b", "capabilities": {"bandwidth": true}}]),
    );
    let r = f.cni.add(&net, &rt("c9")).unwrap();
    let fresh = Cni::new(f.cni.plugin_dirs.clone(), f.cni.cache_dir.clone());
    fresh.del_cached("testnet", "c9", "eth0").unwrap();
    assert_eq!(f.log(), vec!["a ADD", "b ADD", "b DEL", "a DEL"]);
    let env = f.env("a", "DEL");
    let get = |k: &str| env.iter().find(|(n, _)| n == k).unwrap().1.clone();
    assert_eq!(get("CNI_ARGS"), "K=V;K2=V2");
    assert_eq!(get("CNI_NETNS"), "/run/netns/test");
    assert_eq!(
        f.stdin("b", "DEL")["runtimeConfig"]["bandwidth"]["ingressRate"],
        1
    );
    assert_eq!(f.stdin("b", "DEL")["prevResult"], r.raw);
    assert_eq!(f.cache_entries(), 0);
    // Nothing cached: nothing to do.
    fresh.del_cached("testnet", "c9", "eth0").unwrap();
    assert_eq!(f.log().len(), 4);
}

#[test]
fn failed_del_keeps_the_cache() {
    let f = Fixture::new();
    f.plugin("a", 2, OK);
    let net = list("1.0.0", json!([{"type": "a"}]));
    f.cni.add(&net, &rt("c1")).unwrap();
    f.plugin(
        "a",
        2,
        r#"[ "$CNI_COMMAND" = DEL ] && { echo '{"code":7,"msg":"busy"}'; exit 1; }; exit 0"#,
    );
    let err = f.cni.del(&net, &rt("c1")).unwrap_err().to_string();
    assert!(err.contains("busy"), "{err}");
    assert_eq!(f.cache_entries(), 1);
}

#[test]
fn bad_runtime_conf_is_refused_before_running_anything() {
    let f = Fixture::new();
    f.plugin("a", 2, OK);
    let net = list("1.0.0", json!([{"type": "a"}]));
    let mut r = rt("c1");
    r.ifname = "a/b".into();
    assert!(f
        .cni
        .add(&net, &r)
        .unwrap_err()
        .to_string()
        .contains("interface name"));
    let mut r = rt("../x");
    r.ifname = "eth0".into();
    assert!(f
        .cni
        .add(&net, &r)
        .unwrap_err()
        .to_string()
        .contains("container ID"));
    assert!(f.log().is_empty());
}

#[test]
fn cached_result_is_handed_back_in_the_lists_version() {
    let f = Fixture::new();
    // A plugin that answers in 0.4.0 although the list says 1.0.0.
    f.plugin(
        "old",
        0,
        r#"[ "$CNI_COMMAND" = ADD ] && printf '{"cniVersion":"0.4.0","ips":[{"version":"4","address":"10.1.0.9/24"}]}'; exit 0"#,
    );
    let net = list("1.0.0", json!([{"type": "old"}]));
    let r = f.cni.add(&net, &rt("c1")).unwrap();
    assert_eq!(r.cni_version, "0.4.0");
    assert_eq!(r.ips[0].address, "10.1.0.9/24");
    f.cni.del(&net, &rt("c1")).unwrap();
    let prev = &f.stdin("old", "DEL")["prevResult"];
    assert_eq!(prev["cniVersion"], "1.0.0");
    assert_eq!(prev["ips"], json!([{"address": "10.1.0.9/24"}]));
}

#[test]
fn cni_args_values_cannot_break_the_format() {
    let f = Fixture::new();
    f.plugin("a", 2, OK);
    let net = list("1.0.0", json!([{"type": "a"}]));
    let mut r = rt("c1");
    r.args.push(("X".into(), "a;b".into()));
    let err = f.cni.add(&net, &r).unwrap_err().to_string();
    assert!(err.contains("CNI_ARGS"), "{err}");
    assert!(f.log().is_empty());
}

#[test]
fn plugins_get_only_stdio() {
    use std::os::fd::AsRawFd;
    let f = Fixture::new();
    // An fd opened without O_CLOEXEC, as foreign code might.
    let leaky = rustix::fs::open(
        f.rec.as_path(),
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY,
        rustix::fs::Mode::empty(),
    )
    .unwrap();
    let n = leaky.as_raw_fd();
    assert!(!rustix::io::fcntl_getfd(&leaky)
        .unwrap()
        .contains(rustix::io::FdFlags::CLOEXEC));
    f.plugin(
        "a",
        2,
        &format!("ls /proc/$$/fd > \"$REC/fds\"; [ -e /proc/$$/fd/{n} ] && echo leaked > \"$REC/leak\"\n{OK}"),
    );
    let net = list("1.0.0", json!([{"type": "a"}]));
    f.cni.add(&net, &rt("c1")).unwrap();
    let fds = fs::read_to_string(f.rec.join("fds")).unwrap();
    assert!(fds.lines().any(|l| l == "0"), "{fds}");
    assert!(
        !f.rec.join("leak").exists(),
        "fd {n} reached the plugin: {fds}"
    );
    drop(leaky);
}
