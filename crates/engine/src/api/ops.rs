//! The other container operations of the service API: start, stop,
//! restart, kill, rm (with anonymous volumes), top, port, exec, cp,
//! export, commit.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use berth_image::platform::Platform;

use super::create::{environment, signal_number};
use super::{io_err, ApiError};
use crate::container::{Container, ContainerError, Engine, Status};
use crate::ports::PortMapping;

/// A process to run in a running container (`exec`).
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    /// The command and its arguments.
    pub command: Vec<String>,
    /// Variables (`KEY=VALUE`, or `KEY` from `client_env`).
    pub env: Vec<String>,
    /// Files of variables, read before `env`.
    pub env_files: Vec<PathBuf>,
    /// Where bare `KEY`s are looked up.
    pub client_env: BTreeMap<String, String>,
    /// The user (name|uid[:group|gid]); the container's when None.
    pub user: Option<String>,
    /// The working directory (absolute); the container's when None.
    pub workdir: Option<String>,
    /// A terminal.
    pub tty: bool,
    /// Run in the background: the call returns once it started.
    pub detach: bool,
}

/// Where an exec'd process's stdio goes (ignored with `detach`).
#[derive(Debug)]
pub struct ExecStdio {
    /// Its stdin.
    pub stdin: Stdio,
    /// Its stdout.
    pub stdout: Stdio,
    /// Its stderr.
    pub stderr: Stdio,
}

impl ExecStdio {
    /// This process's own stdio, stdin only when `stdin`.
    pub fn inherit(stdin: bool) -> ExecStdio {
        ExecStdio {
            stdin: if stdin {
                Stdio::inherit()
            } else {
                Stdio::null()
            },
            stdout: Stdio::inherit(),
            stderr: Stdio::inherit(),
        }
    }
}

/// Sets `var` (`KEY=VALUE`) in `env`, replacing one of the same name.
pub fn set_env(env: &mut Vec<String>, var: &str) {
    let key = var.split_once('=').map_or(var, |(k, _)| k);
    let prefix = format!("{key}=");
    match env.iter_mut().find(|e| e.starts_with(&prefix)) {
        Some(e) => *e = var.to_string(),
        None => env.push(var.to_string()),
    }
}

/// One side of a copy.
#[derive(Debug, Clone, Copy)]
pub enum CopyEnd<'a> {
    /// An absolute path on the host.
    Host(&'a str),
    /// A path in the container.
    Container(&'a Container, &'a str),
}

/// What a commit makes.
#[derive(Debug, Clone)]
pub struct CommitRequest {
    /// Image name, author, message, changes.
    pub options: crate::commit::CommitOptions,
    /// Pause a running container while committing.
    pub pause: bool,
}

impl Engine {
    /// Starts `c` unless it is already active.
    pub fn start_container(&self, c: &Container) -> Result<(), ApiError> {
        if self.state(c).is_active() {
            return Ok(());
        }
        self.start(c, false, &[])?;
        Ok(())
    }

    /// Stops `c`: its stop signal, then SIGKILL after `timeout` seconds
    /// (its own when None).
    pub fn stop_container(&self, c: &Container, timeout: Option<u32>) -> Result<(), ApiError> {
        self.stop(c, timeout)?;
        Ok(())
    }

    /// Stops `c`, waits for its monitor's end (pidfd), and starts it again.
    pub fn restart_container(&self, c: &Container, timeout: Option<u32>) -> Result<(), ApiError> {
        self.stop(c, timeout)?;
        self.wait_monitor_gone(c, Duration::from_secs(30));
        self.start(c, false, &[])?;
        Ok(())
    }

    /// Sends `signal` (a name or number) to `c`'s init.
    pub fn kill_container(&self, c: &Container, signal: &str) -> Result<(), ApiError> {
        let n = signal_number(signal)
            .map_err(|e| ApiError::Invalid(format!("invalid --signal {signal:?}: {e}")))?;
        self.kill(c, &n.to_string())?;
        Ok(())
    }

