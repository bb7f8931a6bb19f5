//! `berth daemon` end to end: a CRI client generated from the same proto
//! drives the daemon over its unix socket, against real loopback registries
//! (Debian's docker-registry), while the `berth` CLI shares the store.
//!
//! Each test has its own temp dir (store root, run dir, CNI conf dir,
//! socket, config); the daemon is a child process killed (by PID) and reaped
//! when its guard drops. Readiness and shutdown are events: the daemon's
//! `NOTIFY_SOCKET` messages and its log lines, never sleeps.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use berth_cri::proto::image_service_client::ImageServiceClient;
use berth_cri::proto::runtime_service_client::RuntimeServiceClient;
use berth_cri::proto::{self as cri};
use berth_tests::cli::berth_bin;
use berth_tests::registry::TestRegistry;
use berth_tests::{need_root, run_ok, unique, workspace};
use serde_json::Value;
use tempfile::TempDir;
use tonic::transport::Channel;
use tonic::Code;

/// How long to wait for the daemon to say it is ready or has stopped.
const WAIT: Duration = Duration::from_secs(30);

/// A busybox OCI layout, made once per test process.
fn layout() -> &'static Path {
    static L: std::sync::OnceLock<(TempDir, PathBuf)> = std::sync::OnceLock::new();
    &L.get_or_init(|| {
        let d = tempfile::Builder::new()
            .prefix("berth-cri-img-")
            .tempdir()
            .expect("tempdir");
        let rootfs = d.path().join("rootfs");
        run_ok(Command::new(workspace().join("scripts/mkrootfs.sh")).arg(&rootfs));
        run_ok(
            Command::new(workspace().join("scripts/mkimage.sh"))
                .arg(d.path().join("layout"))
                .arg("latest")
                .arg(&rootfs),
        );
        let p = d.path().join("layout");
        (d, p)
    })
    .1
}

/// One test's files: store root, run dir, CNI conf dir, socket dir.
struct Dirs {
    tmp: TempDir,
}

impl Dirs {
    fn new(test: &str) -> Dirs {
        let tmp = tempfile::Builder::new()
            .prefix(&format!("berth-cri-{}-", unique(test)))
            .tempdir_in("/var/tmp")
            .expect("tempdir");
        std::fs::create_dir(tmp.path().join("cni")).unwrap();
        Dirs { tmp }
    }
    fn root(&self) -> PathBuf {
        self.tmp.path().join("root")
    }
    fn run_dir(&self) -> PathBuf {
        self.tmp.path().join("run")
    }
    fn cni(&self) -> PathBuf {
        self.tmp.path().join("cni")
    }
    fn socket(&self) -> PathBuf {
        self.tmp.path().join("sock/berth.sock")
    }
    /// A config naming all of the above; `extra` is appended.
    fn config(&self, extra: &str) -> PathBuf {
        let p = self.tmp.path().join("daemon.toml");
        let text = format!(
            "listen = {:?}\nroot = {:?}\nrun_dir = {:?}\ncni_conf_dir = {:?}\nauth_file = {:?}\n{extra}",
            self.socket(),
            self.root(),
            self.run_dir(),
            self.cni(),
            self.tmp.path().join("no-auth.json"),
        );
        std::fs::write(&p, text).unwrap();
        p
    }
    /// `berth --root ROOT ARGS...`, asserting success; stdout.
    fn berth(&self, args: &[&str]) -> String {
        let o = Command::new(berth_bin())
            .arg("--root")
            .arg(self.root())
            .arg("--run-dir")
            .arg(self.run_dir())
            .args(args)
            .env("REGISTRY_AUTH_FILE", self.tmp.path().join("no-auth.json"))
            .stdin(Stdio::null())
            .output()
            .expect("run berth");
        assert!(
            o.status.success(),
            "berth {args:?}: {}\n{}{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }
}

/// A running `berth daemon`; killed and reaped on drop.
struct Daemon {
    child: Child,
    socket: PathBuf,
    /// The daemon's stderr, line by line.
    lines: mpsc::Receiver<String>,
    rt: tokio::runtime::Runtime,
}

impl Daemon {
    /// Starts `berth [GLOBAL...] daemon --config CONFIG` and waits for its
    /// `READY=1`.
    fn start(dirs: &Dirs, config: &Path, global: &[&str]) -> Daemon {
        let notify_path = dirs.tmp.path().join(format!("notify-{}", unique("n")));
        let notify = UnixDatagram::bind(&notify_path).expect("bind the notify socket");
        notify.set_read_timeout(Some(WAIT)).unwrap();
        let mut child = Command::new(berth_bin())
            .args(["--log-level", "info"])
            .args(global)
            .arg("daemon")
            .arg("--config")
            .arg(config)
            .env("NOTIFY_SOCKET", &notify_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn berth daemon");
        let (tx, lines) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                eprintln!("daemon: {l}");
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let mut d = Daemon {
            child,
            socket: dirs.socket(),
            lines,
            rt,
        };
        let mut buf = [0u8; 256];
        let n = notify.recv(&mut buf).unwrap_or_else(|e| {
            let _ = d.child.kill();
            panic!("berth daemon sent no READY=1: {e}")
        });
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(msg.starts_with("READY=1"), "notify message: {msg:?}");
        let _ = std::fs::remove_file(&notify_path);
        d
    }

    fn channel(&self) -> Channel {
        self.rt
            .block_on(berth_cri::client::connect(&self.socket))
            .expect("connect to the daemon")
    }
    fn runtime(&self) -> RuntimeServiceClient<Channel> {
        RuntimeServiceClient::new(self.channel())
    }
    fn images(&self) -> ImageServiceClient<Channel> {
        ImageServiceClient::new(self.channel())
    }
    fn block<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// Waits for a log line containing `what`.
    fn wait_line(&self, what: &str) -> String {
        loop {
            match self.lines.recv_timeout(WAIT) {
                Ok(l) if l.contains(what) => return l,
                Ok(_) => {}
                Err(e) => panic!("no daemon log line with {what:?}: {e}"),
            }
        }
    }

    fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), sig)
            .expect("signal the daemon");
    }

