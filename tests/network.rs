//! End-to-end tests of berth's networking (issue 6) through the `berth`
//! binary, with Debian's real CNI plugins from /usr/lib/cni. Each test has
//! its own CNI config dir, whose default network `berth` uses a bridge and a
//! subnet of that test alone ([`berth_tests::net::TestNet`]); user networks
//! get unique names and bridges too. Traffic goes only to loopback, to the
//! test's bridges (the host's own addresses on them) and to the test's
//! containers. Every test ends by checking that nothing is left: no pinned
//! namespace, veth, CNI cache entry, host-local reservation or nft rule.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_tests::cli::Env;
use berth_tests::{need_root, unique, wait_until};

/// An unused TCP port of the host.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET / from `addr:port` on the host; the body, or "" when it cannot
/// connect.
fn http_get(addr: &str, port: u16) -> String {
    let Ok(mut s) = TcpStream::connect_timeout(
        &format!("{addr}:{port}").parse().unwrap(),
        Duration::from_secs(3),
    ) else {
        return String::new();
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// Runs a busybox httpd on `port` in a detached container serving `body`.
fn httpd_args<'a>(body: &'a str, port: &'a str) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        format!(
            "mkdir -p /www && echo {body} > /www/index.html && exec httpd -f -p {port} -h /www"
        ),
    ]
}

