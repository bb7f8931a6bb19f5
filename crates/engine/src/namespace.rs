//! Store namespaces, as containerd keeps them: every container (its record,
//! its name) and every volume belongs to one namespace, and a command sees
//! only its own. Images are shared by all namespaces.
//!
//! The namespace `default` is the layout berth had before namespaces: its
//! container records carry no namespace field, its names are the keys of
//! `container_names` as they are, and its volumes are `<root>/volumes`.
//! Another namespace `NS` keys its names as `NS/NAME` (a `/` is in no
//! container name, so the two never meet) and keeps its volumes under
//! `<root>/namespaces/NS/volumes`. A store made before namespaces existed is
//! therefore read as it is: nothing to migrate, nothing to lose.

use std::fmt;
use std::path::{Path, PathBuf};

/// The namespace of a plain `berth` command.
pub const DEFAULT: &str = "default";

/// The longest namespace name (containerd's limit).
pub const MAX_LEN: usize = 76;

/// A namespace name that failed [`Namespace::new`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid namespace {0:?}: use letters and digits, with single '.', '_' or '-' between \
     them, at most 76 characters (e.g. default, k8s.io)"
)]
pub struct BadNamespace(pub String);

/// A valid namespace name: letters and digits, runs of them joined by one
/// `.`, `_` or `-`, at most [`MAX_LEN`] bytes (containerd's rule), so it
/// is safe as a path component and never holds a `/`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Namespace(String);

impl Namespace {
    /// Checks `name`.
    pub fn new(name: &str) -> Result<Namespace, BadNamespace> {
        let b = name.as_bytes();
        let alnum = |c: &u8| c.is_ascii_alphanumeric();
        let ok = !b.is_empty()
            && b.len() <= MAX_LEN
            && alnum(&b[0])
            && alnum(&b[b.len() - 1])
            && b.iter()
                .all(|c| alnum(c) || matches!(c, b'.' | b'_' | b'-'))
            && !b.windows(2).any(|w| !alnum(&w[0]) && !alnum(&w[1]));
        if ok {
            Ok(Namespace(name.to_string()))
        } else {
            Err(BadNamespace(name.to_string()))
        }
    }

    /// `default`.
    pub fn default_ns() -> Namespace {
        Namespace(DEFAULT.to_string())
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is `default`, the layout of a store made before
    /// namespaces.
    pub fn is_default(&self) -> bool {
        self.0 == DEFAULT
    }

    /// The key of container name `name` in the names table.
    pub fn name_key(&self, name: &str) -> String {
        if self.is_default() {
            name.to_string()
        } else {
            format!("{}/{name}", self.0)
        }
    }

    /// The directory of this namespace's volumes under berth's `root`.
    pub fn volumes_dir(&self, root: &Path) -> PathBuf {
        if self.is_default() {
            root.join("volumes")
        } else {
            root.join("namespaces").join(&self.0).join("volumes")
        }
    }
}

impl Default for Namespace {
    fn default() -> Namespace {
        Namespace::default_ns()
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for Namespace {
    type Err = BadNamespace;
    fn from_str(s: &str) -> Result<Namespace, BadNamespace> {
        Namespace::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_containerd() {
        for ok in [
            "default",
            "k8s.io",
            "a",
            "moby",
            "team-1_x.y",
            &"a".repeat(76),
        ] {
            assert!(Namespace::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "a..b",
            "a/b",
            "../x",
            "a b",
            "ä",
            ".",
            &"a".repeat(77),
        ] {
            let e = Namespace::new(bad).unwrap_err().to_string();
            assert!(e.contains("invalid namespace"), "{bad}: {e}");
        }
    }

    #[test]
    fn default_keeps_the_old_layout() {
        let root = Path::new("/r");
        let d = Namespace::default();
        assert_eq!(d.name_key("web"), "web");
        assert_eq!(d.volumes_dir(root), Path::new("/r/volumes"));
        let k = Namespace::new("k8s.io").unwrap();
        assert_eq!(k.name_key("web"), "k8s.io/web");
        assert_eq!(
            k.volumes_dir(root),
            Path::new("/r/namespaces/k8s.io/volumes")
        );
    }
}
