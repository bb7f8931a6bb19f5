//! Device rules: validation of the OCI rules, and an emulation of the cgroup v1
//! devices controller that turns an ordered rule list into a default plus a
//! set of exceptions. Both backends use it: v1 writes the result to
//! devices.deny/devices.allow, v2 compiles it to a BPF program.

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use crate::error::Error;

/// Access bits, as in `BPF_DEVCG_ACC_*`.
pub const ACC_MKNOD: u32 = 1;
/// read
pub const ACC_READ: u32 = 2;
/// write
pub const ACC_WRITE: u32 = 4;
/// all three
pub const ACC_ALL: u32 = ACC_MKNOD | ACC_READ | ACC_WRITE;

/// Device kind of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DevKind {
    /// every device (only in a reset rule)
    All,
    /// block
    Block,
    /// character
    Char,
}

/// A validated device rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rule {
    /// allow or deny
    pub allow: bool,
    /// kind
    pub kind: DevKind,
    /// None = any
    pub major: Option<u32>,
    /// None = any
    pub minor: Option<u32>,
    /// ACC_* bits
    pub access: u32,
}

fn access_bits(s: &str) -> Option<u32> {
    let mut a = 0;
    for c in s.chars() {
        a |= match c {
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            'm' => ACC_MKNOD,
            _ => return None,
        };
    }
    Some(a)
}

pub(crate) fn access_string(a: u32) -> String {
    let mut s = String::new();
    if a & ACC_READ != 0 {
        s.push('r');
    }
    if a & ACC_WRITE != 0 {
        s.push('w');
    }
    if a & ACC_MKNOD != 0 {
        s.push('m');
    }
    s
}

impl Rule {
    /// Validate one OCI rule. Type `a` (or none) is the wildcard; only `a`, `b`, `c` are valid.
    pub fn from_oci(r: &LinuxDeviceCgroup) -> Result<Rule, Error> {
        let kind = match r.typ() {
            None | Some(LinuxDeviceType::A) => DevKind::All,
            Some(LinuxDeviceType::B) => DevKind::Block,
            Some(LinuxDeviceType::C) => DevKind::Char,
            Some(t) => {
                return Err(Error::invalid(
                    "linux.resources.devices[].type",
                    format!("{:?}", t.as_str()),
                    "the device cgroup only knows a, b and c",
                ))
            }
        };
        let num = |v: Option<i64>, what: &str| -> Result<Option<u32>, Error> {
            match v {
                None | Some(-1) => Ok(None),
                Some(n) if (0..=u32::MAX as i64).contains(&n) => Ok(Some(n as u32)),
                Some(n) => Err(Error::invalid(
                    format!("linux.resources.devices[].{what}"),
                    n,
                    "must be -1 (any) or 0..=4294967295",
                )),
            }
        };
        let access_str = r.access().clone().unwrap_or_else(|| "rwm".to_string());
        let access = if access_str.is_empty() {
            ACC_ALL
        } else {
            access_bits(&access_str).ok_or_else(|| {
                Error::invalid(
                    "linux.resources.devices[].access",
                    format!("{access_str:?}"),
                    "only the letters r, w and m are allowed",
                )
            })?
        };
        Ok(Rule {
            allow: r.allow(),
            kind,
            major: num(r.major(), "major")?,
            minor: num(r.minor(), "minor")?,
            access,
        })
    }

    /// The v1 file syntax: `c 1:3 rwm`.
    pub fn v1_string(&self) -> String {
        let t = match self.kind {
            DevKind::All => "a",
            DevKind::Block => "b",
            DevKind::Char => "c",
        };
        let n = |v: Option<u32>| v.map(|v| v.to_string()).unwrap_or_else(|| "*".into());
        format!(
            "{t} {}:{} {}",
            n(self.major),
            n(self.minor),
            access_string(self.access)
        )
    }
}

/// Validate a whole rule list.
pub fn rules_from_oci(rules: &[LinuxDeviceCgroup]) -> Result<Vec<Rule>, Error> {
    rules.iter().map(Rule::from_oci).collect()
}