fn ip_of(env: &Env, c: &str, network: &str) -> String {
    env.inspect(c)["NetworkSettings"]["Networks"][network]["IPAddress"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// `berth` with the default network on `backend`.
fn with_backend(env: &Env, backend: &str, args: &[&str]) -> (i32, String, String) {
    let o = env
        .cmd()
        .env("BERTH_NETWORK_BACKEND", backend)
        .args(args)
        .output()
        .expect("run berth");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn ok_with(env: &Env, backend: &str, args: &[&str]) -> String {
    let (code, out, err) = with_backend(env, backend, args);
    assert_eq!(code, 0, "berth {args:?} ({backend}) failed:\n{out}{err}");
    out
}

/// Names of two user networks and their bridges for this test, removed
/// when `env` drops.
fn two_names(env: &Env, tags: [&str; 2]) -> [(String, String); 2] {
    tags.map(|t| {
        let name = unique(&format!("n{t}"));
        let bridge = format!("bt{t}{:06x}", std::process::id() & 0xff_ffff);
        env.net.clean_later(&bridge, &name);
        (name, bridge)
    })
}

#[test]
fn default_bridge_on_both_paths() {
    if !need_root("default_bridge_on_both_paths") {
        return;
    }
    let env = Env::new("netdef");
    let prefix = env.net.subnet.trim_end_matches(".0/24").to_string();
    let gw = env.net.gateway.clone();
    for backend in ["fast", "cni"] {
        let name = unique(&format!("c-{backend}"));
        ok_with(
            &env,
            backend,
            &["run", "-d", "--name", &name, &env.image, "sleep", "60"],
        );
        let ip = ip_of(&env, &name, "berth");
        assert!(
            ip.starts_with(&format!("{prefix}.")),
            "{backend}: ip {ip:?}"
        );
        let v = env.inspect(&name);
        assert_eq!(v["HostConfig"]["NetworkMode"], "bridge");
        assert_eq!(v["NetworkSettings"]["Gateway"], gw.as_str());
        // The address, lo up, a default route through the host's bridge.
        let addr = env.ok(&["exec", &name, "ip", "-o", "-4", "addr", "show"]);
        assert!(
            addr.contains(&format!("eth0    inet {ip}/24"))
                || addr.contains(&format!("inet {ip}/24")),
            "{backend}: {addr}"
        );
        assert!(addr.contains("lo    inet 127.0.0.1/8"), "{backend}: {addr}");
        let route = env.ok(&["exec", &name, "ip", "route"]);
        assert!(
            route.contains(&format!("default via {gw}")),
            "{backend}: {route}"
        );
        // Container to the host's bridge address.
        env.ok(&["exec", &name, "ping", "-c1", "-W3", &gw]);
        // Its /etc/hosts names it by its address.
        let hosts = env.ok(&["exec", &name, "cat", "/etc/hosts"]);
        assert!(hosts.contains(&format!("{ip}\t")), "{backend}: {hosts}");
        // The veth is on the test's bridge while it runs.
        assert_eq!(
            berth_tests::net::TestNet::ports_of(&env.net.bridge).len(),
            1
        );
        env.ok(&["rm", "-f", &name]);
        env.assert_clean(&[]);
    }
}

#[test]
fn user_networks_resolve_and_isolate() {
    if !need_root("user_networks_resolve_and_isolate") {
        return;
    }
    let env = Env::new("netuser");
    let [(na, ba), (nb, bb)] = two_names(&env, ["a", "b"]);
    for (n, b, i) in [(&na, &ba, 1), (&nb, &bb, 2)] {
        let out = env.ok(&[
            "network",
            "create",
            "--subnet",
            &env.net.subnet(i),
            "--interface-name",
            b,
            n,
        ]);
        assert_eq!(out.trim(), n.as_str());
    }
    // A subnet in use is refused, naming what it overlaps.
    let err = env.fails(
        &[
            "network",
            "create",
            "--subnet",
            &env.net.subnet(1),
            &unique("nc"),
        ],
        125,
    );
    assert!(
        err.contains("overlaps") && err.contains(na.as_str()),
        "{err}"
    );
    let ls = env.ok(&["network", "ls", "-q"]);
    assert!(
        ls.contains(na.as_str()) && ls.contains(nb.as_str()) && ls.contains("berth"),
        "{ls}"
    );

    let (c1, c2, c3) = (unique("c1"), unique("c2"), unique("c3"));
    for (c, n) in [(&c1, &na), (&c2, &na), (&c3, &nb)] {
        env.ok(&[
            "run",
            "-d",
            "--name",
            c,
            "--network",
            n,
            &env.image,
            "sleep",
            "60",
        ]);
    }
    // Same network: by name.
    env.ok(&["exec", &c1, "ping", "-c1", "-W3", &c2]);
    env.ok(&["exec", &c2, "ping", "-c1", "-W3", &c1]);
    // Separate networks: isolated.
    let ip3 = ip_of(&env, &c3, &nb);
    let (code, _, _) = env.run(&["exec", &c1, "ping", "-c1", "-W2", &ip3]);
    assert_ne!(code, 0, "{c1} reached {ip3} on another network");
    // Connected: reachable, by name too, on eth1.
    env.ok(&["network", "connect", &nb, &c1]);
    let v = env.inspect(&c1);
    assert!(v["NetworkSettings"]["Networks"][nb.as_str()]["IPAddress"].is_string());
    env.ok(&["exec", &c1, "ping", "-c1", "-W3", &c3]);
    let links = env.ok(&["exec", &c1, "ip", "-o", "link"]);
    assert!(links.contains("eth1"), "{links}");
    let inspect: serde_json::Value =
        serde_json::from_str(&env.ok(&["network", "inspect", &nb])).unwrap();
    assert_eq!(inspect[0]["Containers"].as_object().unwrap().len(), 2);
    // A network in use cannot be removed.
    let err = env.fails(&["network", "rm", &nb], 125);
    assert!(err.contains("in use"), "{err}");
    env.ok(&["network", "disconnect", &nb, &c1]);
    let (code, _, _) = env.run(&["exec", &c1, "ping", "-c1", "-W2", &ip3]);
    assert_ne!(code, 0, "still reached {ip3} after disconnect");
    env.ok(&["rm", "-f", &c1, &c2, &c3]);
    env.ok(&["network", "rm", &na, &nb]);
    for b in [&ba, &bb] {
        assert!(
            !Path::new("/sys/class/net").join(b).exists(),
            "bridge {b} left"
        );
    }
    env.assert_clean(&[]);
}

#[test]
fn published_ports_from_loopback_host_and_hairpin() {
    if !need_root("published_ports_from_loopback_host_and_hairpin") {
        return;
    }
    let env = Env::new("netport");
    let gw = env.net.gateway.clone();
    for backend in ["fast", "cni"] {
        let (web, client) = (unique(&format!("web-{backend}")), unique("cl"));
        let port = free_port();
        let publish = format!("{port}:8080");
        let mut args: Vec<String> = ["run", "-d", "--name", &web, "-p", &publish, &env.image]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(httpd_args(&format!("hello-{backend}"), "8080"));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ok_with(&env, backend, &args);
        let want = format!("hello-{backend}");
        wait_until("the web server to answer on 127.0.0.1", || {
            http_get("127.0.0.1", port).contains(&want)
        });
        // The host's own address on the bridge.
        assert!(
            http_get(&gw, port).contains(&want),
            "{backend}: via {gw}:{port}"
        );
        // Another container, through the host's address (hairpin NAT).
        ok_with(
            &env,
            backend,
            &["run", "-d", "--name", &client, &env.image, "sleep", "60"],
        );
        let url = format!("http://{gw}:{port}/");
        let got = env.ok(&["exec", &client, "wget", "-qO-", &url]);
        assert!(got.contains(&want), "{backend}: from a container: {got}");
        // The container itself, through its own published port.
        let got = env.ok(&["exec", &web, "wget", "-qO-", &url]);
        assert!(got.contains(&want), "{backend}: hairpin: {got}");
        let listed = env.ok(&["port", &web]);
        assert_eq!(listed.trim(), format!("8080/tcp -> 0.0.0.0:{port}"));
        assert_eq!(
            env.ok(&["port", &web, "8080"]).trim(),
            format!("0.0.0.0:{port}")
        );
        let ps = env.ok(&[
            "ps",
            "--format",
            "{{.Ports}}",
            "--filter",
            &format!("name={web}"),
        ]);
        assert!(ps.contains(&format!("0.0.0.0:{port}->8080/tcp")), "{ps}");
        // The same port again is refused, naming it and its holder.
        let (code, _, err) = with_backend(
            &env,
            backend,
            &["run", "--rm", "-p", &publish, &env.image, "true"],
        );
        assert_eq!(code, 125, "{err}");
        assert!(
            err.contains(&format!("host port {port}/tcp")) && err.contains(&web),
            "{err}"
        );
        env.ok(&["rm", "-f", &web, &client]);
        assert!(
            http_get("127.0.0.1", port).is_empty(),
            "{backend}: port still forwarded"
        );
        env.assert_clean(&[]);
    }
    // -P: the test image exposes nothing, so nothing is published; an
    // image that exposes 8080/tcp gets it on a free host port.
    let c = unique("pall");
    env.ok(&["run", "-d", "-P", "--name", &c, &env.image, "sleep", "30"]);
    assert_eq!(env.ok(&["port", &c]).trim(), "");
    env.ok(&["rm", "-f", &c]);
    let layout = env.root.path().join("web-layout");
    let config = serde_json::json!({
        "ExposedPorts": {"8080/tcp": {}},
        "Cmd": ["sh", "-c", "mkdir -p /www && echo exposed > /www/index.html && exec httpd -f -p 8080 -h /www"],
    });
    berth_tests::run_ok(
        std::process::Command::new(berth_tests::workspace().join("scripts/mkimage.sh"))
            .env("MKIMAGE_CONFIG", config.to_string())
            .arg(&layout)
            .arg("latest")
            .arg(env.root.path().join("img-rootfs")),
    );
    env.reg
        .push_oci_layout(&layout, "latest", "test/web:latest");
    let web_image = format!("{}/test/web:latest", env.reg.addr);
    env.ok(&["run", "-d", "-P", "--name", &c, &web_image]);
    let line = env.ok(&["port", &c, "8080/tcp"]);
    let port: u16 = line.trim().rsplit(':').next().unwrap().parse().unwrap();
    wait_until("the -P port to answer", || {
        http_get("127.0.0.1", port).contains("exposed")
    });
    env.ok(&["rm", "-f", &c]);
    env.assert_clean(&[]);
}

#[test]
fn none_host_and_container_modes() {
    if !need_root("none_host_and_container_modes") {
        return;
    }
    let env = Env::new("netmodes");
    let links = env.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        &env.image,
        "ip",
        "-o",
        "link",
    ]);
    let names: Vec<&str> = links.lines().filter_map(|l| l.split(": ").nth(1)).collect();
    assert_eq!(names, vec!["lo"], "{links}");

    let host_links = std::process::Command::new("ip")
        .args(["-o", "link"])
        .output()
        .unwrap();
    let host_links = String::from_utf8_lossy(&host_links.stdout).into_owned();
    let first = host_links
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n))
        .find(|n| *n != "lo")
        .expect("a host link");
    let links = env.ok(&[
        "run",
        "--rm",
        "--network",
        "host",
        &env.image,
        "ip",
        "-o",
        "link",
    ]);
    assert!(
        links.contains(&format!(": {first}")),
        "{first} not in {links}"
    );

    let (a, b) = (unique("ns-a"), unique("ns-b"));
    env.ok(&["run", "-d", "--name", &a, &env.image, "sleep", "60"]);
    let ip = ip_of(&env, &a, "berth");
    let cont = format!("container:{a}");
    let addr = env.ok(&[
        "run",
        "--name",
        &b,
        "--network",
        &cont,
        &env.image,
        "ip",
        "-o",
        "-4",
        "addr",
    ]);
    assert!(addr.contains(&ip), "{addr}");
    assert_eq!(env.inspect(&b)["HostConfig"]["NetworkMode"], cont.as_str());
    let hosts = env.ok(&[
        "run",
        "--rm",
        "--network",
        &cont,
        &env.image,
        "cat",
        "/etc/hosts",
    ]);
    assert!(hosts.contains(&ip), "{hosts}");
    // Joining a container that does not run is refused.
    let stopped = unique("ns-s");
    env.ok(&[
        "create",
        "--name",
        &stopped,
        "--network",
        "none",
        &env.image,
        "true",
    ]);
    let err = env.fails(
        &[
            "run",
            "--rm",
            "--network",
            &format!("container:{stopped}"),
            &env.image,
            "true",
        ],
        125,
    );
    assert!(err.contains(stopped.as_str()), "{err}");
    env.ok(&["rm", "-f", &a, &b, &stopped]);
    env.assert_clean(&[]);
}

