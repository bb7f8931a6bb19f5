//! Library errors to gRPC status codes, at the one boundary where berth
//! speaks gRPC. The message is the whole error chain, naming what was being
//! done.
//!
//! Registry authentication failures are `Unknown`, as containerd's CRI
//! returns them (its docker resolver's `ErrInvalidAuthorization` is no
//! errdefs class, so `errgrpc.ToGRPC` leaves it unmapped); kubelet shows the
//! message either way.

use berth_image::registry::RegistryError;
use berth_image::store::ImageError;
use tonic::{Code, Status};

/// The error and its sources on one line, skipping a source whose text the
/// line already holds.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = String::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        let s = c.to_string();
        if !out.contains(&s) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&s);
        }
        cur = c.source();
    }
    out
}

/// The gRPC code for a registry error.
fn registry_code(e: &RegistryError) -> Code {
    match e {
        RegistryError::NotFound(..) => Code::NotFound,
        RegistryError::Unauthorized(..) | RegistryError::Denied(..) => Code::Unknown,
        RegistryError::Transport { .. } => Code::Unavailable,
        RegistryError::Http { status, .. } if *status >= 500 || *status == 429 => Code::Unavailable,
        RegistryError::AuthFile(..) => Code::FailedPrecondition,
        RegistryError::Io { .. } => Code::Internal,
        _ => Code::Unknown,
    }
}

/// The gRPC code for an image store error.
pub fn image_code(e: &ImageError) -> Code {
    match e {
        ImageError::NotFound(_) => Code::NotFound,
        ImageError::InvalidReference(..) | ImageError::Ambiguous(..) => Code::InvalidArgument,
        ImageError::Conflict(_) => Code::FailedPrecondition,
        // containerd: "no match for platform in manifest: not found".
        ImageError::NoPlatform { .. } => Code::NotFound,
        ImageError::MediaType(..) => Code::FailedPrecondition,
        ImageError::Registry(r) => registry_code(r),
        ImageError::Unpack { source, .. } if source.is_refusal() => Code::FailedPrecondition,
        ImageError::DiffIdMismatch { .. }
        | ImageError::SizeMismatch { .. }
        | ImageError::LayerCount(..)
        | ImageError::Parse(_) => Code::Unknown,
        ImageError::Content(_)
        | ImageError::Meta(_)
        | ImageError::Snapshot(_)
        | ImageError::Unpack { .. }
        | ImageError::Archive(_)
        | ImageError::Gc(_)
        | ImageError::Check(_)
        | ImageError::Io(..) => Code::Internal,
    }
}

/// A status for an image store error, `what` saying what was being done.
pub fn image_status(what: &str, e: &ImageError) -> Status {
    Status::new(image_code(e), format!("{what}: {}", chain(e)))
}

/// A status for a task that panicked or was cancelled on the blocking pool.
pub fn join_status(what: &str, e: tokio::task::JoinError) -> Status {
    Status::internal(format!("{what}: the worker failed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_of_the_common_cases() {
        assert_eq!(
            image_code(&ImageError::NotFound("x".into())),
            Code::NotFound
        );
        assert_eq!(
            image_code(&ImageError::InvalidReference("A b".into(), "bad".into())),
            Code::InvalidArgument
        );
        let unauth = ImageError::Registry(RegistryError::Unauthorized("r".into(), "no".into()));
        assert_eq!(image_code(&unauth), Code::Unknown);
        let gone = ImageError::Registry(RegistryError::NotFound("u".into(), String::new()));
        assert_eq!(image_code(&gone), Code::NotFound);
        let down = ImageError::Registry(RegistryError::Transport {
            url: "u".into(),
            message: "refused".into(),
        });
        assert_eq!(image_code(&down), Code::Unavailable);
    }

    #[test]
    fn the_message_is_the_chain_once() {
        let e = ImageError::Registry(RegistryError::Unauthorized(
            "127.0.0.1:5000".into(),
            "the credentials given were refused".into(),
        ));
        let s = image_status("pulling 127.0.0.1:5000/a:b", &e);
        assert_eq!(
            s.message(),
            "pulling 127.0.0.1:5000/a:b: 127.0.0.1:5000: unauthorized: the credentials given were refused"
        );
    }
}
