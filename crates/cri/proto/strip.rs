//! Turns the vendored `api.proto` into what the build compiles, so the
//! vendored file stays byte-for-byte upstream's. Used by `build.rs` and unit
//! tested in `src/lib.rs`. Two kinds of options are removed, and only those:
//!
//! - gogoproto's (`import ".../gogo.proto";`, file-level
//!   `option (gogoproto.NAME) = VALUE;`, and `(gogoproto.NAME) = VALUE` in a
//!   field's `[...]`). cri-api's v1 proto carried them until the commit
//!   "Remove gogo-protobuf from CRI"; they only steer Go code generation.
//! - `debug_redact = true` in a field's `[...]`. protoc before 22.x (Debian
//!   12 has 3.21.12) does not know this option of `descriptor.proto`. It
//!   marks secrets for text-format printers and does not change the wire
//!   format; berth's generated `AuthConfig` gets a hand-written, redacting
//!   `Debug` instead (`build.rs` names the message).
//!
//! A field option list left empty is dropped with its brackets. The result is
//! checked to mention neither option any more.

/// The file with the options above removed, or an error naming the line
/// that still has one.
pub fn strip(src: &str) -> Result<String, String> {
    let mut out = String::with_capacity(src.len());
    for (n, line) in src.lines().enumerate() {
        let t = line.trim();
        if t.starts_with("import ") && t.contains("gogoproto/gogo.proto") {
            continue;
        }
        if t.starts_with("option (gogoproto.") {
            continue;
        }
        let line = strip_field_options(line);
        if line.contains("gogoproto") && !line.trim_start().starts_with("//")
            || line.contains("debug_redact")
        {
            return Err(format!(
                "api.proto line {}: an option the strip rules do not cover: {}",
                n + 1,
                line.trim()
            ));
        }
        out.push_str(&line);
        out.push('\n');
    }
    Ok(out)
}

/// A field line with gogoproto and `debug_redact` entries taken out of its
/// `[...]` option list.
fn strip_field_options(line: &str) -> String {
    let code_end = line.find("//").unwrap_or(line.len());
    let code = &line[..code_end];
    let (Some(open), Some(close)) = (code.find('['), code.rfind(']')) else {
        return line.to_string();
    };
    if close < open {
        return line.to_string();
    }
    let kept: Vec<&str> = code[open + 1..close]
        .split(',')
        .map(str::trim)
        .filter(|e| {
            !e.is_empty() && !e.starts_with("(gogoproto.") && !e.starts_with("debug_redact")
        })
        .collect();
    let before = code[..open].trim_end();
    let after = &line[close + 1..];
    if kept.is_empty() {
        format!("{before}{after}")
    } else {
        format!("{before} [{}]{after}", kept.join(", "))
    }
}
