//! Image references (`[DOMAIN/]PATH[:TAG][@DIGEST]`), parsed and normalised the
//! way docker and the distribution project do: `busybox` becomes
//! `docker.io/library/busybox:latest`.
//!
//! Why not `oci_spec::distribution::Reference`: its parser compiles one large
//! regular expression on first use, about 250 million instructions (50 ms),
//! which was a third of a whole `berth pull` of a small image. This is a
//! hand-written scanner over the same grammar; the unit tests check it against
//! oci-spec's parser on a corpus of valid and invalid references.
//!
//! Grammar (distribution/reference):
//! ```text
//! reference  := name [ ":" tag ] [ "@" digest ]
//! name       := [ domain "/" ] path-component [ "/" path-component ]*
//! domain     := host [ ":" port ]
//! host       := domain-component [ "." domain-component ]* | "[" ipv6 "]"
//! domain-component := [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
//! path-component   := [a-z0-9]+ [ separator [a-z0-9]+ ]*
//! separator  := [_.] | "__" | [-]+
//! tag        := [\w][\w.-]{0,127}
//! digest     := algorithm ":" hex{32,}
//! ```

use std::fmt;
use std::str::FromStr;

const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_LEGACY: &str = "index.docker.io";
const OFFICIAL_NAMESPACE: &str = "library";
const DEFAULT_TAG: &str = "latest";
/// The longest repository path accepted.
const NAME_MAX: usize = 255;

/// Why a reference did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// The empty string.
    #[error("the reference is empty")]
    Empty,
    /// A character or structure outside the grammar.
    #[error("invalid reference format: {0}")]
    Format(String),
    /// An upper-case letter in the repository path.
    #[error("repository name must be lowercase")]
    Uppercase,
    /// A repository path longer than 255 characters.
    #[error("repository name must not be more than {NAME_MAX} characters")]
    TooLong,
    /// A digest that is not `ALGORITHM:HEX` with the algorithm's length.
    #[error("invalid digest {0:?}")]
    Digest(String),
}

/// A normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl Reference {
    /// The registry host (and port): `docker.io` for a name without one.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path inside the registry: `library/busybox`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag: `latest` when the reference has neither tag nor digest.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if the reference has one.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// The whole normalised reference.
    pub fn whole(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s)
    }
}

fn format_err(s: &str, why: &str) -> ReferenceError {
    ReferenceError::Format(format!("{s:?}: {why}"))
}

fn parse(s: &str) -> Result<Reference, ReferenceError> {
    if s.is_empty() {
        return Err(ReferenceError::Empty);
    }
    // The digest follows the first '@'; nothing before it may contain one.
    let (rest, digest) = match s.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (s, None),
    };
    if let Some(d) = digest {
        check_digest(d).map_err(|why| match why {
            DigestProblem::Syntax => format_err(s, "malformed digest"),
            DigestProblem::Algorithm => ReferenceError::Digest(d.to_string()),
        })?;
    }
    // A tag is after the last ':' when no '/' follows it (a ':' before a '/'
    // is a port).
    let (name, tag) = match rest.rfind(':') {
        Some(i) if !rest[i..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
        _ => (rest, None),
    };
    if let Some(t) = tag {
        if !valid_tag(t) {
            return Err(format_err(s, "malformed tag"));
        }
    }
    if name.is_empty() {
        return Err(format_err(s, "no repository name"));
    }
    let (domain, path) = split_domain(name);
    if let Some(d) = domain {
        if !valid_domain(d) {
            return Err(format_err(s, "malformed registry host"));
        }
    }
    for component in path.split('/') {
        match check_path_component(component) {
            Ok(()) => {}
            Err(PathProblem::Uppercase) => return Err(ReferenceError::Uppercase),
            Err(PathProblem::Syntax) => {
                return Err(format_err(s, "malformed repository path"));
            }
        }
    }
    let (registry, repository) = match domain {
        None | Some(DOCKER_HUB) | Some(DOCKER_HUB_LEGACY) => {
            let repo = if path.contains('/') {
                path.to_string()
            } else {
                format!("{OFFICIAL_NAMESPACE}/{path}")
            };
            (DOCKER_HUB.to_string(), repo)
        }
        Some(d) => (d.to_string(), path.to_string()),
    };
    if repository.len() > NAME_MAX {
        return Err(ReferenceError::TooLong);
    }
    let tag = match (tag, digest) {
        (None, None) => Some(DEFAULT_TAG.to_string()),
        (t, _) => t.map(str::to_string),
    };
    Ok(Reference {
        registry,
        repository,
        tag,
        digest: digest.map(str::to_string),
    })
}

