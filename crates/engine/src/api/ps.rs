//! Listing containers as docker's `ps` does: filters, the order (newest
//! first), and the STATUS text ("Up 5 seconds", "Exited (0) 3 minutes
//! ago").

use chrono::{DateTime, Utc};

use super::ApiError;
use crate::container::{Container, Engine, State, Status};
use crate::ports::PortMapping;

/// The statuses `status=` takes (docker's, some of which berth never
/// shows).
const STATUSES: [&str; 7] = [
    "created",
    "running",
    "paused",
    "restarting",
    "exited",
    "removing",
    "dead",
];

/// One `--filter KEY=VALUE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// The ID starts with it.
    Id(String),
    /// The name contains it.
    Name(String),
    /// The status is it.
    Status(String),
    /// Made from the image (as named, or by ID prefix).
    Ancestor(String),
    /// Exited with this code.
    Exited(i32),
    /// Has the label (`KEY`), or with this value (`KEY=VALUE`).
    Label(String, Option<String>),
}

impl std::str::FromStr for Filter {
    type Err = ApiError;
    fn from_str(f: &str) -> Result<Filter, ApiError> {
        let bad = |m: String| ApiError::Invalid(m);
        let (k, v) = f
            .split_once('=')
            .ok_or_else(|| bad(format!("invalid --filter {f:?}: use KEY=VALUE")))?;
        Ok(match k {
            "id" => Filter::Id(v.into()),
            "name" => Filter::Name(v.into()),
            "status" => {
                if !STATUSES.contains(&v) {
                    return Err(bad(format!(
                        "invalid --filter status={v:?}: use one of {}",
                        STATUSES.join(", ")
                    )));
                }
                Filter::Status(v.into())
            }
            "ancestor" => Filter::Ancestor(v.into()),
            "exited" => Filter::Exited(
                v.parse()
                    .map_err(|_| bad(format!("invalid --filter exited={v:?}")))?,
            ),
            "label" => match v.split_once('=') {
                Some((lk, lv)) => Filter::Label(lk.into(), Some(lv.into())),
                None => Filter::Label(v.into(), None),
            },
            _ => {
                return Err(bad(format!(
                    "invalid --filter {k:?}: use id, name, status, ancestor, exited or label"
                )))
            }
        })
    }
}

impl Filter {
    /// Whether `c` in state `st` passes.
    pub fn matches(&self, c: &Container, st: &State) -> bool {
        match self {
            Filter::Id(v) => c.id().starts_with(v.as_str()),
            Filter::Name(v) => c.name().contains(v.as_str()),
            Filter::Status(v) => st.status.to_string() == *v,
            Filter::Ancestor(v) => {
                c.record.image == *v
                    || c.record
                        .image_id
                        .trim_start_matches("sha256:")
                        .starts_with(v.trim_start_matches("sha256:"))
            }
            Filter::Exited(n) => st.status == Status::Exited && st.exit_code == *n,
            Filter::Label(k, None) => c.config.labels.contains_key(k),
            Filter::Label(k, Some(v)) => c.config.labels.get(k).is_some_and(|x| x == v),
        }
    }
}

/// What to list.
#[derive(Debug, Clone, Default)]
pub struct PsRequest {
    /// Every container (else only running, paused and restarting ones,
    /// unless filters or `last` are given).
    pub all: bool,
    /// All must pass.
    pub filters: Vec<Filter>,
    /// Only the last N created.
    pub last: Option<usize>,
}

/// One listed container.
#[derive(Debug, Clone)]
pub struct PsEntry {
    /// The container.
    pub container: Container,
    /// Its state when listed.
    pub state: State,
    /// Its published ports.
    pub ports: Vec<PortMapping>,
}

/// docker's "Up 5 seconds" durations.
pub fn human_duration(d: chrono::Duration) -> String {
    let s = d.num_seconds().max(0);
    match s {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        2..=59 => format!("{s} seconds"),
        60..=119 => "About a minute".into(),
        120..=3599 => format!("{} minutes", s / 60),
        3600..=7199 => "About an hour".into(),
        7200..=172_799 => format!("{} hours", s / 3600),
        172_800..=1_209_599 => format!("{} days", s / 86400),
        1_209_600..=5_183_999 => format!("{} weeks", s / 604_800),
        5_184_000..=63_071_999 => format!("{} months", s / 2_592_000),
        _ => format!("{} years", s / 31_536_000),
    }
}