/// A third-party-style plugin: a veth of its own and a fixed address, each
/// call logged. Written by the test, speaking the CNI protocol as any
/// plugin must.
fn write_plugin(dir: &Path, name: &str, log: &Path, extra_add: &str) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    let p = dir.join(name);
    let script = format!(
        r#"#!/bin/sh
conf=$(cat)
echo "$CNI_COMMAND $CNI_CONTAINERID $CNI_IFNAME $CNI_NETNS" >> {log}
addr=$(echo "$conf" | sed -n 's/.*"address": *"\([^"]*\)".*/\1/p')
host=tp$(echo "$CNI_CONTAINERID" | cut -c1-10)
case "$CNI_COMMAND" in
VERSION) echo '{{"cniVersion":"1.1.0","supportedVersions":["0.3.1","0.4.0","1.0.0","1.1.0"]}}' ;;
ADD)
  {extra_add}
  nsenter --net="$CNI_NETNS" ip link add "$CNI_IFNAME" type veth peer name "$host" netns 1 || exit 1
  nsenter --net="$CNI_NETNS" ip addr add "$addr" dev "$CNI_IFNAME" || exit 1
  nsenter --net="$CNI_NETNS" ip link set "$CNI_IFNAME" up
  ip link set "$host" up
  echo "{{\"cniVersion\":\"1.0.0\",\"interfaces\":[{{\"name\":\"$CNI_IFNAME\",\"sandbox\":\"$CNI_NETNS\"}}],\"ips\":[{{\"address\":\"$addr\",\"interface\":0}}]}}"
  ;;
