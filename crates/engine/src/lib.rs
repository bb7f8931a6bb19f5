//! berth's container engine (issue 5, in progress): turns an image plus the
//! user's options into an OCI bundle for the runtime.
//!
//! So far it holds the parts below; nothing in the CLI uses them yet.
//! - [`process`]: the process (args, environment, working directory, user)
//!   from the image config and the flags, with docker's precedence;
//! - [`user`]: a `USER` resolved against the image's `/etc/passwd` and
//!   `/etc/group`;
//! - [`spec`]: the hardened default config (docker's capabilities, masked and
//!   read-only paths, mounts, namespaces, device rules), with the process and
//!   the security flags applied;
//! - [`seccomp`]: the default seccomp profile, docker's in effect;
//! - [`command`]: the container's command looked up in its rootfs as
//!   `execvp` would, for docker's exit codes 127 (not found) and 126 (not
//!   executable);
//! - [`records`]: container records in the metadata DB, with unique names;
//! - [`host`]: the host-side flags (`-v`, `--tmpfs`, resources,
//!   `--ulimit`, `--device`, `--network`, `--security-opt`) parsed with
//!   docker's rules and applied to the config;
//! - [`volumes`]: named and anonymous volumes under `<root>/volumes`;
//! - [`bundle`]: a bundle from a local image (the container's snapshot
//!   mounted as its rootfs, generated `/etc` files, `config.json`).
//!
//! It knows nothing of registries, snapshots or the runtime's internals.

mod adapters;
pub mod api;
pub mod bundle;
pub mod command;
pub mod commit;
pub mod container;
pub mod files;
pub mod host;
pub mod init;
pub mod isolation;
pub mod namespace;
pub mod netns;
pub mod network;
pub mod networks;
pub mod pod;
pub mod ports;
pub mod process;
pub mod records;
pub mod seccomp;
pub mod spec;
pub mod user;
pub mod volumes;
pub mod wait;
