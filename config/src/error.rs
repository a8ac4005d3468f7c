//! Config errors that name the file, the line and the key.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {file}: {error}")]
    Io { file: String, error: String },
    #[error("{0}")]
    Invalid(Located),
    /// A file named by a key (e.g. `http.bearer_token_file`) is unusable.
    #[error("{key}: {file}: {error}")]
    KeyFile { key: String, file: String, error: String },
}

/// An error at a place in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub file: String,
    /// 1-based; None when the place is unknown (e.g. a missing key).
    pub line: Option<usize>,
    /// Dotted key path such as `smtp.idle_timeout`; empty for syntax errors.
    pub key: String,
    pub message: String,
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid config {}", self.file)?;
        if let Some(line) = self.line {
            write!(f, " line {line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ", key `{}`", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl ConfigError {
    pub(crate) fn from_toml(file: &str, text: &str, key: &str, e: toml::de::Error) -> Self {
        let mut key = key.to_string();
        let message = e.message().trim().to_string();
        // serde reports an unknown key inside its parent's path; name the key itself.
        if let Some(field) = unknown_field(&message) {
            if key.is_empty() || key == "." {
                key = field;
            } else if !(key == field || key.ends_with(&format!(".{field}"))) {
                key = format!("{key}.{field}");
            }
        }
        let line = e.span().map(|span| line_of(text, span.start)).or_else(|| find_key_line(text, &key));
        ConfigError::Invalid(Located {
            file: file.to_string(),
            line,
            key: if key == "." { String::new() } else { key },
            message,
        })
    }

    pub(crate) fn invalid(file: &str, text: &str, key: &str, message: String) -> Self {
        ConfigError::Invalid(Located {
            file: file.to_string(),
            line: find_key_line(text, key),
            key: key.to_string(),
            message,
        })
    }
}

fn unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    Some(rest[..rest.find('`')?].to_string())
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|b| *b == b'\n').count() + 1
}

/// Find the line of `section.key` by scanning `[section]` headers and `key =` lines.
fn find_key_line(text: &str, dotted: &str) -> Option<usize> {
    let (section, key) = dotted.rsplit_once('.').unwrap_or(("", dotted));
    let mut current = String::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.trim().to_string();
            continue;
        }
        let Some((k, _)) = line.split_once('=') else { continue };
        if current == section && k.trim().trim_matches('"') == key {
            return Some(i + 1);
        }
    }
    None
}
