//! Why a file (the service config, the registry) could not be loaded. Every variant names the
//! file, and where it can the line and the key, so an installer fixes it in one look.

use std::path::{Path, PathBuf};

/// Why a configuration could not be loaded. Every variant says which file (or variable) is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {key}: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
}

/// The largest config or registry file read (a registry of thousands of units is well under a
/// megabyte): a path that names something else (`/dev/zero`, a log) is refused, not read for
/// ever.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Reads a config or registry file: a regular file of at most [`MAX_FILE_BYTES`], as text.
pub fn read_text(path: &Path) -> Result<String, ConfigError> {
    use std::io::Read;
    let failed = |source: std::io::Error| ConfigError::Read {
        path: path.to_owned(),
        source,
    };
    let other = |m: &str| failed(std::io::Error::other(m.to_string()));
    let file = std::fs::File::open(path).map_err(failed)?;
    let meta = file.metadata().map_err(failed)?;
    if !meta.is_file() {
        return Err(other("not a regular file"));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(other("larger than 16 MiB"));
    }
    let mut text = String::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(failed)?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(other("larger than 16 MiB"));
    }
    Ok(text)
}

/// Formats a TOML error as `line L, column C: [table.key: ]message`, keeping toml's own key
/// naming. When the error is about a value (a custom deserializer's, such as a bad duration),
/// toml's message does not say whose value it is: the key is taken from the `key = value` line
/// the span points into, under its nearest `[table]` header.
pub fn toml_error_message(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim().to_string();
    match e.span() {
        Some(span) => {
            let at = span.start.min(text.len());
            let before = &text[..at];
            let line = before.matches('\n').count() + 1;
            let line_start = before.rfind('\n').map_or(0, |n| n + 1);
            let column = at - line_start + 1;
            match value_key(text, line_start, at) {
                Some(key) => format!("line {line}, column {column}: {key}: {message}"),
                None => format!("line {line}, column {column}: {message}"),
            }
        }
        None => message,
    }
}

/// `table.key` when `text[line_start..at]` is the `key =` of a `key = value` line.
fn value_key(text: &str, line_start: usize, at: usize) -> Option<String> {
    let (key, _) = text[line_start..at].split_once('=')?;
    let key = key.trim();
    if key.is_empty() || key.contains(['[', '{', ',', '"', '\'']) {
        return None;
    }
    let table = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|h| h.trim_matches(|c| c == '[' || c == ']').trim());
    Some(match table {
        Some(t) => format!("{t}.{key}"),
        None => key.to_string(),
    })
}

/// The line (1-based) of `key = ...` inside the `index`-th (0-based) `[[kind]]` table of
/// `text`, for errors the parser cannot place because each value was fine on its own (two keys
/// of one entry that contradict each other). `None` when the key is not written there plainly.
pub fn key_line(text: &str, kind: &str, index: usize, key: &str) -> Option<usize> {
    let header = format!("[[{kind}]]");
    let mut seen = 0;
    let mut inside = false;
    for (n, line) in text.lines().enumerate() {
        let t = line.split('#').next().unwrap_or_default().trim();
        if t.starts_with('[') {
            inside = t == header && {
                seen += 1;
                seen == index + 1
            };
            continue;
        }
        let rest = t.strip_prefix(key).map(str::trim_start);
        if inside && rest.is_some_and(|r| r.starts_with('=')) {
            return Some(n + 1);
        }
    }
    None
}

/// `line L: key` when the line where `key` is written in `text` can be found, else `key`.
/// Keys are as errors name them: `section.key`, `kind[i].key` (a `[[kind]]` table) or
/// `section.kind[i].key` (`[[section.kind]]`). A value that came from the environment has no
/// line, and is named by its key alone.
pub fn located(text: &str, key: &str) -> String {
    match key_position(text, key) {
        Some(line) => format!("line {line}: {key}"),
        None => key.to_string(),
    }
}

fn key_position(text: &str, key: &str) -> Option<usize> {
    let (table, leaf) = key.rsplit_once('.').unwrap_or(("", key));
    if let Some((kind, index)) = table.strip_suffix(']').and_then(|t| t.rsplit_once('[')) {
        return key_line(text, kind, index.parse().ok()?, leaf);
    }
    let leaf = leaf.split('[').next().unwrap_or(leaf);
    let header = format!("[{table}]");
    let mut inside = table.is_empty();
    for (n, line) in text.lines().enumerate() {
        let t = line.split('#').next().unwrap_or_default().trim();
        if t.starts_with('[') {
            inside = t == header;
            continue;
        }
        let rest = t.strip_prefix(leaf).map(str::trim_start);
        if inside && rest.is_some_and(|r| r.starts_with('=')) {
            return Some(n + 1);
        }
    }
    None
}

/// Where the `[[kind]]` entry with `id = "<id>"` starts in `text`: `line L: kind[i]`, for
/// errors about an entry as a whole (rules that fail only once inherited). `None` when no such
/// entry is written plainly.
pub fn entry_at(text: &str, kind: &str, id: &str) -> Option<String> {
    let header = format!("[[{kind}]]");
    let (mut seen, mut inside, mut start) = (0, None, 0);
    for (n, line) in text.lines().enumerate() {
        let t = line.split('#').next().unwrap_or_default().trim();
        if t.starts_with('[') {
            inside = (t == header).then_some(seen);
            seen += usize::from(t == header);
            start = n + 1;
            continue;
        }
        let value = t.strip_prefix("id").map(str::trim_start);
        let value = value.and_then(|r| r.strip_prefix('=')).map(str::trim);
        if let (Some(i), Some(v)) = (inside, value) {
            if v.trim_matches(|c| c == '"' || c == '\'') == id {
                return Some(format!("line {start}: {kind}[{i}]"));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::located;

    #[test]
    fn keys_are_found_on_their_lines() {
        let text = "[http]\nlisten = \"x\"\n[realtime]\n# ping_interval = \"1s\"\nping_interval = \"0s\"\n\
[[mqtt.subscriptions]]\ntopic = \"a\"\n[[mqtt.subscriptions]]\ntopic = \"b\"\n";
        assert_eq!(
            located(text, "realtime.ping_interval"),
            "line 5: realtime.ping_interval"
        );
        assert_eq!(
            located(text, "mqtt.subscriptions[1].topic"),
            "line 9: mqtt.subscriptions[1].topic"
        );
        assert_eq!(
            located(text, "http.cors_origins[0]"),
            "http.cors_origins[0]"
        );
        assert_eq!(located(text, "state.dir"), "state.dir");
    }
}