/// The state of a v1 devices cgroup: a default and exceptions to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emulator {
    /// true: everything is allowed except the exceptions (deny-listed)
    pub default_allow: bool,
    /// exceptions, each with `allow == !default_allow`
    pub exceptions: Vec<Rule>,
}

impl Default for Emulator {
    /// A fresh v1 cgroup below an unrestricted parent allows everything.
    fn default() -> Self {
        Emulator {
            default_allow: true,
            exceptions: vec![],
        }
    }
}

impl Emulator {
    /// Apply rules in order, as the kernel does for writes to devices.allow/deny.
    pub fn apply(&mut self, rule: &Rule) {
        if rule.kind == DevKind::All {
            // "a" resets the cgroup whatever follows it
            self.default_allow = rule.allow;
            self.exceptions.clear();
            return;
        }
        let same = |e: &Rule| e.kind == rule.kind && e.major == rule.major && e.minor == rule.minor;
        if rule.allow == self.default_allow {
            // removes access from an exact-match exception
            for e in self.exceptions.iter_mut().filter(|e| same(e)) {
                e.access &= !rule.access;
            }
            self.exceptions.retain(|e| e.access != 0);
        } else if let Some(e) = self.exceptions.iter_mut().find(|e| same(e)) {
            e.access |= rule.access;
        } else {
            self.exceptions.push(*rule);
        }
    }

    /// Emulate a whole list starting from a fresh cgroup.
    pub fn from_rules(rules: &[Rule]) -> Emulator {
        let mut e = Emulator::default();
        for r in rules {
            e.apply(r);
        }
        e
    }

    /// Parse v1 `devices.list`. In allow-all mode the kernel shows only `a *:* rwm`.
    pub fn from_v1_list(s: &str) -> Emulator {
        let mut e = Emulator {
            default_allow: false,
            exceptions: vec![],
        };
        for line in s.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() != 3 {
                continue;
            }
            let kind = match f[0] {
                "a" => {
                    e.default_allow = true;
                    e.exceptions.clear();
                    return e;
                }
                "b" => DevKind::Block,
                "c" => DevKind::Char,
                _ => continue,
            };
            let (ma, mi) = f[1].split_once(':').unwrap_or(("*", "*"));
            let n = |s: &str| s.parse::<u32>().ok();
            e.exceptions.push(Rule {
                allow: true,
                kind,
                major: n(ma),
                minor: n(mi),
                access: access_bits(f[2]).unwrap_or(0),
            });
        }
        e
    }

    /// The v1 writes that produce this state from any state: (file, line).
    pub fn v1_writes(&self) -> Vec<(String, String)> {
        let mut w = vec![(
            if self.default_allow {
                "devices.allow"
            } else {
                "devices.deny"
            }
            .to_string(),
            "a".to_string(),
        )];
        for e in &self.exceptions {
            w.push((
                if e.allow {
                    "devices.allow"
                } else {
                    "devices.deny"
                }
                .to_string(),
                e.v1_string(),
            ));
        }
        w
    }

    /// Does the state allow this access? Mirrors the kernel: allow-exceptions
    /// must cover all of the requested access, deny-exceptions match on any overlap.
    pub fn allows(&self, kind: DevKind, major: u32, minor: u32, access: u32) -> bool {
        let matches = |e: &Rule| {
            e.kind == kind
                && e.major.is_none_or(|m| m == major)
                && e.minor.is_none_or(|m| m == minor)
        };
        if self.default_allow {
            !self
                .exceptions
                .iter()
                .any(|e| matches(e) && e.access & access != 0)
        } else {
            self.exceptions
                .iter()
                .any(|e| matches(e) && access & !e.access == 0)
        }
    }
}

