//! Resolving a container's `USER` (`name`, `uid`, `name:group`, `uid:gid`)
//! against the image's `/etc/passwd` and `/etc/group`, as docker does.
//!
//! - Nothing given means root, with the gid and home of uid 0's entry if the
//!   image has one.
//! - A name must be in `/etc/passwd`; a number need not be (its gid is then
//!   0 and its home `/`).
//! - A group, when given, replaces the passwd entry's gid; a group name must
//!   be in `/etc/group`, a number need not be.
//! - The additional gids are those of every group in `/etc/group` that lists
//!   the user's name, as `initgroups(3)` would give it.
//!
//! This module only parses text: the caller reads the two files from the
//! container's rootfs (resolved inside it, since an image's `/etc/passwd` may
//! be a symlink) and passes `None` for a file that is missing.

/// A `USER` that cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    /// A user name that `/etc/passwd` does not have.
    #[error("unable to find user {0}: no matching entries in passwd file")]
    NoUser(String),
    /// A group name that `/etc/group` does not have.
    #[error("unable to find group {0}: no matching entries in group file")]
    NoGroup(String),
    /// An empty name, or a number out of range.
    #[error("invalid user specification {0:?}")]
    Invalid(String),
}

/// What a `USER` resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    /// The uid.
    pub uid: u32,
    /// The primary gid.
    pub gid: u32,
    /// Supplementary gids, sorted, without the primary one.
    pub additional_gids: Vec<u32>,
    /// `HOME` for the process.
    pub home: String,
}

/// One `/etc/passwd` line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

/// One `/etc/group` line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

/// The well-formed lines of a passwd file (comments, blank and malformed
/// lines are skipped, as libc does).
fn passwd_entries(text: &str) -> Vec<PasswdEntry<'_>> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 7 {
                return None;
            }
            Some(PasswdEntry {
                name: f[0],
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f[5],
            })
        })
        .collect()
}

/// The well-formed lines of a group file.
fn group_entries(text: &str) -> Vec<GroupEntry<'_>> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 4 {
                return None;
            }
            Some(GroupEntry {
                name: f[0],
                gid: f[2].parse().ok()?,
                members: f[3]
                    .split(',')
                    .map(str::trim)
                    .filter(|m| !m.is_empty())
                    .collect(),
            })
        })
        .collect()
}

/// A numeric id, or None for a name. Refuses what is numeric but not a
/// valid id.
fn numeric(s: &str, whole: &str) -> Result<Option<u32>, UserError> {
    if s.is_empty() {
        return Err(UserError::Invalid(whole.to_string()));
    }
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    s.parse::<u32>()
        .map(Some)
        .map_err(|_| UserError::Invalid(whole.to_string()))
}

/// Resolves `spec` (the image's `User` or `--user`; empty means root).
pub fn resolve(
    spec: &str,
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<ResolvedUser, UserError> {
    let users = passwd.map(passwd_entries).unwrap_or_default();
    let groups = group.map(group_entries).unwrap_or_default();
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    // The user: by name (must exist) or by number (may not).
    let user_part = if user_part.is_empty() && group_part.is_none() {
        "0"
    } else {
        user_part
    };
    let (uid, mut gid, home, name) = match numeric(user_part, spec)? {
        Some(uid) => match users.iter().find(|e| e.uid == uid) {
            Some(e) => (uid, e.gid, e.home.to_string(), Some(e.name)),
            None => (uid, 0, "/".to_string(), None),
        },
        None => match users.iter().find(|e| e.name == user_part) {
            Some(e) => (e.uid, e.gid, e.home.to_string(), Some(e.name)),
            None => return Err(UserError::NoUser(user_part.to_string())),
        },
    };
    if let Some(g) = group_part {
        gid = match numeric(g, spec)? {
            Some(gid) => gid,
            None => match groups.iter().find(|e| e.name == g) {
                Some(e) => e.gid,
                None => return Err(UserError::NoGroup(g.to_string())),
            },
        };
    }
    let mut additional_gids: Vec<u32> = match name {
        Some(n) => groups
            .iter()
            .filter(|g| g.members.contains(&n) && g.gid != gid)
            .map(|g| g.gid)
            .collect(),
        None => Vec::new(),
    };
    additional_gids.sort_unstable();
    additional_gids.dedup();
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
        home: if home.is_empty() { "/".into() } else { home },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/sh
# a comment
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
broken line
www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin
app:x:1000:1000::/home/app:/bin/sh
nohome:x:1001:1001:::/bin/sh
";
    const GROUP: &str = "\
root:x:0:
daemon:x:1:
www-data:x:33:app
app:x:1000:
audio:x:29:app,other
video:x:44: other , app
bad
";

    fn r(spec: &str) -> Result<ResolvedUser, UserError> {
        resolve(spec, Some(PASSWD), Some(GROUP))
    }

    fn user(uid: u32, gid: u32, extra: &[u32], home: &str) -> ResolvedUser {
        ResolvedUser {
            uid,
            gid,
            additional_gids: extra.to_vec(),
            home: home.into(),
        }
    }

    #[test]
    fn names_numbers_and_groups() {
        assert_eq!(r("").unwrap(), user(0, 0, &[], "/root"));
        assert_eq!(r("root").unwrap(), user(0, 0, &[], "/root"));
        assert_eq!(
            r("app").unwrap(),
            user(1000, 1000, &[29, 33, 44], "/home/app")
        );
        assert_eq!(
            r("1000").unwrap(),
            user(1000, 1000, &[29, 33, 44], "/home/app")
        );
        assert_eq!(
            r("app:audio").unwrap(),
            user(1000, 29, &[33, 44], "/home/app")
        );
        assert_eq!(
            r("app:5").unwrap(),
            user(1000, 5, &[29, 33, 44], "/home/app")
        );
        assert_eq!(r("www-data").unwrap(), user(33, 33, &[], "/var/www"));
        // Numbers need no entry; a bare group keeps root.
        assert_eq!(r("4242").unwrap(), user(4242, 0, &[], "/"));
        assert_eq!(r("4242:4343").unwrap(), user(4242, 4343, &[], "/"));
        assert_eq!(
            r(":video").unwrap_err(),
            UserError::Invalid(":video".into())
        );
        assert_eq!(r("nohome").unwrap().home, "/");
    }

    #[test]
    fn missing_files_and_bad_specs() {
        assert_eq!(resolve("", None, None).unwrap(), user(0, 0, &[], "/"));
        assert_eq!(resolve("7:8", None, None).unwrap(), user(7, 8, &[], "/"));
        assert_eq!(
            resolve("app", None, None).unwrap_err(),
            UserError::NoUser("app".into())
        );
        assert_eq!(
            r("nobody").unwrap_err().to_string(),
            "unable to find user nobody: no matching entries in passwd file"
        );
        assert_eq!(
            r("app:wheel").unwrap_err(),
            UserError::NoGroup("wheel".into())
        );
        assert_eq!(
            r("99999999999").unwrap_err(),
            UserError::Invalid("99999999999".into())
        );
        assert_eq!(r("app:").unwrap_err(), UserError::Invalid("app:".into()));
    }
}
