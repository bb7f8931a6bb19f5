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

use std::collections::HashMap;

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
    /// One argument or variable longer than the kernel lets an exec take.
    #[error(
        "{what} is {len} bytes long: the kernel takes at most {max} bytes for one \
         argument or environment variable"
    )]
    StringTooLong {
        /// `environment variable NAME` or `argument N`.
        what: String,
        /// Its length, with its terminating NUL.
        len: usize,
        /// The kernel's most (`MAX_ARG_STRLEN`).
        max: usize,
    },
    /// All of them more than an exec may take.
    #[error(
        "the process's arguments and environment ({count} strings) need {need} bytes, more \
         than the {limit} bytes the kernel lets an exec take with a stack limit of {stack} \
         (a quarter of it, at most 6 MiB): use fewer or shorter environment variables, or a \
         larger stack limit (--ulimit stack)"
    )]
    ExecTooBig {
        /// How many arguments and variables.
        count: usize,
        /// The bytes they need: the strings with their NULs, and a pointer each.
        need: u64,
        /// What the kernel allows.
        limit: u64,
        /// The stack limit, in words.
        stack: String,
    },
}

/// Checks that the kernel would let an exec take `args` and `env` under a
/// soft stack limit of `stack` bytes (None: unlimited), as `fs/exec.c`
/// counts: each string, NUL included, at most `MAX_ARG_STRLEN` (32 pages);
/// all strings plus one pointer each at most a quarter of the stack limit,
/// capped at three quarters of 8 MiB and never below `ARG_MAX` (32 pages).
/// An exec past these fails with E2BIG in the container, after everything
/// was made; this says why before anything is.
pub fn check_exec_size<'a>(
    args: impl IntoIterator<Item = &'a str>,
    env: impl IntoIterator<Item = &'a str>,
    stack: Option<u64>,
) -> Result<(), ProcessError> {
    let page = rustix::param::page_size();
    let max_string = 32 * page;
    let mut strings: u64 = 0;
    let (mut argc, mut envc) = (0usize, 0usize);
    for (i, a) in args.into_iter().enumerate() {
        let len = a.len() + 1;
        if len > max_string {
            return Err(ProcessError::StringTooLong {
                what: format!("argument {i}"),
                len,
                max: max_string,
            });
        }
        strings += len as u64;
        argc += 1;
    }
    for e in env {
        let len = e.len() + 1;
        if len > max_string {
            let name = e.split_once('=').map_or(e, |(k, _)| k);
            let name: String = name.chars().take(64).collect();
            return Err(ProcessError::StringTooLong {
                what: format!("environment variable {name}"),
                len,
                max: max_string,
            });
        }
        strings += len as u64;
        envc += 1;
    }
    const STK_LIM: u64 = 8 << 20;
    let arg_max = 32 * page as u64;
    let limit = (STK_LIM / 4 * 3)
        .min(stack.map_or(u64::MAX, |s| s / 4))
        .max(arg_max);
    let pointers = (argc.max(1) + envc) as u64 * std::mem::size_of::<usize>() as u64;
    let need = strings + pointers;
    if need > limit {
        return Err(ProcessError::ExecTooBig {
            count: argc + envc,
            need,
            limit,
            stack: stack.map_or_else(|| "unlimited".to_string(), |s| format!("{s} bytes")),
        });
    }
    Ok(())
}

/// An environment being built: `KEY=VALUE` in order, one per name, with an
/// index by name so that setting one costs the same however many there are
/// (images with 100 000 variables exist).
#[derive(Debug, Default)]
struct EnvBuilder {
    vars: Vec<String>,
    index: HashMap<String, usize>,
}

impl EnvBuilder {
    /// Sets `var` (`KEY=VALUE`): an earlier one of that name gets the new
    /// value in its place, a new name goes last.
    fn set(&mut self, var: &str) -> Result<(), ProcessError> {
        let key = match var.split_once('=') {
            Some((k, _)) if !k.is_empty() => k,
            _ => return Err(ProcessError::BadEnv(var.to_string())),
        };
        match self.index.get(key) {
            Some(&i) => self.vars[i] = var.to_string(),
            None => {
                self.index.insert(key.to_string(), self.vars.len());
                self.vars.push(var.to_string());
            }
        }
        Ok(())
    }
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

