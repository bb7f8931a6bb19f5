//! The container's process from the image config and the user's flags, with
//! docker's precedence:
//!
//! - `--entrypoint` replaces the image's `Entrypoint` and drops its `Cmd`
//!   (an empty `--entrypoint ""` clears it); arguments after the image name
//!   replace `Cmd`. The process is the entrypoint followed by the command.
//! - The environment is `PATH` (a default when the image sets none), the
//!   image's `Env`, `HOSTNAME`, `TERM=xterm` with a tty, then each `-e`,
//!   which replaces a variable of the same name. `HOME` comes last, from the
//!   user's passwd entry, unless something above set it.
//! - The working directory is `-w`, else the image's `WorkingDir`, else `/`;
//!   it must be absolute.
//! - The user is `-u`, else the image's `User`, else root.

use berth_image::manifest::RunConfig;

/// docker's `PATH` for an image that sets none.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Flags that shape the process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessFlags {
    /// `--entrypoint` (split into words; empty clears the image's).
    pub entrypoint: Option<Vec<String>>,
    /// The arguments after the image name.
    pub cmd: Vec<String>,
    /// `-e KEY=VALUE`, in order.
    pub env: Vec<String>,
    /// `-w`.
    pub workdir: Option<String>,
    /// `-u`.
    pub user: Option<String>,
    /// `-t`.
    pub tty: bool,
}

/// The process the bundle will run, before the user is resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessPlan {
    /// argv.
    pub args: Vec<String>,
    /// `KEY=VALUE`, one per name.
    pub env: Vec<String>,
    /// Absolute working directory.
    pub cwd: String,
    /// The `USER` to resolve (empty: root).
    pub user: String,
    /// The image's `StopSignal`, if any.
    pub stop_signal: Option<String>,
}

/// A process that cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProcessError {
    /// Neither the image nor the flags give a command.
    #[error("no command specified: the image has no Entrypoint or Cmd, and none was given")]
    NoCommand,
    /// A relative working directory.
    #[error("the working directory {0:?} is invalid: it needs to be an absolute path")]
    RelativeWorkdir(String),
    /// An `-e` or image variable without a name.
    #[error("invalid environment variable {0:?}: the name is empty or contains '='")]
    BadEnv(String),
}

/// Sets `var` (`KEY=VALUE`) in `env`, replacing an earlier one of that name.
fn set(env: &mut Vec<String>, var: &str) -> Result<(), ProcessError> {
    let key = match var.split_once('=') {
        Some((k, _)) if !k.is_empty() => k,
        _ => return Err(ProcessError::BadEnv(var.to_string())),
    };
    let prefix = format!("{key}=");
    match env.iter_mut().find(|e| e.starts_with(&prefix)) {
        Some(e) => *e = var.to_string(),
        None => env.push(var.to_string()),
    }
    Ok(())
}

/// The process for an image with config `image` (None: no config section),
/// a container named `hostname`, and `flags`.
pub fn plan(
    image: Option<&RunConfig>,
    hostname: &str,
    flags: &ProcessFlags,
) -> Result<ProcessPlan, ProcessError> {
    let empty = RunConfig::default();
    let image = image.unwrap_or(&empty);
    let (entrypoint, image_cmd) = match &flags.entrypoint {
        Some(e) => (e.clone(), Vec::new()),
        None => (
            image.entrypoint.clone().unwrap_or_default(),
            image.cmd.clone().unwrap_or_default(),
        ),
    };
    let cmd = if flags.cmd.is_empty() {
        image_cmd
    } else {
        flags.cmd.clone()
    };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(ProcessError::NoCommand);
    }

    let mut env = Vec::new();
    let image_env = image.env.clone().unwrap_or_default();
    if !image_env.iter().any(|e| e.starts_with("PATH=")) {
        env.push(DEFAULT_PATH.to_string());
    }
    for e in &image_env {
        set(&mut env, e)?;
    }
    set(&mut env, &format!("HOSTNAME={hostname}"))?;
    if flags.tty {
        set(&mut env, "TERM=xterm")?;
    }
    for e in &flags.env {
        set(&mut env, e)?;
    }

    let cwd = flags
        .workdir
        .clone()
        .or_else(|| image.working_dir.clone().filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/".into());
    if !cwd.starts_with('/') {
        return Err(ProcessError::RelativeWorkdir(cwd));
    }
    Ok(ProcessPlan {
        args,
        env,
        cwd,
        user: flags
            .user
            .clone()
            .or_else(|| image.user.clone())
            .unwrap_or_default(),
        stop_signal: image.stop_signal.clone(),
    })
}