    /// Removes `c` (killing it first with `force`) and, with `volumes`,
    /// its anonymous volumes that no other container of this namespace
    /// mounts.
    pub fn remove_container(
        &self,
        c: &Container,
        force: bool,
        volumes: bool,
    ) -> Result<(), ApiError> {
        let vols = self.remove(c, force)?;
        if volumes && !vols.is_empty() {
            let records: Vec<_> = self.list()?.into_iter().map(|c| c.record).collect();
            let in_use = crate::volumes::in_use(&records);
            let store = self.volumes();
            for v in &vols {
                if !in_use.contains(v) {
                    store.remove(v, &in_use)?;
                }
            }
        }
        Ok(())
    }

    /// The volumes this namespace's containers mount.
    pub fn volumes_in_use(&self) -> Result<std::collections::BTreeSet<String>, ApiError> {
        let records: Vec<_> = self.list()?.into_iter().map(|c| c.record).collect();
        Ok(crate::volumes::in_use(&records))
    }

    fn running(&self, c: &Container, what: &str) -> Result<(), ApiError> {
        let st = self.state(c);
        if matches!(st.status, Status::Running | Status::Paused) {
            return Ok(());
        }
        Err(ContainerError::State {
            name: c.name().to_string(),
            state: st.status,
            what: what.to_string(),
        }
        .into())
    }

    /// The runtime's `ps ID [ps options]` of `c` (runc's interface: ps's
    /// rows of the container's processes).
    pub fn top(&self, c: &Container, ps_args: &[String]) -> Result<Vec<u8>, ApiError> {
        self.running(c, "top needs a running container")?;
        let rt = self.runtime_of(c);
        let out = Command::new(&rt)
            .arg("--root")
            .arg(self.runtime_root())
            .arg("ps")
            .arg(c.id())
            .args(ps_args)
            .stdin(Stdio::null())
            .output()
            .map_err(io_err(format!("running {}", rt.display())))?;
        if !out.status.success() {
            return Err(ContainerError::Runtime {
                name: c.name().to_string(),
                runtime: rt.display().to_string(),
                command: "ps".into(),
                message: crate::container::runtime_error_message(&out.stderr),
            }
            .into());
        }
        Ok(out.stdout)
    }

    /// `c`'s published ports; with `port` (`PORT[/PROTO]`, tcp by default)
    /// only those of that container port, which must be published.
    pub fn published_ports(
        &self,
        c: &Container,
        port: Option<&str>,
    ) -> Result<Vec<PortMapping>, ApiError> {
        let ports = self.net_state(c.id()).ports;
        let Some(p) = port else { return Ok(ports) };
        let want = if p.contains('/') {
            p.to_string()
        } else {
            format!("{p}/tcp")
        };
        let found: Vec<_> = ports
            .into_iter()
            .filter(|m| format!("{}/{}", m.container_port, m.protocol) == want)
            .collect();
        if found.is_empty() {
            return Err(ApiError::Invalid(format!(
                "no public port {want:?} published for {}",
                c.name()
            )));
        }
        Ok(found)
    }