    /// Waits for the daemon to exit (its stderr closes first); exit code.
    fn wait(&mut self) -> Option<i32> {
        loop {
            match self.lines.recv_timeout(WAIT) {
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => panic!("the daemon did not exit"),
            }
        }
        self.child.wait().expect("wait for the daemon").code()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

fn image_spec(image: &str) -> Option<cri::ImageSpec> {
    Some(cri::ImageSpec {
        image: image.to_string(),
        ..Default::default()
    })
}

fn pull_req(image: &str, auth: Option<cri::AuthConfig>) -> cri::PullImageRequest {
    cri::PullImageRequest {
        image: image_spec(image),
        auth,
        sandbox_config: None,
    }
}

/// The rows of `berth images --digests --no-trunc --format json`.
fn cli_images(dirs: &Dirs) -> Vec<Value> {
    serde_json::from_str(&dirs.berth(&["images", "--digests", "--no-trunc", "--format", "json"]))
        .expect("berth images json")
}

fn condition<'a>(s: &'a cri::StatusResponse, t: &str) -> &'a cri::RuntimeCondition {
    s.status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.r#type == t)
        .unwrap_or_else(|| panic!("no condition {t}"))
}

/// What `RUNTIME features` says about rro, as the daemon should report it.
fn expect_rro(runtime: &Path) -> bool {
    let out = Command::new(runtime).arg("features").output().unwrap();
    if !out.status.success() {
        return false;
    }
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let has = doc["mountOptions"]
        .as_array()
        .is_some_and(|a| a.iter().any(|o| o == "rro"));
    let rel = rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned();
    let mut it = rel.split(['.', '-']);
    let v: (u32, u32) = (
        it.next().unwrap().parse().unwrap(),
        it.next().unwrap().parse().unwrap(),
    );
    has && v >= (5, 12)
}