/// The devices every container gets in runc's default allow list, as OCI rules
/// (for the runtime to append after the spec's own rules, as runc does).
pub fn default_allowed_devices() -> Vec<LinuxDeviceCgroup> {
    let mk = |t: LinuxDeviceType, major: Option<i64>, minor: Option<i64>, access: &str| {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(true);
        r.set_typ(Some(t));
        r.set_major(major);
        r.set_minor(minor);
        r.set_access(Some(access.to_string()));
        r
    };
    use LinuxDeviceType::{B, C};
    vec![
        mk(C, None, None, "m"),
        mk(B, None, None, "m"),
        mk(C, Some(1), Some(3), "rwm"),    // /dev/null
        mk(C, Some(1), Some(8), "rwm"),    // /dev/random
        mk(C, Some(1), Some(7), "rwm"),    // /dev/full
        mk(C, Some(5), Some(0), "rwm"),    // /dev/tty
        mk(C, Some(1), Some(5), "rwm"),    // /dev/zero
        mk(C, Some(1), Some(9), "rwm"),    // /dev/urandom
        mk(C, Some(136), None, "rwm"),     // /dev/pts/*
        mk(C, Some(5), Some(2), "rwm"),    // /dev/ptmx
        mk(C, Some(10), Some(200), "rwm"), // /dev/net/tun
    ]
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn oci(
        allow: bool,
        t: Option<LinuxDeviceType>,
        ma: Option<i64>,
        mi: Option<i64>,
        acc: &str,
    ) -> LinuxDeviceCgroup {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(allow);
        r.set_typ(t);
        r.set_major(ma);
        r.set_minor(mi);
        r.set_access(Some(acc.to_string()));
        r
    }

    #[test]
    fn validation() {
        let e =
            Rule::from_oci(&oci(true, Some(LinuxDeviceType::P), None, None, "rwm")).unwrap_err();
        assert!(e.to_string().contains("\"p\""), "{e}");
        let e = Rule::from_oci(&oci(
            true,
            Some(LinuxDeviceType::C),
            Some(1),
            Some(3),
            "rwx",
        ))
        .unwrap_err();
        assert!(e.to_string().contains("rwx"), "{e}");
        let e =
            Rule::from_oci(&oci(true, Some(LinuxDeviceType::C), Some(-5), None, "r")).unwrap_err();
        assert!(e.to_string().contains("major"), "{e}");
    }

    #[test]
    fn emulation_follows_kernel() {
        use LinuxDeviceType::{A, C};
        let rules = rules_from_oci(&[
            oci(true, Some(C), Some(9), Some(9), "rwm"),
            oci(false, Some(A), None, None, "rwm"),
            oci(true, Some(C), Some(1), Some(3), "rw"),
            oci(true, Some(C), Some(1), Some(3), "m"),
            oci(true, Some(C), Some(1), Some(5), "rwm"),
            oci(false, Some(C), Some(1), Some(5), "w"),
        ])
        .unwrap();
        let e = Emulator::from_rules(&rules);
        assert!(!e.default_allow);
        assert_eq!(e.exceptions.len(), 2);
        assert!(e.allows(DevKind::Char, 1, 3, ACC_READ | ACC_WRITE | ACC_MKNOD));
        assert!(e.allows(DevKind::Char, 1, 5, ACC_READ));
        assert!(!e.allows(DevKind::Char, 1, 5, ACC_WRITE));
        assert!(!e.allows(DevKind::Char, 9, 9, ACC_READ));
        assert_eq!(
            e.v1_writes(),
            vec![
                ("devices.deny".to_string(), "a".to_string()),
                ("devices.allow".to_string(), "c 1:3 rwm".to_string()),
                ("devices.allow".to_string(), "c 1:5 rm".to_string()),
            ]
        );
        let back = Emulator::from_v1_list("c 1:3 rwm\nc 1:5 rm\n");
        assert_eq!(back, e);
    }

    #[test]
    fn deny_list_overlap() {
        use LinuxDeviceType::{A, C};
        let rules = rules_from_oci(&[
            oci(true, Some(A), None, None, "rwm"),
            oci(false, Some(C), Some(1), Some(3), "w"),
        ])
        .unwrap();
        let e = Emulator::from_rules(&rules);
        assert!(e.default_allow);
        assert!(!e.allows(DevKind::Char, 1, 3, ACC_READ | ACC_WRITE));
        assert!(e.allows(DevKind::Char, 1, 3, ACC_READ));
        assert!(e.allows(DevKind::Block, 8, 0, ACC_ALL));
    }
}