/// Adds `HOME=home` unless the environment has a `HOME`.
pub fn with_home(env: &mut Vec<String>, home: &str) {
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={home}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    fn image() -> RunConfig {
        RunConfig {
            user: Some("app".into()),
            env: Some(v(&["PATH=/opt/bin:/bin", "LANG=C.UTF-8"])),
            entrypoint: Some(v(&["/entry.sh"])),
            cmd: Some(v(&["serve", "--port", "80"])),
            working_dir: Some("/srv".into()),
            stop_signal: Some("SIGQUIT".into()),
            ..RunConfig::default()
        }
    }

    #[test]
    fn image_defaults() {
        let p = plan(Some(&image()), "c1", &ProcessFlags::default()).unwrap();
        assert_eq!(p.args, v(&["/entry.sh", "serve", "--port", "80"]));
        assert_eq!(
            p.env,
            v(&["PATH=/opt/bin:/bin", "LANG=C.UTF-8", "HOSTNAME=c1"])
        );
        assert_eq!(p.cwd, "/srv");
        assert_eq!(p.user, "app");
        assert_eq!(p.stop_signal.as_deref(), Some("SIGQUIT"));
    }

    #[test]
    fn flags_override_in_docker_order() {
        let f = ProcessFlags {
            cmd: v(&["sh"]),
            env: v(&["LANG=POSIX", "X=1", "X=2"]),
            workdir: Some("/tmp".into()),
            user: Some("0:0".into()),
            tty: true,
            ..ProcessFlags::default()
        };
        let p = plan(Some(&image()), "c1", &f).unwrap();
        // Arguments replace Cmd, not Entrypoint.
        assert_eq!(p.args, v(&["/entry.sh", "sh"]));
        assert_eq!(
            p.env,
            v(&[
                "PATH=/opt/bin:/bin",
                "LANG=POSIX",
                "HOSTNAME=c1",
                "TERM=xterm",
                "X=2"
            ])
        );
        assert_eq!((p.cwd.as_str(), p.user.as_str()), ("/tmp", "0:0"));

        // --entrypoint drops the image's Cmd; "" clears the entrypoint.
        let f = ProcessFlags {
            entrypoint: Some(v(&["/bin/echo"])),
            ..ProcessFlags::default()
        };
        assert_eq!(
            plan(Some(&image()), "c", &f).unwrap().args,
            v(&["/bin/echo"])
        );
        let f = ProcessFlags {
            entrypoint: Some(vec![]),
            cmd: v(&["ls", "-l"]),
            ..ProcessFlags::default()
        };
        assert_eq!(
            plan(Some(&image()), "c", &f).unwrap().args,
            v(&["ls", "-l"])
        );
    }

    #[test]
    fn no_config_and_errors() {
        let f = ProcessFlags {
            cmd: v(&["true"]),
            ..ProcessFlags::default()
        };
        let p = plan(None, "h", &f).unwrap();
        assert_eq!(p.env, v(&[DEFAULT_PATH, "HOSTNAME=h"]));
        assert_eq!((p.cwd.as_str(), p.user.as_str()), ("/", ""));
        assert_eq!(
            plan(None, "h", &ProcessFlags::default()).unwrap_err(),
            ProcessError::NoCommand
        );
        let f = ProcessFlags {
            cmd: v(&["true"]),
            workdir: Some("srv".into()),
            ..ProcessFlags::default()
        };
        assert_eq!(
            plan(None, "h", &f).unwrap_err(),
            ProcessError::RelativeWorkdir("srv".into())
        );
        for bad in ["=x", "NOEQUALS"] {
            let f = ProcessFlags {
                cmd: v(&["true"]),
                env: v(&[bad]),
                ..ProcessFlags::default()
            };
            assert_eq!(
                plan(None, "h", &f).unwrap_err(),
                ProcessError::BadEnv(bad.into())
            );
        }
    }

    #[test]
    fn home_from_the_user_unless_set() {
        let mut env = v(&["PATH=/bin"]);
        with_home(&mut env, "/home/app");
        assert_eq!(env, v(&["PATH=/bin", "HOME=/home/app"]));
        with_home(&mut env, "/root");
        assert_eq!(env, v(&["PATH=/bin", "HOME=/home/app"]));
    }
}
