//! Where a configuration came from (file and text), and positions in that text: a
//! [`KeyPath`] back to a line and column, a byte offset to the key there.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use toml::de::{DeTable, DeValue};

use super::error::{ConfigError, ConfigIssue, KeyPath, Segment};

/// The file a configuration was read from and its text.
#[derive(Clone, Default)]
pub struct Origin {
    pub path: PathBuf,
    pub(super) text: Arc<str>,
}

impl fmt::Debug for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.path)
    }
}

impl Origin {
    pub(super) fn error(&self, span: Range<usize>, key: String, message: String) -> ConfigError {
        let (line, column) = match span.start {
            0 if span.end == 0 => (0, 0),
            start => line_column(&self.text, start),
        };
        ConfigError::Invalid {
            path: self.path.clone(),
            line,
            column,
            key,
            message,
        }
    }

    /// Turns an issue into an error with the file, line and column of its key.
    pub fn locate(&self, issue: ConfigIssue) -> ConfigError {
        let span = span_of(&self.text, &issue.key).unwrap_or(0..0);
        self.error(span, issue.key.to_string(), issue.message)
    }
}

/// 1-based line and column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

/// The dotted path of the innermost key whose key or value contains `offset`.
/// (Spans of `[[array]]` tables cover only their header, so this searches the tree.)
pub(super) fn key_path_at(text: &str, offset: usize) -> String {
    fn find(value: &DeValue, offset: usize, path: &KeyPath) -> Option<KeyPath> {
        let children: Vec<(KeyPath, Range<usize>, &toml::Spanned<DeValue>)> = match value {
            DeValue::Table(t) => t
                .iter()
                .map(|(k, v)| (path.key(k.get_ref()), k.span(), v))
                .collect(),
            DeValue::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, v)| (path.index(i), v.span(), v))
                .collect(),
            _ => return None,
        };
        for (child, key_span, v) in children {
            if let Some(deeper) = find(v.get_ref(), offset, &child) {
                return Some(deeper);
            }
            if key_span.contains(&offset) || v.span().contains(&offset) {
                return Some(child);
            }
        }
        None
    }
    match DeTable::parse(text) {
        Ok(doc) => find(&DeValue::Table(doc.into_inner()), offset, &KeyPath::root())
            .map(|p| p.to_string())
            .unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// The span of the key (or the value, for array items) a path names.
fn span_of(text: &str, path: &KeyPath) -> Option<Range<usize>> {
    let doc = DeTable::parse(text).ok()?;
    let mut span = None;
    let mut value: Option<&toml::Spanned<DeValue>> = None;
    let mut table = Some(doc.get_ref());
    for seg in &path.0 {
        match seg {
            Segment::Key(k) => {
                let (key, v) = table?.get_key_value(k.as_str())?;
                span = Some(key.span());
                value = Some(v);
            }
            Segment::Index(i) => {
                let DeValue::Array(items) = value?.get_ref() else {
                    return span;
                };
                let item = items.get(*i)?;
                span = Some(item.span());
                value = Some(item);
            }
        }
        table = match value.map(|v| v.get_ref()) {
            Some(DeValue::Table(t)) => Some(t),
            _ => None,
        };
    }
    span
}