#[test]
fn version_status_runtime_config_and_unimplemented_calls() {
    if !need_root("version_status_runtime_config_and_unimplemented_calls") {
        return;
    }
    let dirs = Dirs::new("status");
    // The config names one root, the command line another: the flag wins.
    let cfg = dirs.config("root = \"/nonexistent/berth-cri-should-not-be-used\"\n");
    let text = std::fs::read_to_string(&cfg).unwrap().replacen(
        &format!("root = {:?}\n", dirs.root()),
        "",
        1,
    );
    std::fs::write(&cfg, text).unwrap();
    let root = dirs.root();
    let d = Daemon::start(&dirs, &cfg, &["--root", root.to_str().unwrap()]);

    // The socket: 0660 in a 0700 dir.
    let md = std::fs::symlink_metadata(&d.socket).unwrap();
    assert!(md.file_type().is_socket());
    assert_eq!(md.permissions().mode() & 0o777, 0o660);
    let pmd = std::fs::metadata(d.socket.parent().unwrap()).unwrap();
    assert_eq!(pmd.permissions().mode() & 0o777, 0o700);

    let mut rs = d.runtime();
    let v = d
        .block(rs.version(cri::VersionRequest {
            version: "v1".into(),
        }))
        .unwrap()
        .into_inner();
    assert_eq!(v.runtime_name, "berth");
    assert_eq!(v.runtime_api_version, "v1");
    assert_eq!(v.runtime_version, env!("CARGO_PKG_VERSION"));

    // No CNI config list yet: NetworkReady is false, with a reason.
    let s = d
        .block(rs.status(cri::StatusRequest { verbose: true }))
        .unwrap()
        .into_inner();
    assert!(condition(&s, "RuntimeReady").status);
    let net = condition(&s, "NetworkReady");
    assert!(!net.status);
    assert_eq!(net.reason, "NetworkPluginNotReady");
    assert!(
        net.message.contains(dirs.cni().to_str().unwrap()),
        "{}",
        net.message
    );
    // Handlers: the default one as "", berth-runtime, and runc where it is.
    let names: Vec<&str> = s.runtime_handlers.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names[0], "");
    assert!(names.contains(&"berth-runtime"), "{names:?}");
    let runc = Path::new("/usr/sbin/runc");
    assert_eq!(names.contains(&"runc"), runc.exists(), "{names:?}");
    let by_name = |n: &str| s.runtime_handlers.iter().find(|h| h.name == n).unwrap();
    let cfg_json: Value = serde_json::from_str(&s.info["config"]).unwrap();
    assert_eq!(
        cfg_json["root"],
        root.to_str().unwrap(),
        "the --root flag wins over the file"
    );
    let hs: Value = serde_json::from_str(&s.info["runtimeHandlers"]).unwrap();
    assert_eq!(hs["berth-runtime"]["default"], true);
    let berth_rt = hs["berth-runtime"]["path"].as_str().unwrap().to_string();
    assert_eq!(
        by_name("berth-runtime")
            .features
            .unwrap()
            .recursive_read_only_mounts,
        expect_rro(Path::new(&berth_rt))
    );
    assert_eq!(by_name("").features, by_name("berth-runtime").features);
    if runc.exists() {
        assert_eq!(
            by_name("runc").features.unwrap().recursive_read_only_mounts,
            expect_rro(runc)
        );
    }

    // A config list appears: NetworkReady turns true.
    std::fs::write(
        dirs.cni().join("10-test.conflist"),
        r#"{"cniVersion":"1.0.0","name":"testnet","plugins":[{"type":"loopback"}]}"#,
    )
    .unwrap();
    let s = d
        .block(rs.status(cri::StatusRequest { verbose: false }))
        .unwrap()
        .into_inner();
    assert!(condition(&s, "NetworkReady").status);
    assert!(s.info.is_empty(), "info only when verbose");

    let c = d
        .block(rs.runtime_config(cri::RuntimeConfigRequest {}))
        .unwrap()
        .into_inner();
    assert_eq!(
        c.linux.unwrap().cgroup_driver,
        cri::CgroupDriver::Cgroupfs as i32
    );

    // The pod CIDR is kept.
    let upd = |cidr: &str| cri::UpdateRuntimeConfigRequest {
        runtime_config: Some(cri::RuntimeConfig {
            network_config: Some(cri::NetworkConfig {
                pod_cidr: cidr.to_string(),
            }),
        }),
    };
    d.block(rs.update_runtime_config(upd("10.244.3.0/24")))
        .unwrap();
    let e = d
        .block(rs.update_runtime_config(upd("10.244.3.0")))
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let s = d
        .block(rs.status(cri::StatusRequest { verbose: true }))
        .unwrap()
        .into_inner();
    assert_eq!(s.info["podCIDR"], "\"10.244.3.0/24\"");
    d.wait_line("pod CIDR updated");

    // Not served yet: Unimplemented, saying what brings it.
    let e = d
        .block(rs.run_pod_sandbox(cri::RunPodSandboxRequest::default()))
        .unwrap_err();
    assert_eq!(e.code(), Code::Unimplemented);
    assert!(
        e.message().contains("RunPodSandbox") && e.message().contains("issue 14"),
        "{}",
        e.message()
    );
    let e = d
        .block(rs.list_containers(cri::ListContainersRequest::default()))
        .unwrap_err();
    assert_eq!(e.code(), Code::Unimplemented);
    let e = d
        .block(rs.get_container_events(cri::GetEventsRequest::default()))
        .unwrap_err();
    assert_eq!(e.code(), Code::Unimplemented);
    assert!(
        e.message().contains("GetContainerEvents"),
        "{}",
        e.message()
    );
}