    /// Runs a process in running container `c` through its runtime, with
    /// the container's process settings changed as `r` says; returns its
    /// exit code (128+N for signal N), or 0 once a detached one started.
    pub fn exec(&self, c: &Container, r: &ExecRequest, io: ExecStdio) -> Result<i32, ApiError> {
        let st = self.state(c);
        if st.status != Status::Running {
            return Err(ContainerError::State {
                name: c.name().to_string(),
                state: st.status,
                what: "exec needs a running container".into(),
            }
            .into());
        }
        let Some(argv0) = r.command.first() else {
            return Err(ApiError::Invalid("exec needs a command".into()));
        };
        let bundle = self.bundle_dir(c.id());
        let spec: serde_json::Value = serde_json::from_slice(
            &std::fs::read(bundle.join("config.json"))
                .map_err(io_err("reading the container's config"))?,
        )
        .map_err(|e| io_err("parsing the container's config")(std::io::Error::other(e)))?;
        let mut process = spec["process"].clone();
        let mut env: Vec<String> =
            serde_json::from_value(process["env"].clone()).unwrap_or_default();
        for e in environment(&r.env_files, &r.env, &r.client_env)? {
            if e.split_once('=').is_none_or(|(k, _)| k.is_empty()) {
                return Err(ApiError::Invalid(format!(
                    "invalid environment variable {e:?}"
                )));
            }
            set_env(&mut env, &e);
        }
        let rootfs = bundle.join("rootfs");
        if let Some(u) = &r.user {
            let read = |p| {
                crate::bundle::read_in_root(&rootfs, p)
                    .map_err(|e| ApiError::Invalid(format!("exec in {}: {e}", c.name())))
            };
            let passwd = read("etc/passwd")?;
            let group = read("etc/group")?;
            let u = crate::user::resolve(u, passwd.as_deref(), group.as_deref())
                .map_err(|e| ApiError::Invalid(format!("exec in {}: {e}", c.name())))?;
            process["user"] = serde_json::json!({
                "uid": u.uid, "gid": u.gid, "additionalGids": u.additional_gids,
            });
            set_env(&mut env, &format!("HOME={}", u.home));
        }
        if let Some(w) = &r.workdir {
            if !w.starts_with('/') {
                return Err(ApiError::Invalid(format!(
                    "the working directory {w:?} is invalid: it needs to be an absolute path"
                )));
            }
            process["cwd"] = w.clone().into();
        }
        if r.tty {
            set_env(&mut env, "TERM=xterm");
        }
        let cwd = process["cwd"].as_str().unwrap_or("/").to_string();
        crate::command::check(&rootfs, argv0, &env, &cwd).map_err(ContainerError::Command)?;
        process["args"] = serde_json::to_value(&r.command).expect("strings");
        process["env"] = serde_json::to_value(&env).expect("strings");
        process["terminal"] = r.tty.into();
        let mut file = tempfile::Builder::new()
            .prefix("exec-")
            .suffix(".json")
            .tempfile_in(self.dir(c.id()))
            .map_err(io_err("writing the exec process"))?;
        file.write_all(process.to_string().as_bytes())
            .map_err(io_err("writing the exec process"))?;
        let rt = self.runtime_of(c);
        let (mut cmd, _view) = crate::container::sealed_command(&rt);
        cmd.arg("--root")
            .arg(self.runtime_root())
            .arg("exec")
            .arg("--process")
            .arg(file.path());
        if r.detach {
            cmd.arg("--detach");
        }
        cmd.arg(c.id());
        if r.detach {
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
        } else {
            cmd.stdin(io.stdin).stdout(io.stdout).stderr(io.stderr);
        }
        let out = cmd
            .spawn()
            .map_err(io_err(format!("running {}", rt.display())))?;
        let (st, stderr) = if r.detach {
            let o = out
                .wait_with_output()
                .map_err(io_err(format!("running {}", rt.display())))?;
            (o.status, o.stderr)
        } else {
            let mut child = out;
            (
                child
                    .wait()
                    .map_err(io_err(format!("running {}", rt.display())))?,
                Vec::new(),
            )
        };
        if r.detach && !st.success() {
            return Err(ContainerError::Runtime {
                name: c.name().to_string(),
                runtime: rt.display().to_string(),
                command: "exec --detach".into(),
                message: crate::container::runtime_error_message(&stderr),
            }
            .into());
        }
        Ok(st
            .code()
            .or_else(|| std::os::unix::process::ExitStatusExt::signal(&st).map(|s| 128 + s))
            .unwrap_or(125))
    }

    /// `c`'s root file system as mounted for it.
    fn rootfs(&self, c: &Container) -> PathBuf {
        self.bundle_dir(c.id()).join("rootfs")
    }

