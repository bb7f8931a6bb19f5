//! Output formatting shared by list commands: docker's `--format` templates
//! (the `{{.Field}}` subset, `table` prefix, `json`), sizes and ages.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use chrono::{DateTime, Utc};

/// One row: field name to value, in the names docker's templates use.
pub type Row = BTreeMap<&'static str, String>;

/// Renders rows. `format` is `None` (the default table with `columns`),
/// `json` (one JSON array), `table TEMPLATE`, or a bare template (one line
/// per row, no header).
pub fn render(
    rows: &[Row],
    columns: &[(&'static str, &'static str)],
    format: Option<&str>,
) -> Result<String> {
    match format {
        None => Ok(table(rows, columns)),
        Some("json") => {
            let v: Vec<&Row> = rows.iter().collect();
            Ok(serde_json::to_string_pretty(&v)? + "\n")
        }
        Some(f) => {
            let (is_table, tpl) = match f.strip_prefix("table") {
                Some(rest) => (true, rest.trim_start()),
                None => (false, f),
            };
            let tpl = tpl.replace("\\t", "\t").replace("\\n", "\n");
            let parts = parse(&tpl)?;
            let mut lines: Vec<Vec<String>> = Vec::new();
            if is_table {
                // Header: the field names, upper-cased and spaced, as docker does.
                lines.push(vec![expand(&parts, |f| Some(header_of(f, columns)))]);
            }
            for r in rows {
                lines.push(vec![expand(&parts, |f| r.get(f).cloned())]);
            }
            if is_table {
                let split: Vec<Vec<String>> = lines
                    .iter()
                    .map(|l| l[0].split('\t').map(str::to_string).collect())
                    .collect();
                return Ok(align(&split));
            }
            Ok(lines.into_iter().map(|l| l[0].clone() + "\n").collect())
        }
    }
}

enum Part {
    Lit(String),
    Field(String),
}

fn parse(tpl: &str) -> Result<Vec<Part>> {
    let mut out = Vec::new();
    let mut rest = tpl;
    while let Some(start) = rest.find("{{") {
        out.push(Part::Lit(rest[..start].to_string()));
        let Some(end) = rest[start..].find("}}") else {
            bail!("invalid --format {tpl:?}: unclosed {{{{");
        };
        let inner = rest[start + 2..start + end].trim();
        let field = inner
            .strip_prefix('.')
            .filter(|f| !f.is_empty() && f.chars().all(|c| c.is_ascii_alphanumeric()))
            .ok_or_else(|| {
                anyhow::anyhow!("invalid --format {tpl:?}: {{{{{inner}}}}} is not a {{{{.Field}}}}")
            })?;
        out.push(Part::Field(field.to_string()));
        rest = &rest[start + end + 2..];
    }
    out.push(Part::Lit(rest.to_string()));
    Ok(out)
}

fn expand(parts: &[Part], get: impl Fn(&str) -> Option<String>) -> String {
    parts
        .iter()
        .map(|p| match p {
            Part::Lit(s) => s.clone(),
            Part::Field(f) => get(f).unwrap_or_else(|| "<no value>".to_string()),
        })
        .collect()
}

fn header_of(field: &str, columns: &[(&'static str, &'static str)]) -> String {
    columns
        .iter()
        .find(|(f, _)| *f == field)
        .map(|(_, h)| h.to_string())
        .unwrap_or_else(|| field.to_uppercase())
}

fn table(rows: &[Row], columns: &[(&'static str, &'static str)]) -> String {
    let mut lines = vec![columns
        .iter()
        .map(|(_, h)| h.to_string())
        .collect::<Vec<_>>()];
    for r in rows {
        lines.push(
            columns
                .iter()
                .map(|(f, _)| r.get(f).cloned().unwrap_or_default())
                .collect(),
        );
    }
    align(&lines)
}

fn align(lines: &[Vec<String>]) -> String {
    let cols = lines.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; cols];
    for l in lines {
        for (i, c) in l.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for l in lines {
        let mut s = String::new();
        for (i, c) in l.iter().enumerate() {
            if i + 1 == l.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    }
    out
}

/// Sizes as docker prints them: decimal units, three significant digits.
pub fn human_size(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < units.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n}B")
    } else if v < 10.0 {
        format!("{v:.2}{}", units[u])
    } else if v < 100.0 {
        format!("{v:.1}{}", units[u])
    } else {
        format!("{v:.0}{}", units[u])
    }
}

