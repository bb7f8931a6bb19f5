//! A private CNI config dir for one test, holding its own default network
//! `berth` (a bridge and a subnet no other test uses), so containers that
//! tests start on the default bridge network never touch the host's
//! `berth0` or `/etc/cni/net.d`. Dropping it removes the bridges, the fast
//! path's nftables tables and the host-local reservations it made.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::json;

/// One test's networks.
#[derive(Debug)]
pub struct TestNet {
    /// The config dir (`--network-config-dir`).
    pub dir: PathBuf,
    /// The default network's bridge.
    pub bridge: String,
    /// The default network's subnet, `A.B.C.0/24`.
    pub subnet: String,
    /// The default network's gateway (the host's address on the bridge).
    pub gateway: String,
    /// The third octet base of the subnets this test may use.
    base: (u8, u8),
    /// Extra bridges and network names to clean.
    extra: std::cell::RefCell<Vec<(String, String)>>,
}

fn hash(s: &str) -> u32 {
    // FNV-1a: stable across runs, spreads test names over the range.
    s.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// The host's routes, to avoid.
fn host_routes() -> String {
    Command::new("ip")
        .args(["-4", "route", "show", "table", "all"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

impl TestNet {
    /// A config dir under `parent` with a default network for test `tag`
    /// (already unique, from [`crate::unique`]).
    pub fn new(parent: &Path, tag: &str) -> TestNet {
        let dir = parent.join("net.d");
        fs::create_dir_all(&dir).expect("create net.d");
        let routes = host_routes();
        // 10.200.0.0 to 10.249.255.0: /24s chosen by the test's name, moved
        // on while the host routes one of them.
        let mut h = hash(tag);
        let (a, b) = loop {
            let a = 200 + (h % 50) as u8;
            let b = ((h >> 8) % 256) as u8;
            if !routes.contains(&format!("10.{a}.{b}.")) {
                break (a, b);
            }
            h = h.wrapping_mul(31).wrapping_add(7);
        };
        let bridge = format!("bt{:08x}", hash(&format!("{tag}-br")));
        let net = TestNet {
            subnet: format!("10.{a}.{b}.0/24"),
            gateway: format!("10.{a}.{b}.1"),
            bridge,
            dir,
            base: (a, b),
            extra: Default::default(),
        };
        net.write_bridge("berth", &net.bridge.clone(), &net.subnet.clone(), true);
        net
    }

    /// A subnet for another network of this test: `10.A.B+n.0/24`.
    pub fn subnet(&self, n: u8) -> String {
        format!("10.{}.{}.0/24", self.base.0, self.base.1.wrapping_add(n))
    }

    /// Writes `NAME.conflist`: berth's bridge shape on `bridge` and
    /// `subnet`, its host-local data kept under the config dir.
    pub fn write_bridge(&self, name: &str, bridge: &str, subnet: &str, masq: bool) {
        let gw = subnet.replace(".0/24", ".1");
        let v = json!({
            "cniVersion": "1.0.0",
            "name": name,
            "berth": {"test": true},
            "plugins": [
                {"type": "bridge", "bridge": bridge, "isGateway": true, "ipMasq": masq,
                 "hairpinMode": true,
                 "ipam": {"type": "host-local",
                          "ranges": [[{"subnet": subnet, "gateway": gw}]],
                          "routes": [{"dst": "0.0.0.0/0"}],
                          "dataDir": self.dir.join("ipam")}},
                {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true},
                {"type": "firewall"},
                {"type": "tuning"}
            ]
        });
        fs::write(
            self.dir.join(format!("{name}.conflist")),
            serde_json::to_vec_pretty(&v).unwrap(),
        )
        .unwrap();
        self.clean_later(bridge, name);
    }

    /// Removes `bridge` and network `name`'s host-local data on drop.
    pub fn clean_later(&self, bridge: &str, name: &str) {
        self.extra
            .borrow_mut()
            .push((bridge.to_string(), name.to_string()));
    }

    /// The links enslaved to `bridge` (veths of containers).
    pub fn ports_of(bridge: &str) -> Vec<String> {
        let o = Command::new("ip")
            .args(["-o", "link", "show", "master", bridge])
            .stderr(Stdio::null())
            .output()
            .expect("ip link");
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_string())
            .collect()
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        for (bridge, name) in self.extra.borrow().iter() {
            for p in TestNet::ports_of(bridge) {
                let _ = Command::new("ip").args(["link", "del", &p]).status();
            }
            let _ = Command::new("ip")
                .args(["link", "del", bridge])
                .stderr(Stdio::null())
                .status();
            let _ = Command::new("nft")
                .args(["delete", "table", "ip", &format!("berth_{bridge}")])
                .stderr(Stdio::null())
                .status();
            let _ = fs::remove_dir_all(Path::new("/var/lib/cni/networks").join(name));
        }
    }
}