    /// Copies between a container and the host (docker's `cp` rules).
    pub fn copy(
        &self,
        src: CopyEnd<'_>,
        dst: CopyEnd<'_>,
        o: crate::files::CopyOptions,
    ) -> Result<(), ApiError> {
        use crate::files::{self, Location};
        let host = Path::new("/");
        let (src_root, src_path, src_side, dst_root, dst_path, dst_side, context) = match (src, dst)
        {
            (CopyEnd::Container(c, p), CopyEnd::Host(h)) => (
                self.rootfs(c),
                p,
                format!("container {}", c.name()),
                host.to_path_buf(),
                h,
                "the host".to_string(),
                format!("copying {p} out of {}", c.name()),
            ),
            (CopyEnd::Host(h), CopyEnd::Container(c, p)) => (
                host.to_path_buf(),
                h,
                "the host".to_string(),
                self.rootfs(c),
                p,
                format!("container {}", c.name()),
                format!("copying {h} into {}", c.name()),
            ),
            (CopyEnd::Container(..), CopyEnd::Container(..)) => {
                return Err(ApiError::Invalid(
                    "copying between containers is not supported".into(),
                ))
            }
            (CopyEnd::Host(_), CopyEnd::Host(_)) => {
                return Err(ApiError::Invalid(
                    "one of the paths must name a container: CONTAINER:PATH".into(),
                ))
            }
        };
        files::copy(
            &Location {
                root: &src_root,
                path: src_path,
                side: &src_side,
            },
            &Location {
                root: &dst_root,
                path: dst_path,
                side: &dst_side,
            },
            o,
        )
        .map_err(|source| ApiError::Files { context, source })
    }

    /// Writes `path` of `c` as a tar stream (named `name` in it; its
    /// contents only when None).
    pub fn copy_out_tar(
        &self,
        c: &Container,
        path: &str,
        follow_link: bool,
        out: impl Write,
    ) -> Result<(), ApiError> {
        let rootfs = self.rootfs(c);
        let side = format!("container {}", c.name());
        let last = Path::new(path)
            .file_name()
            .map(|s| s.to_string_lossy().into_owned());
        let name = if path.ends_with("/.") { None } else { last };
        crate::files::write_tar(
            &crate::files::Location {
                root: &rootfs,
                path,
                side: &side,
            },
            name.as_deref(),
            follow_link,
            out,
        )
        .map_err(|source| ApiError::Files {
            context: format!("copying {path} out of {}", c.name()),
            source,
        })
    }

    /// Extracts a tar stream into `c` at `path`.
    pub fn copy_in_tar(&self, c: &Container, path: &str, input: impl Read) -> Result<(), ApiError> {
        crate::files::extract(&self.rootfs(c), path, input, true).map_err(|source| {
            ApiError::Files {
                context: format!("copying a tar stream into {} at {path}", c.name()),
                source,
            }
        })
    }

    /// Writes `c`'s file system as a tar archive.
    pub fn export_container(&self, c: &Container, out: impl Write) -> Result<(), ApiError> {
        crate::files::export(&self.rootfs(c), out).map_err(|source| ApiError::Files {
            context: format!("exporting {}", c.name()),
            source,
        })
    }

    /// Makes an image of `c`'s changes (pausing it meanwhile when asked and
    /// running); returns the image ID.
    pub fn commit_container(&self, c: &Container, r: &CommitRequest) -> Result<String, ApiError> {
        let store = self.store();
        let host = Platform::host();
        let image_err = |source| ApiError::Image {
            context: format!("finding the image of {}", c.name()),
            source: Box::new(source),
        };
        let img = match store.get(&c.record.image, &host) {
            Ok(i) if i.id().to_string() == c.record.image_id => i,
            _ => {
                let rec = store
                    .list()
                    .map_err(image_err)?
                    .into_iter()
                    .find(|r| {
                        store
                            .resolve(r, &host)
                            .is_ok_and(|i| i.id().to_string() == c.record.image_id)
                    })
                    .ok_or_else(|| {
                        ApiError::Invalid(format!(
                            "the image of container {} ({}) is no longer present",
                            c.name(),
                            c.record.image_id
                        ))
                    })?;
                store.resolve(&rec, &host).map_err(image_err)?
            }
        };
        let paused = r.pause && self.state(c).status == Status::Running && self.pause(c).is_ok();
        let made = crate::commit::commit(
            store,
            &img,
            &crate::bundle::snapshot_key(c.id()),
            &r.options,
        );
        if paused {
            self.unpause(c)?;
        }
        let (id, _) = made.map_err(|source| ApiError::Commit {
            context: format!("committing {}", c.name()),
            source: Box::new(source),
        })?;
        Ok(id.to_string())
    }
}
