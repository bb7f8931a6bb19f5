//! Running a container: started detached, or started with a client
//! attached from its first byte; the exit code after the client's
//! connection ends; `--rm` once it has exited.

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{io_err, ApiError};
use crate::container::{Container, ContainerError, Engine, Status};

/// Sends signals to one container's init through its runtime, from any
/// thread and without the container's lock (a front end's signal proxy:
/// docker's `--sig-proxy`).
#[derive(Debug, Clone)]
pub struct Signaller {
    runtime: PathBuf,
    root: PathBuf,
    id: String,
}

impl Signaller {
    /// Sends signal number `sig`.
    pub fn send(&self, sig: i32) -> Result<(), ApiError> {
        let st = Command::new(&self.runtime)
            .arg("--root")
            .arg(&self.root)
            .arg("kill")
            .arg(&self.id)
            .arg(sig.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(io_err(format!("running {}", self.runtime.display())))?;
        if !st.success() {
            return Err(ApiError::Invalid(format!(
                "{} kill {} {sig} failed",
                self.runtime.display(),
                self.id
            )));
        }
        Ok(())
    }
}

impl Engine {
    /// Starts `c` in the background. `exit_command` runs when it exits for
    /// good (a `--rm` container's removal); a container that fails to start
    /// and should remove itself is removed at once.
    pub fn start_detached(&self, c: &Container, exit_command: &[String]) -> Result<i32, ApiError> {
        match self.start(c, false, exit_command) {
            Ok(pid) => Ok(pid),
            Err(e) => {
                if c.config.auto_remove {
                    let _ = self.remove_container(c, true, true);
                }
                Err(e.into())
            }
        }
    }

    /// Starts `c` with its monitor waiting for a client, and connects to its
    /// attach socket: the caller relays the connection (the monitor's
    /// attach protocol) and, once it ends without an exit code, asks
    /// [`Engine::exit_after_attach`]. The monitor holds the container after
    /// its create until this connection comes, so the client sees its
    /// first byte.
    pub fn start_attached(&self, c: &Container) -> Result<OwnedFd, ApiError> {
        self.start(c, true, &[])?;
        self.attach(c)
    }

    /// A [`Signaller`] for `c`.
    pub fn signaller(&self, c: &Container) -> Signaller {
        Signaller {
            runtime: self.runtime_of(c),
            root: self.runtime_root(),
            id: c.id().to_string(),
        }
    }

    /// Connects to a running (or paused) `c`'s attach socket.
    pub fn attach_running(&self, c: &Container) -> Result<OwnedFd, ApiError> {
        let st = self.state(c);
        if !matches!(st.status, Status::Running | Status::Paused) {
            return Err(ContainerError::State {
                name: c.name().to_string(),
                state: st.status,
                what: "you cannot attach to it".into(),
            }
            .into());
        }
        self.attach(c)
    }

    /// Connects to `c`'s attach socket.
    pub fn attach(&self, c: &Container) -> Result<OwnedFd, ApiError> {
        berth_monitor::attach::connect(&self.attach_socket(c.id())).map_err(|source| {
            ApiError::Attach {
                context: format!("attaching to {}", c.name()),
                source,
            }
        })
    }

    /// Removes `c` after a foreground run of a `--rm` container: waits for
    /// its monitor's end (pidfd), then removes it and its anonymous volumes.
    pub fn remove_after_run(&self, c: &Container) -> Result<(), ApiError> {
        self.wait_monitor_gone(c, Duration::from_secs(30));
        self.remove_container(c, true, true)
    }
}