#[test]
fn image_service_shares_the_store_with_the_cli() {
    if !need_root("image_service_shares_the_store_with_the_cli") {
        return;
    }
    let reg = TestRegistry::start();
    reg.push_oci_layout(layout(), "latest", "test/bb:1");
    reg.push_oci_layout(layout(), "latest", "test/other:2");
    let dirs = Dirs::new("images");
    let d = Daemon::start(&dirs, &dirs.config(""), &[]);
    let mut is = d.images();
    let image = format!("{}/test/bb:1", reg.addr);

    // Pull through CRI; the CLI sees the same ID, tag and digest.
    let id = d
        .block(is.pull_image(pull_req(&image, None)))
        .unwrap()
        .into_inner()
        .image_ref;
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");
    let rows = cli_images(&dirs);
    let row = rows
        .iter()
        .find(|r| r["Repository"] == format!("{}/test/bb", reg.addr))
        .expect("berth images lists the CRI pull");
    assert_eq!(row["ID"], id.as_str());
    let listed = d
        .block(is.list_images(cri::ListImagesRequest { filter: None }))
        .unwrap()
        .into_inner()
        .images;
    assert_eq!(listed.len(), 1);
    let img = &listed[0];
    assert_eq!(img.id, id);
    assert_eq!(img.repo_tags, vec![format!("{}/test/bb:1", reg.addr)]);
    assert_eq!(
        img.repo_digests,
        vec![format!(
            "{}/test/bb@{}",
            reg.addr,
            row["Digest"].as_str().unwrap()
        )]
    );
    assert!(img.size > 0);
    assert_eq!(
        img.uid.as_ref().map(|u| u.value),
        None,
        "busybox names no user"
    );
    let inspect: Value = serde_json::from_str(&dirs.berth(&["image", "inspect", &image])).unwrap();
    assert_eq!(format!("sha256:{}", inspect[0]["Id"].as_str().unwrap()), id);
    assert_eq!(inspect[0]["RepoTags"], serde_json::json!(img.repo_tags));
    assert_eq!(
        inspect[0]["RepoDigests"],
        serde_json::json!(img.repo_digests)
    );
    assert_eq!(inspect[0]["Size"].as_u64().unwrap(), img.size);

    // Pull through the CLI; CRI lists it, under the same ID (same content).
    let other = format!("{}/test/other:2", reg.addr);
    dirs.berth(&["pull", "-q", &other]);
    let listed = d
        .block(is.list_images(cri::ListImagesRequest { filter: None }))
        .unwrap()
        .into_inner()
        .images;
    assert_eq!(listed.len(), 1, "one image, two names: {listed:?}");
    assert_eq!(
        listed[0].repo_tags,
        vec![format!("{}/test/bb:1", reg.addr), other.clone()]
    );
    assert_eq!(listed[0].repo_digests.len(), 2);

    // ImageStatus by tag, by ID, by ID prefix, by repo digest; verbose info.
    for name in [
        image.clone(),
        id.clone(),
        id[7..19].to_string(),
        img.repo_digests[0].clone(),
    ] {
        let st = d
            .block(is.image_status(cri::ImageStatusRequest {
                image: image_spec(&name),
                verbose: false,
            }))
            .unwrap()
            .into_inner();
        assert_eq!(
            st.image.as_ref().map(|i| i.id.as_str()),
            Some(id.as_str()),
            "{name}"
        );
        assert!(st.info.is_empty());
    }
    let st = d
        .block(is.image_status(cri::ImageStatusRequest {
            image: image_spec(&image),
            verbose: true,
        }))
        .unwrap()
        .into_inner();
    let info: Value = serde_json::from_str(&st.info["info"]).unwrap();
    assert_eq!(
        info["imageSpec"]["config"]["Cmd"],
        serde_json::json!(["/bin/sh"])
    );
    assert_eq!(info["id"], id.as_str());
    // Unknown: no image, no error.
    let st = d
        .block(is.image_status(cri::ImageStatusRequest {
            image: image_spec(&format!("{}/test/none:1", reg.addr)),
            verbose: false,
        }))
        .unwrap()
        .into_inner();
    assert!(st.image.is_none());

    // Filters and the streaming list.
    let filtered = |name: &str| {
        d.block(is.clone().list_images(cri::ListImagesRequest {
            filter: Some(cri::ImageFilter {
                image: image_spec(name),
            }),
        }))
        .unwrap()
        .into_inner()
        .images
    };
    assert_eq!(filtered(&other).len(), 1);
    assert!(filtered("127.0.0.1:1/no/such:image").is_empty());
    let streamed: Vec<cri::Image> = d.block(async {
        let mut s = is
            .clone()
            .stream_images(cri::StreamImagesRequest { filter: None })
            .await
            .unwrap()
            .into_inner();
        let mut all = Vec::new();
        while let Some(m) = s.message().await.unwrap() {
            all.extend(m.images);
        }
        all
    });
    assert_eq!(streamed, listed);

    // ImageFsInfo: the store root, with what the image uses.
    let fs = d
        .block(is.image_fs_info(cri::ImageFsInfoRequest {}))
        .unwrap()
        .into_inner();
    let u = &fs.image_filesystems[0];
    assert_eq!(
        u.fs_id.as_ref().unwrap().mountpoint,
        dirs.root().to_str().unwrap()
    );
    let used = u.used_bytes.as_ref().unwrap().value;
    assert!(used >= img.size, "used {used} < image size {}", img.size);
    assert!(
        u.inodes_used.as_ref().unwrap().value > 100,
        "busybox has >100 links"
    );
    assert!(u.timestamp > 0);

    // Bad input: the right codes.
    let code = |r: cri::PullImageRequest| d.block(is.clone().pull_image(r)).unwrap_err();
    let e = code(pull_req("UPPER/Case::bad", None));
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("UPPER/Case::bad"), "{}", e.message());
    let e = code(pull_req("", None));
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let e = code(pull_req(&format!("{}/test/absent:1", reg.addr), None));
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    assert!(e.message().contains("test/absent"), "{}", e.message());
    let mut r = pull_req(&image, None);
    r.image.as_mut().unwrap().runtime_handler = "no-such-handler".into();
    let e = code(r);
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let e = code(pull_req("127.0.0.1:1/nothing/listens:here", None));
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    let e = d
        .block(is.image_status(cri::ImageStatusRequest {
            image: None,
            verbose: false,
        }))
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    // RemoveImage by one tag removes every name of the image; again is fine.
    d.block(is.remove_image(cri::RemoveImageRequest {
        image: image_spec(&image),
    }))
    .unwrap();
    assert!(d
        .block(is.list_images(cri::ListImagesRequest { filter: None }))
        .unwrap()
        .into_inner()
        .images
        .is_empty());
    assert!(
        cli_images(&dirs).is_empty(),
        "berth images sees the removal"
    );
    d.block(is.remove_image(cri::RemoveImageRequest {
        image: image_spec(&image),
    }))
    .unwrap();
    d.block(is.remove_image(cri::RemoveImageRequest {
        image: image_spec(&id),
    }))
    .unwrap();
    let after = d
        .block(is.image_fs_info(cri::ImageFsInfoRequest {}))
        .unwrap()
        .into_inner();
    assert!(
        after.image_filesystems[0]
            .used_bytes
            .as_ref()
            .unwrap()
            .value
            < used,
        "the removal's GC frees the layers"
    );
    // The store is sound after all that.
    dirs.berth(&["system", "check"]);
}