/// Splits off the registry: the first component is a domain when there is a
/// '/' after it and it has a '.' or ':', is `localhost`, or has an upper-case
/// letter (which a path component may not).
fn split_domain(name: &str) -> (Option<&str>, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (Some(first), rest)
        }
        _ => (None, name),
    }
}

fn valid_domain(d: &str) -> bool {
    // An IPv6 literal in brackets, with an optional port.
    if let Some(inner) = d.strip_prefix('[') {
        let Some((addr, after)) = inner.split_once(']') else {
            return false;
        };
        let port_ok = after.is_empty() || after.strip_prefix(':').is_some_and(valid_port);
        return port_ok && addr.parse::<std::net::Ipv6Addr>().is_ok();
    }
    let (host, port) = match d.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (d, None),
    };
    if port.is_some_and(|p| !valid_port(p)) {
        return false;
    }
    !host.is_empty() && host.split('.').all(valid_domain_component)
}

fn valid_port(p: &str) -> bool {
    !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())
}

fn valid_domain_component(c: &str) -> bool {
    let b = c.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|&x| x.is_ascii_alphanumeric() || x == b'-')
}

enum PathProblem {
    Syntax,
    Uppercase,
}

fn check_path_component(c: &str) -> Result<(), PathProblem> {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.iter().any(u8::is_ascii_uppercase) {
        return Err(PathProblem::Uppercase);
    }
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return Err(PathProblem::Syntax);
    }
    // Runs of separators between alphanumerics: one '.', one or two '_', or
    // any number of '-'.
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        match &b[start..i] {
            b"." | b"_" | b"__" => {}
            sep if sep.iter().all(|&x| x == b'-') => {}
            _ => return Err(PathProblem::Syntax),
        }
    }
    Ok(())
}

fn valid_tag(t: &str) -> bool {
    let word = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && word(b[0])
        && b[1..].iter().all(|&x| word(x) || x == b'.' || x == b'-')
}

enum DigestProblem {
    Syntax,
    Algorithm,
}