/// An RFC 3339 time, if it is one.
pub fn parse_rfc3339(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The STATUS column: "Up 5 seconds", "Exited (0) 3 minutes ago", ...
pub fn status_text(st: &State, now: DateTime<Utc>) -> String {
    let since = |t: &Option<String>| {
        t.as_deref()
            .and_then(parse_rfc3339)
            .map(|t| human_duration(now - t))
            .unwrap_or_default()
    };
    match st.status {
        Status::Created => "Created".into(),
        Status::Running => format!("Up {}", since(&st.started_at)),
        Status::Paused => format!("Up {} (Paused)", since(&st.started_at)),
        Status::Exited => format!("Exited ({}) {} ago", st.exit_code, since(&st.finished_at)),
        Status::Restarting => format!(
            "Restarting ({}) {} ago",
            st.exit_code,
            since(&st.finished_at)
        ),
    }
}

/// The entries of `all` that `r` selects, newest first.
pub fn select(mut all: Vec<(Container, State)>, r: &PsRequest) -> Vec<(Container, State)> {
    all.sort_by(|a, b| b.0.record.created.cmp(&a.0.record.created));
    let show_all = r.all || r.last.is_some() || !r.filters.is_empty();
    let mut out = Vec::new();
    for (c, st) in all {
        if !show_all
            && !matches!(
                st.status,
                Status::Running | Status::Paused | Status::Restarting
            )
        {
            continue;
        }
        if !r.filters.iter().all(|f| f.matches(&c, &st)) {
            continue;
        }
        out.push((c, st));
        if r.last.is_some_and(|n| out.len() >= n) {
            break;
        }
    }
    out
}

impl Engine {
    /// This namespace's containers as `r` selects them, newest first.
    pub fn ps(&self, r: &PsRequest) -> Result<Vec<PsEntry>, ApiError> {
        let all: Vec<(Container, State)> = self
            .list()?
            .into_iter()
            .map(|c| {
                let st = self.state(&c);
                (c, st)
            })
            .collect();
        Ok(select(all, r)
            .into_iter()
            .map(|(container, state)| PsEntry {
                ports: self.net_state(container.id()).ports,
                container,
                state,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::ContainerConfig;
    use crate::records::ContainerRecord;

    fn ctr(id: &str, name: &str, created: &str, labels: &[(&str, &str)]) -> Container {
        let config = ContainerConfig {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..ContainerConfig::default()
        };
        Container {
            record: ContainerRecord {
                id: id.repeat(64 / id.len()),
                name: name.into(),
                namespace: "default".into(),
                image: "busybox".into(),
                image_id: "sha256:abcdef".into(),
                created: created.into(),
                command: vec!["sh".into()],
                config: serde_json::to_value(&config).unwrap(),
            },
            config,
        }
    }

    fn state(status: Status, code: i32) -> State {
        State {
            status,
            pid: 0,
            exit_code: code,
            oom_killed: false,
            started_at: None,
            finished_at: None,
            restart_count: 0,
            error: String::new(),
        }
    }

    fn names(v: &[(Container, State)]) -> Vec<&str> {
        v.iter().map(|(c, _)| c.name()).collect()
    }

    #[test]
    fn filters_parse_and_match() {
        let c = ctr(
            "ab",
            "web-1",
            "2026-01-01T00:00:00Z",
            &[("tier", "front"), ("x", "")],
        );
        let up = state(Status::Running, 0);
        let ex = state(Status::Exited, 3);
        let f = |s: &str| s.parse::<Filter>().unwrap();
        assert!(f("id=abab").matches(&c, &up));
        assert!(!f("id=ba").matches(&c, &up));
        assert!(f("name=eb-").matches(&c, &up));
        assert!(f("status=running").matches(&c, &up));
        assert!(!f("status=running").matches(&c, &ex));
        assert!(f("ancestor=busybox").matches(&c, &up));
        assert!(f("ancestor=sha256:abc").matches(&c, &up));
        assert!(f("ancestor=abc").matches(&c, &up));
        assert!(!f("ancestor=alpine").matches(&c, &up));
        assert!(f("exited=3").matches(&c, &ex));
        assert!(!f("exited=3").matches(&c, &up));
        assert!(f("label=tier").matches(&c, &up));
        assert!(f("label=tier=front").matches(&c, &up));
        assert!(!f("label=tier=back").matches(&c, &up));
        for bad in ["status=sleeping", "exited=x", "color=red", "noequals"] {
            let e = bad.parse::<Filter>().unwrap_err().to_string();
            assert!(e.contains("invalid --filter"), "{bad}: {e}");
        }
    }

    #[test]
    fn selection_order_all_and_last() {
        let all = vec![
            (
                ctr("a1", "old", "2026-01-01T00:00:00Z", &[]),
                state(Status::Running, 0),
            ),
            (
                ctr("b2", "new", "2026-01-03T00:00:00Z", &[]),
                state(Status::Exited, 0),
            ),
            (
                ctr("c3", "mid", "2026-01-02T00:00:00Z", &[]),
                state(Status::Paused, 0),
            ),
        ];
        let r = |all: bool, last, filters: &[&str]| PsRequest {
            all,
            last,
            filters: filters.iter().map(|f| f.parse().unwrap()).collect(),
        };
        assert_eq!(
            names(&select(all.clone(), &r(false, None, &[]))),
            ["mid", "old"]
        );
        assert_eq!(
            names(&select(all.clone(), &r(true, None, &[]))),
            ["new", "mid", "old"]
        );
        // --last and filters show stopped ones too.
        assert_eq!(
            names(&select(all.clone(), &r(false, Some(1), &[]))),
            ["new"]
        );
        assert_eq!(
            names(&select(all.clone(), &r(false, None, &["status=exited"]))),
            ["new"]
        );
        assert_eq!(names(&select(all, &r(true, Some(2), &["name=o"]))), ["old"]);
    }

    #[test]
    fn status_column() {
        let now = Utc::now();
        let ts = |s: i64| Some((now - chrono::Duration::seconds(s)).to_rfc3339());
        let mut st = state(Status::Running, 0);
        st.started_at = ts(5);
        assert_eq!(status_text(&st, now), "Up 5 seconds");
        st.status = Status::Paused;
        assert_eq!(status_text(&st, now), "Up 5 seconds (Paused)");
        st.status = Status::Exited;
        st.exit_code = 3;
        st.finished_at = ts(120);
        assert_eq!(status_text(&st, now), "Exited (3) 2 minutes ago");
        st.status = Status::Restarting;
        assert_eq!(status_text(&st, now), "Restarting (3) 2 minutes ago");
        st.status = Status::Created;
        assert_eq!(status_text(&st, now), "Created");
        let d = chrono::Duration::seconds;
        assert_eq!(human_duration(d(0)), "Less than a second");
        assert_eq!(human_duration(d(90)), "About a minute");
        assert_eq!(human_duration(d(3 * 3600)), "3 hours");
    }
}