#[test]
fn private_registry_with_credentials() {
    if !need_root("private_registry_with_credentials") {
        return;
    }
    let (user, pass) = ("kube", "s3cret-pass");
    let reg = TestRegistry::start_htpasswd(user, pass);
    reg.push_oci_layout_creds(layout(), "latest", "private/bb:1", user, pass);
    let dirs = Dirs::new("auth");
    let d = Daemon::start(&dirs, &dirs.config(""), &[]);
    let mut is = d.images();
    let image = format!("{}/private/bb:1", reg.addr);
    let auth = |u: &str, p: &str| cri::AuthConfig {
        username: u.into(),
        password: p.into(),
        ..Default::default()
    };

    // Without credentials, and with wrong ones: containerd's code (Unknown),
    // with the registry's refusal in the message.
    let e = d.block(is.pull_image(pull_req(&image, None))).unwrap_err();
    assert_eq!(e.code(), Code::Unknown, "{e:?}");
    assert!(e.message().contains("unauthorized"), "{}", e.message());
    let e = d
        .block(is.pull_image(pull_req(&image, Some(auth(user, "wrong")))))
        .unwrap_err();
    assert_eq!(e.code(), Code::Unknown, "{e:?}");
    assert!(e.message().contains("refused"), "{}", e.message());
    assert!(
        !e.message().contains("wrong"),
        "the password is not echoed: {}",
        e.message()
    );
    let e = d
        .block(is.pull_image(pull_req(
            &image,
            Some(cri::AuthConfig {
                registry_token: "not-a-token".into(),
                ..Default::default()
            }),
        )))
        .unwrap_err();
    assert_eq!(e.code(), Code::Unknown, "{e:?}");
    // Credentials for another registry are refused before any request.
    let mut a = auth(user, pass);
    a.server_address = "https://elsewhere.example:5000".into();
    let e = d
        .block(is.pull_image(pull_req(&image, Some(a))))
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");

    // User name and password.
    let mut a = auth(user, pass);
    a.server_address = reg.addr.clone();
    let id = d
        .block(is.pull_image(pull_req(&image, Some(a))))
        .unwrap()
        .into_inner()
        .image_ref;
    assert!(dirs.berth(&["images", "-q", "--no-trunc"]).contains(&id));
    d.block(is.remove_image(cri::RemoveImageRequest {
        image: image_spec(&id),
    }))
    .unwrap();
    // `auth`: base64 of user:password.
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    let id2 = d
        .block(is.pull_image(pull_req(
            &image,
            Some(cri::AuthConfig {
                auth: b64,
                ..Default::default()
            }),
        )))
        .unwrap()
        .into_inner()
        .image_ref;
    assert_eq!(id, id2);
    // The credentials were not kept: an anonymous pull is refused again.
    let e = d
        .block(is.pull_image(pull_req(&format!("{}/private/bb:1", reg.addr), None)))
        .unwrap_err();
    assert_eq!(e.code(), Code::Unknown, "{e:?}");
}