DEL) ip link del "$host" 2>/dev/null; exit 0 ;;
CHECK) exit 0 ;;
GC|STATUS) echo "$conf" | tr -d '\n' >> {log}; echo >> {log}; exit 0 ;;
*) echo '{{"cniVersion":"1.0.0","code":4,"msg":"unknown command"}}'; exit 1 ;;
esac
"#,
        log = log.display()
    );
    fs::write(&p, script).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    p
}

#[test]
fn third_party_plugin() {
    if !need_root("third_party_plugin") {
        return;
    }
    let env = Env::new("netplug");
    let plugins = env.root.path().join("plugins");
    let log = env.root.path().join("plugin.log");
    let ptype = unique("tplug");
    write_plugin(&plugins, &ptype, &log, "");
    let net = unique("tpnet");
    let addr = env.net.subnet(7).replace(".0/24", ".2/24");
    fs::write(
        env.net.dir.join(format!("{net}.conflist")),
        serde_json::to_vec(&serde_json::json!({
            "cniVersion": "1.1.0", "name": net,
            "plugins": [{"type": ptype, "address": addr}]
        }))
        .unwrap(),
    )
    .unwrap();
    let path = format!("{}:/usr/lib/cni", plugins.display());
    let c = unique("tp");
    let out = env.ok(&[
        "--cni-plugin-dir",
        &path,
        "run",
        "--name",
        &c,
        "--network",
        &net,
        &env.image,
        "ip",
        "-o",
        "-4",
        "addr",
    ]);
    assert!(out.contains(&addr), "{out}");
    let v = env.inspect(&c);
    assert_eq!(
        v["NetworkSettings"]["Networks"][net.as_str()]["IPAddress"],
        addr.trim_end_matches("/24")
    );
    let id = v["Id"].as_str().unwrap().to_string();
    // STATUS (spec 1.1) through `network inspect`.
    let inspect: serde_json::Value =
        serde_json::from_str(&env.ok(&["--cni-plugin-dir", &path, "network", "inspect", &net]))
            .unwrap();
    assert_eq!(inspect[0]["Status"], "ready");
    // GC (spec 1.1) through `system prune`, keeping the existing
    // container's attachment (it is stopped, so prune removes the container
    // first: make another that stays).
    let keep = unique("tpk");
    let addr2 = env.net.subnet(8).replace(".0/24", ".2/24");
    let net2 = unique("tpnet2");
    fs::write(
        env.net.dir.join(format!("{net2}.conflist")),
        serde_json::to_vec(&serde_json::json!({
            "cniVersion": "1.1.0", "name": net2,
            "plugins": [{"type": ptype, "address": addr2}]
        }))
        .unwrap(),
    )
    .unwrap();
    env.ok(&[
        "--cni-plugin-dir",
        &path,
        "run",
        "-d",
        "--name",
        &keep,
        "--network",
        &net2,
        &env.image,
        "sleep",
        "60",
    ]);
    let keep_id = env.inspect(&keep)["Id"].as_str().unwrap().to_string();
    env.ok(&["--cni-plugin-dir", &path, "system", "prune", "-f"]);
    let calls = fs::read_to_string(&log).unwrap();
    assert!(calls.contains("cni.dev/valid-attachments"), "{calls}");
    let gc2 = calls
        .lines()
        .find(|l| l.contains("valid-attachments") && l.contains(net2.as_str()))
        .expect("a GC of the second network");
    assert!(gc2.contains(&keep_id), "{gc2}");
    // The stopped container went with the prune, its DEL with it.
    assert!(env.run(&["inspect", &c]).0 != 0);
    env.ok(&["--cni-plugin-dir", &path, "rm", "-f", &keep]);
    let calls = fs::read_to_string(&log).unwrap();
    let pin = env.run_dir.join("netns").join(&id);
    assert!(
        calls.contains(&format!("ADD {id} eth0 {}", pin.display())),
        "{calls}"
    );
    assert!(calls.contains(&format!("DEL {id} eth0")), "{calls}");
    assert!(
        !Path::new("/sys/class/net")
            .join(format!("tp{}", &id[..10]))
            .exists(),
        "the plugin's veth is left"
    );
    env.assert_clean(&[]);
}

