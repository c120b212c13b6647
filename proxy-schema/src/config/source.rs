//! Reading and parsing: the file's text through toml (with spans) into the schema,
//! then validation; every error is located in the file.

use std::path::Path;

use super::error::{ConfigError, ConfigIssue};
use super::origin::{Origin, key_path_at};
use super::schema::Config;

/// Reads, parses and validates a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_with_origin(&text, path)
}

/// Parses and validates configuration text; the error names line, key and problem.
pub fn parse(text: &str) -> Result<Config, String> {
    parse_with_origin(text, Path::new("<config>")).map_err(|e| e.to_string())
}

fn parse_with_origin(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let origin = Origin {
        path: path.to_owned(),
        text: text.into(),
    };
    let mut config: Config = match toml::from_str(text) {
        Ok(config) => config,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            let key = key_path_at(text, span.start);
            return Err(origin.error(span, key, e.message().to_owned()));
        }
    };
    config.origin = origin;
    config.validate().map_err(|issue| config.locate(issue))?;
    Ok(config)
}

impl Config {
    /// Turns an issue into an error with the file, line and column of its key.
    pub fn locate(&self, issue: ConfigIssue) -> ConfigError {
        self.origin.locate(issue)
    }
}