#[test]
fn concurrent_pulls_of_one_image() {
    if !need_root("concurrent_pulls_of_one_image") {
        return;
    }
    let reg = TestRegistry::start();
    reg.push_oci_layout(layout(), "latest", "test/bb:c");
    reg.push_oci_layout(layout(), "latest", "test/bb2:c");
    let dirs = Dirs::new("concurrent");
    let d = Daemon::start(&dirs, &dirs.config(""), &[]);
    let is = d.images();
    let a = format!("{}/test/bb:c", reg.addr);
    let b = format!("{}/test/bb2:c", reg.addr);
    let results = d.block(async {
        let mut tasks = Vec::new();
        for i in 0..8 {
            let mut c = is.clone();
            let name = if i % 4 == 3 { b.clone() } else { a.clone() };
            tasks.push(tokio::spawn(async move {
                c.pull_image(pull_req(&name, None))
                    .await
                    .map(|r| r.into_inner().image_ref)
            }));
            let mut c = is.clone();
            tasks.push(tokio::spawn(async move {
                c.list_images(cri::ListImagesRequest { filter: None })
                    .await
                    .map(|_| String::new())
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    let ids: std::collections::BTreeSet<String> = results
        .into_iter()
        .map(|r| r.expect("every call succeeds"))
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(ids.len(), 1, "one image under two names: {ids:?}");
    let rows = cli_images(&dirs);
    assert_eq!(rows.len(), 2, "{rows:?}");
    dirs.berth(&["system", "check"]);
}

/// A TCP relay to `upstream` whose first connection is held until `go`:
/// tells `arrived` when it comes in.
fn stalling_relay(upstream: String) -> (String, mpsc::Receiver<()>, mpsc::Sender<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let (arrived_tx, arrived) = mpsc::channel();
    let (go, go_rx) = mpsc::channel::<()>();
    thread::spawn(move || {
        let mut first = true;
        for s in l.incoming() {
            let Ok(client) = s else { break };
            if first {
                first = false;
                let _ = arrived_tx.send(());
                if go_rx.recv_timeout(WAIT).is_err() {
                    return;
                }
            }
            let Ok(server) = TcpStream::connect(&upstream) else {
                return;
            };
            let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let (mut c1, mut s1) = (client, server);
            thread::spawn(move || {
                let _ = std::io::copy(&mut c1, &mut s1);
                let _ = s1.shutdown(std::net::Shutdown::Write);
            });
            thread::spawn(move || {
                let mut buf = [0u8; 65536];
                loop {
                    match s2.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if c2.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = c2.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    (addr, arrived, go)
}

#[test]
fn sigterm_finishes_calls_in_flight_and_removes_the_socket() {
    if !need_root("sigterm_finishes_calls_in_flight_and_removes_the_socket") {
        return;
    }
    let reg = TestRegistry::start();
    reg.push_oci_layout(layout(), "latest", "test/bb:t");
    let (relay, arrived, go) = stalling_relay(reg.addr.clone());
    let dirs = Dirs::new("sigterm");
    let mut d = Daemon::start(&dirs, &dirs.config(""), &[]);
    let mut is = d.images();
    let image = format!("{relay}/test/bb:t");
    // A pull in flight, held at the registry.
    let pull =
        d.rt.spawn(async move { is.pull_image(pull_req(&image, None)).await });
    arrived
        .recv_timeout(WAIT)
        .expect("the pull reaches the registry");
    d.signal(nix::sys::signal::Signal::SIGTERM);
    d.wait_line("shutting down");
    // The daemon is stopping; the call in flight still completes.
    go.send(()).unwrap();
    let r = d.block(pull).unwrap();
    let id = r
        .expect("the pull in flight finishes")
        .into_inner()
        .image_ref;
    assert!(id.starts_with("sha256:"));
    assert_eq!(d.wait(), Some(0), "exit 0 after SIGTERM");
    assert!(!d.socket.exists(), "the socket is removed");
    assert!(dirs.berth(&["images", "-q", "--no-trunc"]).contains(&id));
}

#[test]
fn bad_config_and_socket_errors_are_clear() {
    if !need_root("bad_config_and_socket_errors_are_clear") {
        return;
    }
    let dirs = Dirs::new("badcfg");
    let run = |args: &[&str]| {
        let o = Command::new(berth_bin())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let bad = dirs.tmp.path().join("bad.toml");
    std::fs::write(&bad, "root = 5\n").unwrap();
    let (code, err) = run(&["daemon", "--config", bad.to_str().unwrap()]);
    assert_eq!(code, Some(125), "{err}");
    assert!(
        err.contains(bad.to_str().unwrap()) && err.contains("`root`"),
        "{err}"
    );
    let missing = dirs.tmp.path().join("missing.toml");
    let (code, err) = run(&["daemon", "--config", missing.to_str().unwrap()]);
    assert_eq!(code, Some(125), "{err}");
    assert!(err.contains("missing.toml"), "{err}");

    // A regular file where the socket goes is refused and left alone.
    let cfg = dirs.config("");
    std::fs::create_dir_all(dirs.socket().parent().unwrap()).unwrap();
    std::fs::write(dirs.socket(), "keep me").unwrap();
    let (code, err) = run(&["daemon", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, Some(125), "{err}");
    assert!(err.contains("not a socket"), "{err}");
    assert_eq!(std::fs::read_to_string(dirs.socket()).unwrap(), "keep me");
    std::fs::remove_file(dirs.socket()).unwrap();

    // A second daemon on a live socket is refused; the first keeps serving.
    let d = Daemon::start(&dirs, &cfg, &[]);
    let (code, err) = run(&["daemon", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, Some(125), "{err}");
    assert!(err.contains("another daemon"), "{err}");
    let mut rs = d.runtime();
    d.block(rs.version(cri::VersionRequest::default())).unwrap();
    // A stale socket (its daemon killed) is replaced.
    drop(d);
    std::os::unix::net::UnixListener::bind(dirs.socket())
        .map(drop)
        .unwrap();
    let d = Daemon::start(&dirs, &cfg, &[]);
    let mut rs = d.runtime();
    d.block(rs.version(cri::VersionRequest::default())).unwrap();
}
