//! Finding the container's command in its rootfs before starting it, so
//! that `run` can answer as docker does: exit code 127 when the command is
//! not found, 126 when it cannot be executed (125 stays berth's own
//! failures).
//!
//! The lookup is the one `execvp` would do in the container: a name with a
//! `/` is taken as a path (relative to the working directory), any other
//! name is looked up in each directory of the container's `PATH` in turn.
//! Every path is resolved inside the rootfs (`openat2` with
//! `RESOLVE_IN_ROOT`), so the image's symlinks cannot point the lookup at
//! the host.

use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use rustix::fs::{openat2, Mode, OFlags, ResolveFlags};

/// Why the command cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// No such file, or not on `PATH`.
    #[error("{0}: executable file not found in $PATH or the image")]
    NotFound(String),
    /// Found, but not something to execute.
    #[error("{0}: permission denied: not an executable file")]
    NotExecutable(String),
    /// The rootfs itself could not be read.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl CommandError {
    /// docker's exit code for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            CommandError::NotFound(_) => 127,
            CommandError::NotExecutable(_) => 126,
            CommandError::Io { .. } => 125,
        }
    }
}

/// What one candidate path is.
enum Found {
    Missing,
    Executable,
    NotExecutable,
}

fn probe(root: &File, path: &str) -> Result<Found, CommandError> {
    let rel = path.trim_start_matches('/');
    let fd = match openat2(
        root,
        if rel.is_empty() { "." } else { rel },
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR) => return Ok(Found::Missing),
        Err(e) => {
            return Err(CommandError::Io {
                context: format!("look up {path} in the container"),
                source: e.into(),
            })
        }
    };
    let st = rustix::fs::fstat(&fd).map_err(|e| CommandError::Io {
        context: format!("stat {path} in the container"),
        source: e.into(),
    })?;
    let mode = std::fs::Permissions::from_mode(st.st_mode).mode();
    let regular = mode & 0o170000 == 0o100000;
    Ok(if regular && mode & 0o111 != 0 {
        Found::Executable
    } else {
        Found::NotExecutable
    })
}

/// Checks that `argv0` can be executed in the container whose rootfs is
/// `rootfs`, with environment `env` (`KEY=VALUE`) and working directory
/// `cwd`.
pub fn check(rootfs: &Path, argv0: &str, env: &[String], cwd: &str) -> Result<(), CommandError> {
    let root = File::open(rootfs).map_err(|source| CommandError::Io {
        context: format!("open {}", rootfs.display()),
        source,
    })?;
    if argv0.is_empty() {
        return Err(CommandError::NotFound(argv0.to_string()));
    }
    let candidates: Vec<String> = if argv0.contains('/') {
        let path = if argv0.starts_with('/') {
            argv0.to_string()
        } else {
            format!("{}/{argv0}", cwd.trim_end_matches('/'))
        };
        vec![path]
    } else {
        let path = env
            .iter()
            .rev()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
        path.split(':')
            .map(|d| if d.is_empty() { "." } else { d })
            .map(|d| {
                if d.starts_with('/') {
                    format!("{}/{argv0}", d.trim_end_matches('/'))
                } else {
                    format!("{}/{d}/{argv0}", cwd.trim_end_matches('/'))
                }
            })
            .collect()
    };
    // execvp: the first executable wins; a non-executable match is
    // remembered and reported only if nothing executable follows.
    let mut seen_non_exec = false;
    for c in &candidates {
        match probe(&root, c)? {
            Found::Executable => return Ok(()),
            Found::NotExecutable => seen_non_exec = true,
            Found::Missing => {}
        }
    }
    if seen_non_exec {
        Err(CommandError::NotExecutable(argv0.to_string()))
    } else {
        Err(CommandError::NotFound(argv0.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::symlink;

    use super::*;

    fn rootfs() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        for d in ["bin", "usr/bin", "srv/tools", "data"] {
            fs::create_dir_all(r.join(d)).unwrap();
        }
        let write = |p: &str, mode: u32| {
            fs::write(r.join(p), "#!/bin/sh\n").unwrap();
            fs::set_permissions(r.join(p), fs::Permissions::from_mode(mode)).unwrap();
        };
        write("bin/sh", 0o755);
        write("usr/bin/plain", 0o644);
        write("srv/tools/run", 0o700);
        write("bin/both", 0o644);
        write("usr/bin/both", 0o755);
        fs::create_dir(r.join("usr/bin/adir")).unwrap();
        // Absolute links resolve inside the rootfs.
        symlink("/bin/sh", r.join("usr/bin/ash")).unwrap();
        symlink("/etc/passwd", r.join("usr/bin/hostfile")).unwrap();
        t
    }

    fn env(path: &str) -> Vec<String> {
        vec![format!("PATH={path}")]
    }

    #[test]
    fn finds_like_execvp() {
        let t = rootfs();
        let r = t.path();
        let path = env("/usr/bin:/bin");
        check(r, "sh", &path, "/").unwrap();
        check(r, "/bin/sh", &[], "/").unwrap();
        check(r, "ash", &path, "/").unwrap();
        check(r, "tools/run", &path, "/srv").unwrap();
        check(r, "./run", &path, "/srv/tools").unwrap();
        // A non-executable match earlier on PATH does not hide a later one.
        check(r, "both", &path, "/").unwrap();
        // Relative PATH entries are relative to the working directory.
        check(r, "run", &env("tools"), "/srv").unwrap();
    }

    #[test]
    fn not_found_is_127_and_not_executable_is_126() {
        let t = rootfs();
        let r = t.path();
        let path = env("/usr/bin:/bin");
        for (cmd, code) in [
            ("nope", 127),
            ("/bin/nope", 127),
            ("", 127),
            ("hostfile", 127),
            ("plain", 126),
            ("adir", 126),
            ("/data", 126),
        ] {
            let e = check(r, cmd, &path, "/").unwrap_err();
            assert_eq!(e.exit_code(), code, "{cmd}: {e}");
            assert!(e.to_string().starts_with(&format!("{cmd}:")), "{e}");
        }
        // Not on this PATH, although it is in the rootfs.
        assert_eq!(check(r, "run", &path, "/").unwrap_err().exit_code(), 127);
    }
}
