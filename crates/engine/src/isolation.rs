//! Isolation between bridge networks, as docker's: a container on one
//! network cannot reach a container on another through the host's routing,
//! unless it is connected to both (then the traffic stays on one bridge).
//!
//! The CNI bridge plugin has no such option, and the host forwards between
//! bridges once `ip_forward` is on, so berth keeps an nftables table of its
//! own per root (`ip berth_iso_<hash of the root>`): a set of the bridges
//! of every bridge network in the config dir, and a forward chain that
//! drops traffic entering from one of them and leaving through another.
//! Traffic within one bridge (seen on the forward hook when
//! `br_netfilter` is loaded) is accepted. A drop in any table's base chain
//! drops the packet, so the accepts of the plugins' and the fast path's
//! tables cannot undo it.
//!
//! The table is rewritten whole, in one `nft -f` transaction, when the set
//! of bridges changes; the last set written is kept in
//! `<root>/networks/isolation`, so a container's create costs one file
//! read when nothing changed.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::network::NetError;
use crate::networks::Networks;

/// The table of the root `root`.
pub fn table(root: &Path) -> String {
    // FNV-1a of the path: stable, short, and a valid nft identifier.
    let h = root
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0x811c_9dc5u32, |h, b| {
            (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
        });
    format!("berth_iso_{h:08x}")
}

fn valid_ifname(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 15
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// The nft script for `bridges`.
pub fn script(table: &str, bridges: &[String]) -> String {
    let mut s = format!("table ip {table}\ndelete table ip {table}\ntable ip {table} {{\n");
    if bridges.is_empty() {
        s.push_str("}\n");
        return s;
    }
    let names: Vec<String> = bridges.iter().map(|b| format!("\"{b}\"")).collect();
    s.push_str(&format!(
        "  set bridges {{\n    type ifname\n    elements = {{ {} }}\n  }}\n",
        names.join(", ")
    ));
    s.push_str(
        "  chain forward {\n    type filter hook forward priority filter - 10; policy accept;\n",
    );
    s.push_str("    iifname @bridges oifname @bridges jump between\n  }\n");
    s.push_str("  chain between {\n");
    for b in bridges {
        s.push_str(&format!("    iifname \"{b}\" oifname \"{b}\" accept\n"));
    }
    s.push_str("    drop\n  }\n}\n");
    s
}

/// Makes the root's table match the bridge networks of `nets`.
pub fn sync(root: &Path, nets: &Networks) -> Result<(), NetError> {
    let mut bridges: Vec<String> = nets
        .list()?
        .into_iter()
        .filter(|d| d.driver == "bridge")
        .filter_map(|d| d.bridge)
        .filter(|b| valid_ifname(b))
        .collect();
    bridges.sort();
    bridges.dedup();
    let state = root.join("networks").join("isolation");
    let want = bridges.join("\n");
    if fs::read_to_string(&state).is_ok_and(|s| s == want) {
        return Ok(());
    }
    let t = table(root);
    apply(&script(&t, &bridges))?;
    if let Some(d) = state.parent() {
        let _ = fs::create_dir_all(d);
    }
    fs::write(&state, want).map_err(|e| NetError::Io {
        context: format!("write {}", state.display()),
        source: e,
    })
}

/// Removes the root's table (and its record): for tests and uninstall.
pub fn remove(root: &Path) -> Result<(), NetError> {
    let t = table(root);
    apply(&format!("table ip {t}\ndelete table ip {t}\n"))?;
    let _ = fs::remove_file(root.join("networks").join("isolation"));
    Ok(())
}

fn apply(script: &str) -> Result<(), NetError> {
    let nft = ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("nft");
    let io = |context: &str| {
        let context = context.to_string();
        move |source| NetError::Io { context, source }
    };
    let mut child = Command::new(nft)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io("run nft for network isolation"))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(script.as_bytes())
        .map_err(io("write to nft"))?;
    let out = child.wait_with_output().map_err(io("wait for nft"))?;
    if !out.status.success() {
        return Err(NetError::Attach {
            network: "(isolation)".into(),
            message: format!(
                "nft refused the isolation rules: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_and_scripts() {
        let t = table(Path::new("/var/lib/berth"));
        assert!(t.starts_with("berth_iso_") && t.len() == 18, "{t}");
        assert_ne!(t, table(Path::new("/var/tmp/other")));
        let s = script(&t, &["berth0".into(), "berth1".into()]);
        assert!(s.contains("elements = { \"berth0\", \"berth1\" }"), "{s}");
        assert!(
            s.contains("iifname \"berth1\" oifname \"berth1\" accept"),
            "{s}"
        );
        assert!(s.trim_end().ends_with("drop\n  }\n}"), "{s}");
        // Always rewritten whole: the old table goes in the same transaction.
        assert!(s.starts_with(&format!("table ip {t}\ndelete table ip {t}\n")));
        assert!(!script(&t, &[]).contains("chain"));
        assert!(!valid_ifname("a\"b") && !valid_ifname("") && valid_ifname("berth0"));
    }
}