/// "3 minutes ago", as docker prints ages.
pub fn ago(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let s = (now - t).num_seconds().max(0);
    let (n, unit) = match s {
        0..=59 => return "Less than a minute ago".to_string(),
        60..=3599 => (s / 60, "minute"),
        3600..=86399 => (s / 3600, "hour"),
        86400..=1209599 => (s / 86400, "day"),
        1209600..=5183999 => (s / 604800, "week"),
        5184000..=63071999 => (s / 2592000, "month"),
        _ => (s / 31536000, "year"),
    };
    if n == 1 {
        let article = if unit == "hour" { "An" } else { "A" };
        format!("{article} {unit} ago")
    } else {
        format!("{n} {unit}s ago")
    }
}

/// Renders a docker `--format` template against a JSON document, as
/// `inspect` takes it: `{{.State.Status}}` (a path of fields; strings bare,
/// anything else as JSON) and `{{json .Config}}` (always JSON).
pub fn template_value(tpl: &str, v: &serde_json::Value) -> Result<String> {
    let tpl = tpl.replace("\\t", "\t").replace("\\n", "\n");
    let mut out = String::new();
    let mut rest = tpl.as_str();
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(j) = after.find("}}") else {
            bail!("unclosed {{{{ in template {tpl:?}");
        };
        let expr = after[..j].trim();
        let (json, path) = match expr.strip_prefix("json ") {
            Some(p) => (true, p.trim()),
            None => (false, expr),
        };
        if !path.starts_with('.') {
            bail!("unsupported template expression {expr:?}: use {{{{.Field.Sub}}}} or {{{{json .Field}}}}");
        }
        let mut cur = v;
        let mut missing = false;
        for key in path[1..].split('.').filter(|k| !k.is_empty()) {
            match cur.get(key) {
                Some(x) => cur = x,
                None => {
                    missing = true;
                    break;
                }
            }
        }
        if missing {
            out.push_str("<no value>");
        } else {
            match cur {
                serde_json::Value::String(s) if !json => out.push_str(s),
                serde_json::Value::Null if !json => out.push_str("<nil>"),
                x => out.push_str(&serde_json::to_string(x)?),
            }
        }
        rest = &after[j + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Vec<Row> {
        let mut r = Row::new();
        r.insert("Repository", "docker.io/library/busybox".into());
        r.insert("Tag", "latest".into());
        vec![r]
    }

    #[test]
    fn templates() {
        let cols = [("Repository", "REPOSITORY"), ("Tag", "TAG")];
        assert_eq!(
            render(&rows(), &cols, Some("{{.Repository}}:{{.Tag}}")).unwrap(),
            "docker.io/library/busybox:latest\n"
        );
        let t = render(&rows(), &cols, Some("table {{.Tag}}\\t{{.Repository}}")).unwrap();
        assert_eq!(t, "TAG     REPOSITORY\nlatest  docker.io/library/busybox\n");
        let d = render(&rows(), &cols, None).unwrap();
        assert!(d.starts_with("REPOSITORY                 TAG\n"), "{d}");
        assert!(render(&rows(), &cols, Some("{{.Nope")).is_err());
        assert!(render(&rows(), &cols, Some("{{ index . 1 }}")).is_err());
        assert_eq!(
            render(&rows(), &cols, Some("{{.Missing}}")).unwrap(),
            "<no value>\n"
        );
        let j: serde_json::Value =
            serde_json::from_str(&render(&rows(), &cols, Some("json")).unwrap()).unwrap();
        assert_eq!(j[0]["Tag"], "latest");
    }

    #[test]
    fn value_templates() {
        let v = serde_json::json!({"State": {"Status": "running", "Pid": 42}, "Name": "/web", "Args": ["a"]});
        assert_eq!(template_value("{{.State.Status}}", &v).unwrap(), "running");
        assert_eq!(
            template_value("{{.State.Pid}} {{.Name}}", &v).unwrap(),
            "42 /web"
        );
        assert_eq!(template_value("{{json .Args}}", &v).unwrap(), "[\"a\"]");
        assert_eq!(template_value("{{json .Name}}", &v).unwrap(), "\"/web\"");
        assert_eq!(template_value("{{.Nope.X}}", &v).unwrap(), "<no value>");
        assert!(template_value("{{.State", &v).is_err());
        assert!(template_value("{{ index .Args 0 }}", &v).is_err());
    }

    #[test]
    fn sizes_and_ages() {
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(4_261_000), "4.26MB");
        assert_eq!(human_size(74_800_000), "74.8MB");
        assert_eq!(human_size(124_000_000), "124MB");
        let now = Utc::now();
        assert_eq!(ago(now, now), "Less than a minute ago");
        assert_eq!(ago(now - chrono::Duration::hours(1), now), "An hour ago");
        assert_eq!(ago(now - chrono::Duration::days(3), now), "3 days ago");
        assert_eq!(ago(now - chrono::Duration::days(20), now), "2 weeks ago");
    }
}
