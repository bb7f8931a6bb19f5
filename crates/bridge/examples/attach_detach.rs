//! Time attach+detach (the CNI chain's ADD+DEL takes ~314 ms on the dev host).
//!
//! `ip netns add bench-ns && cargo run -p berth-bridge --example attach_detach -- /run/netns/bench-ns 20`
//! It makes bridge `bbench0` (10.254.77.0/24), table `ip berthbench`, and a
//! temp state dir, and removes them at the end.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Instant;

use berth_bridge::{AttachRequest, Bridge, BridgeNetwork, PortMapping, Protocol};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let netns = PathBuf::from(args.next().ok_or("usage: attach_detach NETNS [N]")?);
    let n: u32 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(10);
    let state = std::env::temp_dir().join(format!("berth-bridge-bench-{}", std::process::id()));
    let bridge = Bridge::with_table(state.clone(), "berthbench");
    let net = BridgeNetwork {
        name: "bench".into(),
        bridge: "bbench0".into(),
        subnet: Ipv4Addr::new(10, 254, 77, 0),
        prefix: 24,
        gateway: Ipv4Addr::new(10, 254, 77, 1),
        mtu: None,
        ip_masq: true,
        hairpin: true,
        internal: false,
    };
    let ports = [PortMapping {
        host_ip: None,
        host_port: 47123,
        container_port: 80,
        protocol: Protocol::Tcp,
    }];
    let mut total = std::time::Duration::ZERO;
    for i in 0..n {
        let t = Instant::now();
        bridge.attach(
            &net,
            &AttachRequest {
                container_id: &format!("bench{i}"),
                netns: &netns,
                ifname: "eth0",
                ports: &ports,
                ip: None,
                mac: None,
            },
        )?;
        bridge.detach(&net, &format!("bench{i}"), "eth0")?;
        total += t.elapsed();
    }
    bridge.remove_network(&net)?;
    let _ = std::fs::remove_dir_all(&state);
    println!(
        "{n} x attach+detach: mean {:.1} ms",
        total.as_secs_f64() * 1000.0 / f64::from(n)
    );
    Ok(())
}
