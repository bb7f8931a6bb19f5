//! berth's images: the registry client, the content-addressed store, streaming
//! unpack into snapshots keyed by chain ID, the overlayfs snapshotter (which
//! returns mounts and never mounts anything itself), the metadata DB and GC.
//!
//! The crate knows nothing of containers or runtimes.

pub mod archive;
pub mod check;
pub mod content;
pub mod digest;
pub mod gc;
pub mod manifest;
pub mod meta;
pub mod platform;
pub mod private;
pub mod reference;
pub mod registry;
mod shared_db;
pub mod snapshot;
pub mod store;
pub mod unpack;