fn check_digest(d: &str) -> Result<(), DigestProblem> {
    let Some((alg, hex)) = d.split_once(':') else {
        return Err(DigestProblem::Syntax);
    };
    // algorithm := component ([-_+.] component)*, component := [A-Za-z][A-Za-z0-9]*
    let alg_ok = alg.split(['-', '_', '+', '.']).all(|c| {
        let b = c.as_bytes();
        !b.is_empty() && b[0].is_ascii_alphabetic() && b.iter().all(u8::is_ascii_alphanumeric)
    });
    if !alg_ok || hex.len() < 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(DigestProblem::Syntax);
    }
    let want = match alg {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err(DigestProblem::Algorithm),
    };
    if hex.len() != want {
        return Err(DigestProblem::Algorithm);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:1ce98247235eedf5e67bda1a6cee5ce1f28c5b70f9bdcba018c92c9e80335bf0";

    fn p(s: &str) -> Reference {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn normalises_short_names() {
        assert_eq!(p("busybox").whole(), "docker.io/library/busybox:latest");
        assert_eq!(p("user/app:1").whole(), "docker.io/user/app:1");
        assert_eq!(
            p("index.docker.io/busybox").whole(),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(p("docker.io/a/b/c").repository(), "a/b/c");
        assert_eq!(p("localhost/x").registry(), "localhost");
        assert_eq!(p("localhost:5000/x:y").registry(), "localhost:5000");
        assert_eq!(p("127.0.0.1:5999/busybox").tag(), Some("latest"));
        assert_eq!(p("[::1]:5000/a").registry(), "[::1]:5000");
        assert_eq!(p("Upper/x").registry(), "Upper");
        let r = p(&format!("quay.io/a/b@{D}"));
        assert_eq!((r.tag(), r.digest()), (None, Some(D)));
        let r = p(&format!("a:t@{D}"));
        assert_eq!((r.tag(), r.digest()), (Some("t"), Some(D)));
        assert_eq!(r.whole(), format!("docker.io/library/a:t@{D}"));
    }

    #[test]
    fn refuses_what_docker_refuses() {
        assert_eq!("".parse::<Reference>(), Err(ReferenceError::Empty));
        assert_eq!(
            "Busybox".parse::<Reference>(),
            Err(ReferenceError::Uppercase)
        );
        assert_eq!(
            "a//b".parse::<Reference>().unwrap_err().to_string(),
            "invalid reference format: \"a//b\": malformed repository path"
        );
        assert!(matches!(
            format!("a@md5:{}", "0".repeat(32)).parse::<Reference>(),
            Err(ReferenceError::Digest(_))
        ));
        assert_eq!(
            format!("a/{}", "b".repeat(300)).parse::<Reference>(),
            Err(ReferenceError::TooLong)
        );
    }

    /// The scanner against oci-spec's regular expression, on a corpus of
    /// valid and invalid references. Where both accept, they must agree on
    /// every part. (oci-spec does not accept IPv6 hosts, and reports an
    /// upper-case path only as a format error; neither is in the corpus. Nor is
    /// `Upper/x`: docker takes an upper-case first component for a registry
    /// host, and so does berth, where oci-spec keeps it in the path.)
    #[test]
    fn agrees_with_oci_spec() {
        let long = "x".repeat(128);
        let longer = "x".repeat(129);
        let corpus: Vec<String> = vec![
            "busybox".into(),
            "busybox:1.36".into(),
            "library/busybox".into(),
            "docker.io/library/busybox:latest".into(),
            "index.docker.io/library/busybox".into(),
            "index.docker.io/busybox".into(),
            "quay.io/podman/hello".into(),
            "ghcr.io/a/b/c/d:v1.2.3-rc.1".into(),
            "localhost/app".into(),
            "localhost:5000/app:t".into(),
            "localhost".into(),
            "localhost:5000".into(),
            "127.0.0.1:5999/ten:latest".into(),
            "my-registry.example.com:8443/team/app".into(),
            "a.b/c".into(),
            "a-b.c-d.e/f".into(),
            "-a.b/c".into(),
            "a-.b/c".into(),
            "a..b/c".into(),
            "a.b:/c".into(),
            "a.b:12x/c".into(),
            "foo_bar".into(),
            "foo__bar".into(),
            "foo___bar".into(),
            "foo.bar".into(),
            "foo..bar".into(),
            "foo-bar".into(),
            "foo---bar".into(),
            "foo-_bar".into(),
            "foo._bar".into(),
            "_foo".into(),
            "foo_".into(),
            "foo/".into(),
            "/foo".into(),
            "foo//bar".into(),
            "foo:".into(),
            ":tag".into(),
            "foo:-tag".into(),
            "foo:.tag".into(),
            "foo:_tag".into(),
            "foo:Tag.1-x_y".into(),
            format!("foo:{long}"),
            format!("foo:{longer}"),
            "foo:t:t".into(),
            "foo@".into(),
            format!("foo@{D}"),
            format!("foo:bar@{D}"),
            format!("example.com:5000/foo:bar@{D}"),
            format!("foo@{}", &D[..40]),
            format!("foo@sha256:{}", "A".repeat(64)),
            format!("foo@sha256:{}", "g".repeat(64)),
            format!("foo@sha384:{}", "a".repeat(96)),
            format!("foo@sha512:{}", "a".repeat(128)),
            format!("foo@sha512:{}", "a".repeat(64)),
            format!("foo@md5:{}", "a".repeat(32)),
            format!("foo@sha256+b64u:{}", "a".repeat(64)),
            format!("foo@{D}@{D}"),
            "foo bar".into(),
            "foo\tbar".into(),
            "föo".into(),
            "a.b/c:t/d".into(),
            "a:1/b".into(),
            "a/b:c:d".into(),
            "0".into(),
            "0/1/2".into(),
            format!("a/{}", "b".repeat(250)),
            format!("a/{}", "b".repeat(260)),
            "UPPER.example/x".into(),
        ];
        for s in &corpus {
            let ours = s.parse::<Reference>();
            let theirs = s.parse::<oci_spec::distribution::Reference>();
            match (&ours, &theirs) {
                (Ok(a), Ok(b)) => {
                    assert_eq!(a.registry(), b.registry(), "{s}");
                    assert_eq!(a.repository(), b.repository(), "{s}");
                    assert_eq!(a.tag(), b.tag(), "{s}");
                    assert_eq!(a.digest(), b.digest(), "{s}");
                    assert_eq!(a.whole(), b.whole(), "{s}");
                }
                (Err(_), Err(_)) => {}
                _ => panic!("{s:?}: berth says {ours:?}, oci-spec says {theirs:?}"),
            }
        }
    }
}
