//! Why a file (the service config, the registry) could not be loaded. Every variant names the
//! file, and where it can the line and the key, so an installer fixes it in one look.

use std::path::PathBuf;

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

/// Formats a TOML error as `line L, column C: message`, keeping toml's own key naming.
pub fn toml_error_message(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim().to_string();
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before
                .rfind('\n')
                .map_or(before.len(), |n| before.len() - n - 1)
                + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message,
    }
}
