//! Store namespaces end to end through the `berth` binary: containers and
//! volumes are each namespace's own (the same name in two of them, ps,
//! inspect, rm, volumes scoped), images are shared, a bad namespace is a
//! usage error, and a store laid out as berth wrote it before namespaces
//! (container records without a namespace, bare name keys) is
//! namespace `default`.

use std::process::Command;

use berth_tests::cli::Env;
use berth_tests::need_root;
use serde_json::Value;

const NS: &str = "k8s.io";

/// Removes what the test made in namespace `NS` (Env's own guard cleans
/// only `default`).
struct NsGuard<'a>(&'a Env);

impl Drop for NsGuard<'_> {
    fn drop(&mut self) {
        let ids = self
            .0
            .out(&["--namespace", NS, "ps", "-aq", "--no-trunc"])
            .stdout;
        let ids = String::from_utf8_lossy(&ids).into_owned();
        let mut args = vec!["--namespace", NS, "rm", "-f", "-v"];
        args.extend(ids.lines());
        if args.len() > 5 {
            let _ = self.0.out(&args);
        }
        let _ = self
            .0
            .out(&["--namespace", NS, "volume", "prune", "-f", "-a"]);
    }
}

fn names(env: &Env, ns: &str) -> Vec<String> {
    let mut v: Vec<String> = env
        .ok(&["--namespace", ns, "ps", "-a", "--format", "{{.Names}}"])
        .lines()
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

#[test]
fn namespaces_keep_containers_and_volumes_apart_and_share_images() {
    if !need_root("namespaces_keep_containers_and_volumes_apart_and_share_images") {
        return;
    }
    let env = Env::new("ns");
    let _guard = NsGuard(&env);
    let img = env.image.as_str();

    // A container made before namespaces existed is `default`'s: its
    // record carries no namespace and its name key is bare, as berth
    // wrote them then (the unit tests check the bytes; here the binary).
    let old = env
        .ok(&["create", "--name", "web", img, "sleep", "600"])
        .trim()
        .to_string();
    let meta = berth_image::meta::MetaDb::open(&env.root.path().join("meta.redb")).unwrap();
    const CONTAINERS: berth_image::meta::RecordTable =
        berth_image::meta::RecordTable::new("containers");
    const NAMES: berth_image::meta::RecordTable =
        berth_image::meta::RecordTable::new("container_names");
    let raw: Value = meta.get_record(&CONTAINERS, &old).unwrap().unwrap();
    assert!(raw.get("namespace").is_none(), "{raw}");
    assert_eq!(
        meta.get_record::<String>(&NAMES, "web").unwrap().as_deref(),
        Some(old.as_str())
    );
    drop(meta);

    // The same name in k8s.io is another container; the image is not
    // pulled again (shared).
    let (code, _, err) = env.run(&[
        "--namespace",
        NS,
        "run",
        "-d",
        "--name",
        "web",
        img,
        "sleep",
        "600",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("pulling"), "pulled again: {err}");
    let k8s = env
        .ok(&["--namespace", NS, "inspect", "--format", "{{.Id}}", "web"])
        .trim()
        .to_string();
    assert_ne!(k8s, old);
    assert_eq!(names(&env, "default"), ["web"]);
    assert_eq!(names(&env, NS), ["web"]);
    // BERTH_NAMESPACE is the flag's default.
    let out = env
        .cmd()
        .env("BERTH_NAMESPACE", NS)
        .args(["ps", "-q", "--no-trunc"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), k8s);
    // A plain ps shows no k8s.io container, running or not.
    assert!(env.ok(&["ps", "-q"]).trim().is_empty());
    assert_eq!(env.ids(), std::slice::from_ref(&old));

    // inspect, by name, ID or prefix, finds only its namespace's.
    assert_eq!(env.inspect("web")["Id"], old.as_str());
    assert_eq!(env.inspect("web")["Namespace"], "default");
    env.fails(&["inspect", "--type", "container", &k8s], 125);
    env.fails(&["inspect", "--type", "container", &k8s[..12]], 125);
    env.fails(
        &["--namespace", NS, "inspect", "--type", "container", &old],
        125,
    );
    let doc: Value = serde_json::from_str(&env.ok(&["--namespace", NS, "inspect", "web"])).unwrap();
    assert_eq!(doc[0]["Namespace"], NS);
    assert_eq!(doc[0]["State"]["Status"], "running");

    // Images are shared: both namespaces list the same one, and rmi of
    // it is refused while the k8s.io container uses it.
    let images = env.ok(&["images", "-q"]);
    assert_eq!(env.ok(&["--namespace", NS, "images", "-q"]), images);

    // Volumes: the same name in each namespace is two volumes.
    env.ok(&["volume", "create", "data"]);
    env.ok(&["--namespace", NS, "volume", "create", "data"]);
    let mp = |ns: &str| {
        let v: Value =
            serde_json::from_str(&env.ok(&["--namespace", ns, "volume", "inspect", "data"]))
                .unwrap();
        v[0]["Mountpoint"].as_str().unwrap().to_string()
    };
    assert_ne!(mp("default"), mp(NS));
    assert!(mp(NS).contains("/namespaces/k8s.io/volumes/"), "{}", mp(NS));
    env.ok(&["volume", "rm", "data"]);
    assert!(env
        .ok(&["--namespace", NS, "volume", "ls", "-q"])
        .contains("data"));

    // rm (and stop, logs, ...) reach only their namespace's container:
    // `rm -f web` in default leaves k8s.io's running.
    env.fails(&["rm", &k8s], 1);
    env.fails(&["stop", "web-nope", &k8s], 125);
    env.ok(&["rm", "-f", "web"]);
    assert!(env.ids().is_empty());
    assert_eq!(names(&env, NS), ["web"]);
    assert_eq!(
        env.ok(&[
            "--namespace",
            NS,
            "inspect",
            "--format",
            "{{.State.Status}}",
            "web"
        ])
        .trim(),
        "running"
    );
    env.ok(&["--namespace", NS, "rm", "-f", "web"]);
    assert!(names(&env, NS).is_empty());
    env.ok(&["--namespace", NS, "volume", "rm", "data"]);
    env.assert_clean(&[old, k8s]);
}

#[test]
fn a_bad_namespace_is_a_usage_error() {
    let bin = berth_tests::cli::berth_bin();
    for bad in ["a/b", "../x", "-", "a..b", "ns with space"] {
        let o = Command::new(&bin)
            .args(["--namespace", bad, "ps"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        // clap's usage errors exit 2, as every other bad flag does.
        assert_eq!(o.status.code(), Some(2), "{bad}: {err}");
        assert!(err.contains("invalid namespace"), "{bad}: {err}");
    }
}
