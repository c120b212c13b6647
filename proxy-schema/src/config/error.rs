//! The configuration's errors: [`ConfigError`] (what the operator sees: file, line,
//! column, key, message), [`ConfigIssue`] (a problem attached to a key, found after
//! parsing) and [`KeyPath`] (`listener[1].tls.certificates[0].cert`).

use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// `file:line:column: key: message`.
    #[error("{}", format_invalid(.path, *.line, *.column, .key, .message))]
    Invalid {
        path: PathBuf,
        /// 1-based; 0 when the position is unknown.
        line: usize,
        column: usize,
        /// Dotted key path, e.g. `listener[0].tls.min_version` (empty: whole file).
        key: String,
        message: String,
    },
}

fn format_invalid(path: &Path, line: usize, column: usize, key: &str, message: &str) -> String {
    let at = match line {
        0 => format!("{}", path.display()),
        _ => format!("{}:{line}:{column}", path.display()),
    };
    match key {
        "" => format!("{at}: {message}"),
        _ => format!("{at}: `{key}`: {message}"),
    }
}

/// A problem found after parsing, attached to the key it concerns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{key}`: {message}")]
pub struct ConfigIssue {
    pub key: KeyPath,
    pub message: String,
}

impl ConfigIssue {
    pub fn new(key: KeyPath, message: impl Into<String>) -> ConfigIssue {
        ConfigIssue {
            key,
            message: message.into(),
        }
    }
}

/// A path to a key: `listener[1].tls.certificates[0].cert`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPath(pub(super) Vec<Segment>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Segment {
    Key(String),
    Index(usize),
}

impl KeyPath {
    pub fn root() -> KeyPath {
        KeyPath::default()
    }
    pub fn key(&self, key: &str) -> KeyPath {
        let mut p = self.clone();
        p.0.push(Segment::Key(key.to_owned()));
        p
    }
    pub fn index(&self, index: usize) -> KeyPath {
        let mut p = self.clone();
        p.0.push(Segment::Index(index));
        p
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Segment::Key(k) if i == 0 => write!(f, "{k}")?,
                Segment::Key(k) => write!(f, ".{k}")?,
                Segment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}