    let mut env = EnvBuilder::default();
    let image_env = image.env.as_deref().unwrap_or_default();
    if !image_env.iter().any(|e| e.starts_with("PATH=")) {
        env.set(DEFAULT_PATH)?;
    }
    for e in image_env {
        env.set(e)?;
    }
    env.set(&format!("HOSTNAME={hostname}"))?;
    if flags.tty {
        env.set("TERM=xterm")?;
    }
    for e in &flags.env {
        env.set(e)?;
    }
    let env = env.vars;

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
    fn many_variables_keep_dockers_precedence_and_order() {
        let n = 20_000;
        let mut image_env: Vec<String> = (0..n).map(|i| format!("V{i}=image")).collect();
        // A later duplicate in the image takes the earlier one's place.
        image_env.extend((0..n).step_by(1000).map(|i| format!("V{i}=again")));
        image_env.push("HOSTNAME=from-image".into());
        let img = RunConfig {
            env: Some(image_env),
            ..RunConfig::default()
        };
        let flags = ProcessFlags {
            cmd: v(&["true"]),
            env: (0..n)
                .step_by(7)
                .map(|i| format!("V{i}=flag"))
                .chain(["NEW=1".to_string(), "V0=last".to_string()])
                .collect(),
            ..ProcessFlags::default()
        };
        let p = plan(Some(&img), "h", &flags).unwrap();
        let mut want = vec![DEFAULT_PATH.to_string()];
        for i in 0..n {
            let val = match i {
                0 => "last",
                _ if i % 7 == 0 => "flag",
                _ if i % 1000 == 0 => "again",
                _ => "image",
            };
            want.push(format!("V{i}={val}"));
        }
        // berth's HOSTNAME replaces the image's in its place; a new -e
        // variable goes last.
        want.push("HOSTNAME=h".into());
        want.push("NEW=1".into());
        assert_eq!(p.env, want);
    }

    #[test]
    fn exec_size_as_the_kernel_counts() {
        let page = rustix::param::page_size();
        let max = 32 * page;
        let env: Vec<String> = (0..100_000).map(|i| format!("E{i:05}=1")).collect();
        let strs = || env.iter().map(String::as_str);
        // 100 000 short variables: 0.9 MB of strings and 0.8 MB of pointers.
        check_exec_size(["sh"], strs(), Some(8 << 20)).unwrap();
        check_exec_size(["sh"], strs(), None).unwrap();
        let e = check_exec_size(["sh"], strs(), Some(1 << 20)).unwrap_err();
        assert!(matches!(e, ProcessError::ExecTooBig { limit, .. } if limit == 1 << 18));
        assert!(e.to_string().contains("--ulimit stack"), "{e}");
        // A tiny stack limit still lets an exec take ARG_MAX.
        check_exec_size(["sh"], ["A=1"], Some(4096)).unwrap();
        // Never more than 6 MiB, whatever the stack limit.
        let fat: Vec<String> = (0..100_000)
            .map(|i| format!("F{i:05}={}", "x".repeat(64)))
            .collect();
        let e = check_exec_size(["sh"], fat.iter().map(String::as_str), None).unwrap_err();
        assert!(matches!(e, ProcessError::ExecTooBig { limit, .. } if limit == 6 << 20));
        // One string: MAX_ARG_STRLEN with its NUL.
        let at_most = format!("A={}", "x".repeat(max - 3));
        check_exec_size(["sh"], [at_most.as_str()], None).unwrap();
        let over = format!("BIG={}", "x".repeat(max));
        let e = check_exec_size(["sh"], [over.as_str()], None).unwrap_err();
        assert!(e.to_string().contains("environment variable BIG"), "{e}");
        let e = check_exec_size(["sh", &over], [], None).unwrap_err();
        assert!(e.to_string().starts_with("argument 1 "), "{e}");
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