#[test]
fn del_after_a_crash() {
    if !need_root("del_after_a_crash") {
        return;
    }
    let env = Env::new("netcrash");
    let net = unique("crnet");
    let bridge = format!("btc{:06x}", std::process::id() & 0xff_ffff);
    env.net
        .write_bridge(&net, &bridge, &env.net.subnet(3), true);
    // 1. The network's config is gone when the container is removed: DEL
    //    runs from the cached result and config alone.
    let c = unique("cr1");
    env.ok(&[
        "run",
        "-d",
        "--name",
        &c,
        "--network",
        &net,
        &env.image,
        "sleep",
        "60",
    ]);
    assert_eq!(berth_tests::net::TestNet::ports_of(&bridge).len(), 1);
    let file = env.net.dir.join(format!("{net}.conflist"));
    let saved = fs::read(&file).unwrap();
    fs::remove_file(&file).unwrap();
    env.ok(&["rm", "-f", &c]);
    assert!(berth_tests::net::TestNet::ports_of(&bridge).is_empty());
    env.assert_clean(&[]);
    fs::write(&file, saved).unwrap();

    // 2. berth is killed in the middle of the plugin chain: a slow plugin
    //    after the bridge. `rm -f` still removes everything.
    let plugins = env.root.path().join("plugins");
    let log = env.root.path().join("slow.log");
    let slow = unique("slow");
    write_plugin(&plugins, &slow, &log, "sleep 60");
    let mut v: serde_json::Value = serde_json::from_slice(&fs::read(&file).unwrap()).unwrap();
    v["plugins"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"type": slow, "address": "10.255.255.2/32"}));
    fs::write(&file, serde_json::to_vec(&v).unwrap()).unwrap();
    let path = format!("{}:/usr/lib/cni", plugins.display());
    let c = unique("cr2");
    let mut child = env
        .cmd()
        .args([
            "--cni-plugin-dir",
            &path,
            "create",
            "--name",
            &c,
            "--network",
            &net,
            &env.image,
            "true",
        ])
        .spawn()
        .unwrap();
    wait_until("the slow plugin's ADD", || {
        fs::read_to_string(&log).is_ok_and(|l| l.contains("ADD"))
    });
    // The bridge plugin ran: a veth exists, and no cache entry yet.
    assert_eq!(berth_tests::net::TestNet::ports_of(&bridge).len(), 1);
    child.kill().unwrap();
    child.wait().unwrap();
    // The slow plugin outlives berth; stop it as a crash would have.
    for p in fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = fs::read(p.path().join("cmdline")) {
            if String::from_utf8_lossy(&cmd).contains(&slow) {
                if let Ok(pid) = p.file_name().to_string_lossy().parse::<i32>() {
                    // Its own process group, with its sleep.
                    let _ = nix::sys::signal::killpg(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
    }
    let ps = env.ok(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"]);
    assert!(ps.contains(&c), "{ps}");
    env.ok(&["--cni-plugin-dir", &path, "rm", "-f", &c]);
    assert!(
        berth_tests::net::TestNet::ports_of(&bridge).is_empty(),
        "veth left after rm"
    );
    env.assert_clean(&[]);
}

#[test]
fn bad_network_input_leaves_nothing() {
    if !need_root("bad_network_input_leaves_nothing") {
        return;
    }
    let env = Env::new("netbad");
    let run = |extra: &[&str]| {
        let mut a = vec!["run", "--rm"];
        a.extend_from_slice(extra);
        a.push(&env.image);
        a.push("true");
        env.fails(&a, 125)
    };
    // Unknown network.
    let nope = unique("nope");
    let err = run(&["--network", &nope]);
    assert!(
        err.contains(nope.as_str()) && err.contains("not found"),
        "{err}"
    );
    env.assert_clean(&[]);
    // A port a host process holds.
    let l = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let err = run(&["-p", &format!("{port}:80")]);
    assert!(err.contains(&format!("host port {port}/tcp")), "{err}");
    env.assert_clean(&[]);
    drop(l);
    // Bad port and address values.
    let err = run(&["-p", "80:99999"]);
    assert!(err.contains("99999"), "{err}");
    let err = run(&["--network", "none", "-p", "80"]);
    assert!(err.contains("--network none"), "{err}");
    // A malformed config list.
    let bad = unique("badnet");
    fs::write(env.net.dir.join(format!("{bad}.conflist")), b"{ \"name\": ").unwrap();
    let err = run(&["--network", &bad]);
    assert!(err.contains(&format!("{bad}.conflist")), "{err}");
    fs::remove_file(env.net.dir.join(format!("{bad}.conflist"))).unwrap();
    // A plugin that is missing, and one that fails with an error.
    let plugins = env.root.path().join("plugins");
    fs::create_dir_all(&plugins).unwrap();
    let failing = plugins.join("failplug");
    fs::write(
        &failing,
        "#!/bin/sh\ncat >/dev/null\nif [ \"$CNI_COMMAND\" = ADD ]; then echo '{\"cniVersion\":\"1.0.0\",\"code\":11,\"msg\":\"boom-from-plugin\",\"details\":\"it says why\"}'; exit 1; fi\nexit 0\n",
    )
    .unwrap();
    fs::set_permissions(&failing, fs::Permissions::from_mode(0o755)).unwrap();
    let bridge = format!("btf{:06x}", std::process::id() & 0xff_ffff);
    for (plugin, want) in [
        ("nosuchplugin", "nosuchplugin"),
        ("failplug", "boom-from-plugin"),
    ] {
        let net = unique("pnet");
        env.net
            .write_bridge(&net, &bridge, &env.net.subnet(5), true);
        let file = env.net.dir.join(format!("{net}.conflist"));
        let mut v: serde_json::Value = serde_json::from_slice(&fs::read(&file).unwrap()).unwrap();
        v["plugins"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"type": plugin}));
        fs::write(&file, serde_json::to_vec(&v).unwrap()).unwrap();
        let path = format!("{}:/usr/lib/cni", plugins.display());
        let err = env.fails(
            &[
                "--cni-plugin-dir",
                &path,
                "run",
                "--rm",
                "--network",
                &net,
                &env.image,
                "true",
            ],
            125,
        );
        assert!(err.contains(want) && err.contains(&net), "{err}");
        // Not half-wired: the bridge plugin's veth went with the failed ADD.
        assert!(
            berth_tests::net::TestNet::ports_of(&bridge).is_empty(),
            "veth left"
        );
        env.assert_clean(&[]);
        fs::remove_file(&file).unwrap();
    }
}

#[test]
fn prune_removes_what_crashes_left() {
    if !need_root("prune_removes_what_crashes_left") {
        return;
    }
    let env = Env::new("netleak");
    let ports_of = berth_tests::net::TestNet::ports_of;
    // Attachments and pins of containers berth has no record of, as a crash
    // of a `berth` between attaching and recording would leave: one made by
    // the CNI plugins on a user network, one by the fast path on the default
    // network, each with its pinned namespace.
    let ids: Vec<String> = (0..2)
        .map(|i| format!("{:0>64}", format!("{:x}{i}", std::process::id())))
        .collect();
    let pins: Vec<PathBuf> = ids
        .iter()
        .map(|id| berth_engine::netns::path(&env.run_dir, id))
        .collect();
    for p in &pins {
        berth_engine::netns::create(p).unwrap();
    }
    let net = unique("lknet");
    let bridge = format!("btl{:06x}", std::process::id() & 0xff_ffff);
    env.net
        .write_bridge(&net, &bridge, &env.net.subnet(4), true);
    let list =
        berth_cni::NetworkConfigList::load(&env.net.dir.join(format!("{net}.conflist"))).unwrap();
    let cni = berth_cni::Cni::new(vec!["/usr/lib/cni".into()], env.root.path().join("cni"));
    cni.add(
        &list,
        &berth_cni::RuntimeConf {
            container_id: ids[0].clone(),
            netns: pins[0].clone(),
            ifname: "eth0".into(),
            args: vec![("IgnoreUnknown".into(), "1".into())],
            ..Default::default()
        },
    )
    .unwrap();
    let gw: std::net::Ipv4Addr = env.net.gateway.parse().unwrap();
    let fast = berth_bridge::Bridge::with_table(
        env.root.path().join("networks/bridge"),
        &format!("berth_{}", env.net.bridge),
    );
    fast.attach(
        &berth_bridge::BridgeNetwork {
            name: "berth".into(),
            bridge: env.net.bridge.clone(),
            subnet: env.net.subnet.trim_end_matches("/24").parse().unwrap(),
            prefix: 24,
            gateway: gw,
            mtu: None,
            ip_masq: true,
            hairpin: true,
            internal: false,
        },
        &berth_bridge::AttachRequest {
            container_id: &ids[1],
            netns: &pins[1],
            ifname: "eth0",
            ports: &[],
            ip: None,
            mac: None,
        },
    )
    .unwrap();
    assert_eq!(ports_of(&bridge).len(), 1);
    assert_eq!(ports_of(&env.net.bridge).len(), 1);

    let (_, _, err) = env.run(&["system", "prune", "-f"]);
    for id in &ids {
        assert!(err.contains(id.as_str()), "{id} not reported: {err}");
    }
    assert!(ports_of(&bridge).is_empty(), "CNI veth left");
    assert!(ports_of(&env.net.bridge).is_empty(), "fast-path veth left");
    assert!(fast.attachments("berth").unwrap().is_empty());
    env.assert_clean(&[]);
}

#[test]
fn static_ip_internal_several_networks_and_a_lost_namespace() {
    if !need_root("static_ip_internal_several_networks_and_a_lost_namespace") {
        return;
    }
    let env = Env::new("netmore");
    let [(na, ba), (ni, bi)] = two_names(&env, ["m", "i"]);
    let sa = env.net.subnet(11);
    env.ok(&[
        "network",
        "create",
        "--subnet",
        &sa,
        "--gateway",
        &sa.replace(".0/24", ".254"),
        "--interface-name",
        &ba,
        &na,
    ]);
    env.ok(&[
        "network",
        "create",
        "--internal",
        "--subnet",
        &env.net.subnet(12),
        "--interface-name",
        &bi,
        &ni,
    ]);
    let v: serde_json::Value = serde_json::from_str(&env.ok(&["network", "inspect", &ni])).unwrap();
    assert_eq!(v[0]["Internal"], true);
    // --ip, on a network with its own gateway.
    let ip = sa.replace(".0/24", ".50");
    let c = unique("ipc");
    env.ok(&[
        "run",
        "-d",
        "--name",
        &c,
        "--network",
        &na,
        "--ip",
        &ip,
        &env.image,
        "sleep",
        "60",
    ]);
    assert_eq!(ip_of(&env, &c, &na), ip);
    let route = env.ok(&["exec", &c, "ip", "route"]);
    assert!(
        route.contains(&format!("default via {}", sa.replace(".0/24", ".254"))),
        "{route}"
    );
    // The address is taken now.
    let err = env.fails(
        &[
            "run",
            "--rm",
            "--network",
            &na,
            "--ip",
            &ip,
            &env.image,
            "true",
        ],
        125,
    );
    assert!(err.contains(&ip), "{err}");
    // Two networks at once: eth0 and eth1; the internal one has no way out.
    let d = unique("two");
    let both = format!("{na},{ni}");
    env.ok(&[
        "run",
        "-d",
        "--name",
        &d,
        "--network",
        &both,
        &env.image,
        "sleep",
        "60",
    ]);
    let links = env.ok(&["exec", &d, "ls", "/sys/class/net"]);
    assert_eq!(links, "eth0\neth1\nlo\n");
    let i = unique("int");
    env.ok(&[
        "run",
        "-d",
        "--name",
        &i,
        "--network",
        &ni,
        &env.image,
        "sleep",
        "60",
    ]);
    let route = env.ok(&["exec", &i, "ip", "route"]);
    assert!(
        !route.contains("default"),
        "an internal network routes out: {route}"
    );
    env.ok(&["exec", &d, "ping", "-c1", "-W3", &i]);
    // A lost namespace (a reboot empties the run dir): the next start makes
    // the networks again, with the same address.
    env.ok(&["stop", "-t", "0", &c]);
    let id = env.inspect(&c)["Id"].as_str().unwrap().to_string();
    berth_engine::netns::remove(&berth_engine::netns::path(&env.run_dir, &id)).unwrap();
    env.ok(&["start", &c]);
    assert_eq!(ip_of(&env, &c, &na), ip);
    env.ok(&["exec", &c, "ping", "-c1", "-W3", &d]);
    env.ok(&["rm", "-f", &c, &d, &i]);
    // prune removes both unused networks berth made, never the default one.
    let pruned = env.ok(&["network", "prune", "-f"]);
    assert!(
        pruned.contains(na.as_str()) && pruned.contains(ni.as_str()),
        "{pruned}"
    );
    assert!(env.ok(&["network", "ls", "-q"]).contains("berth"));
    let err = env.fails(&["network", "rm", "berth"], 125);
    assert!(err.contains("default network"), "{err}");
    env.assert_clean(&[]);
}

/// A network namespace of the test's own, deleted on drop: routes made in
/// it are seen by a `berth` run inside it, and by nothing else.
struct TestNs(String);

impl TestNs {
    fn new(tag: &str) -> TestNs {
        let name = unique(tag);
        berth_tests::run_ok(std::process::Command::new("ip").args(["netns", "add", &name]));
        TestNs(name)
    }

    fn ip(&self, args: &[&str]) {
        berth_tests::run_ok(
            std::process::Command::new("ip")
                .args(["-n", &self.0])
                .args(args),
        );
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}

/// Subnet choice on a host whose routes cover berth's own ranges, in a
/// namespace the test made (its routes are that host's): a config dir's
/// default network made while another berth's is up at 10.90.0.0/16 keeps
/// out of the user networks' 10.91.0.0/16, so `network create` still works
/// (it failed with "no free /24 in 10.91.0.0/16"); with 10.0.0.0/8 routed
/// (a VPN) docker's pools are used; `--default-address-pool` (or
/// BERTH_DEFAULT_ADDRESS_POOLS) replaces the pools, and running out of them
/// is a clear error.
#[test]
fn subnets_keep_clear_of_routes_and_of_each_other() {
    if !need_root("subnets_keep_clear_of_routes_and_of_each_other") {
        return;
    }
    let ns = TestNs::new("btpools");
    let tmp = tempfile::Builder::new()
        .prefix("berth-pools-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let run_dir = PathBuf::from(format!("/run/{}", unique("bt-pools")));
    struct RemoveDir(PathBuf);
    impl Drop for RemoveDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
    let _run_dir = RemoveDir(run_dir.clone());
    // berth in the namespace with config dir `conf`, environment `env`.
    let berth = |conf: &str, env: &[(&str, &str)], args: &[&str]| {
        let mut c = std::process::Command::new("ip");
        c.args(["netns", "exec", &ns.0])
            .arg(berth_tests::cli::berth_bin())
            .arg("--root")
            .arg(tmp.path().join("root"))
            .arg("--run-dir")
            .arg(&run_dir)
            .arg("--network-config-dir")
            .arg(tmp.path().join(conf))
            .args(args)
            .env_remove("BERTH_DEFAULT_ADDRESS_POOLS")
            .envs(env.iter().copied());
        let o = c.output().unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let subnet = |conf: &str, env: &[(&str, &str)], pre: &[&str], net: &str| -> String {
        let mut args = pre.to_vec();
        args.extend(["network", "inspect", net]);
        let (code, out, err) = berth(conf, env, &args);
        assert_eq!(code, 0, "{out}{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v[0]["IPAM"]["Config"][0]["Subnet"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let create = |conf: &str, env: &[(&str, &str)], pre: &[&str], net: &str| {
        let mut args = pre.to_vec();
        args.extend(["network", "create", net]);
        berth(conf, env, &args)
    };
    let made = |conf: &str, env: &[(&str, &str)], pre: &[&str], net: &str| -> String {
        let (code, out, err) = create(conf, env, pre, net);
        assert_eq!(code, 0, "network create {net} in {conf}: {out}{err}");
        subnet(conf, env, pre, net)
    };

    // The first config dir's default network takes 10.90.0.0/16 ...
    assert_eq!(subnet("a", &[], &[], "berth"), "10.90.0.0/16");
    // ... and its bridge comes up, as once a container ran on it.
    ns.ip(&["link", "add", "bp0", "type", "bridge"]);
    ns.ip(&["addr", "add", "10.90.0.1/16", "dev", "bp0"]);
    ns.ip(&["link", "set", "bp0", "up"]);
    // Another config dir: its default network keeps off both ranges, and
    // user networks are still made.
    let d = subnet("b", &[], &[], "berth");
    assert_eq!(d, "172.17.0.0/16");
    assert_eq!(made("b", &[], &[], "n1"), "10.91.0.0/24");
    assert_eq!(made("b", &[], &[], "n2"), "10.91.1.0/24");

    // All of 10/8 routed: docker's pools, for both.
    ns.ip(&["route", "add", "10.0.0.0/8", "dev", "bp0"]);
    assert_eq!(subnet("c", &[], &[], "berth"), "172.17.0.0/16");
    assert_eq!(made("c", &[], &[], "n1"), "172.18.0.0/16");

    // Configured pools, by flag or environment, serve both until they run out.
    let flag = ["--default-address-pool", "base=198.18.0.0/23,size=24"];
    assert_eq!(subnet("d", &[], &flag, "berth"), "198.18.0.0/24");
    assert_eq!(made("d", &[], &flag, "n1"), "198.18.1.0/24");
    let (code, out, err) = create("d", &[], &flag, "n2");
    assert_ne!(code, 0, "{out}{err}");
    assert!(
        err.contains("no free subnet") && err.contains("base=198.18.0.0/23,size=24"),
        "{err}"
    );
    let env = [(
        "BERTH_DEFAULT_ADDRESS_POOLS",
        "base=198.18.8.0/24,size=26 base=198.18.9.0/24,size=24",
    )];
    assert_eq!(subnet("e", &env, &[], "berth"), "198.18.8.0/26");
    assert_eq!(made("e", &env, &[], "n1"), "198.18.8.64/26");
    let (code, _, err) = berth(
        "f",
        &[],
        &[
            "--default-address-pool",
            "base=198.18.0.0/16",
            "network",
            "ls",
        ],
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("base=198.18.0.0/16") && err.contains("size"),
        "{err}"
    );
}
