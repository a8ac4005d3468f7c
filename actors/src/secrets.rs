//! Where a secret (a DKIM private key, a password) comes from: KumoMTA's KeySource. A plain string
//! is a file path; `{ key_data = '...' }` is the data itself. Ferry also takes `{ file = '...' }`.
//! Key material is never put in an error or a log line: errors name the file, not its contents.

use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeySource {
    File(PathBuf),
    Data(Vec<u8>),
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read key file {path}: {source}")]
    Unreadable { path: String, source: std::io::Error },
}

impl KeySource {
    /// The secret's bytes. Reads the file each time: callers cache what they build from it.
    pub fn load(&self) -> Result<Vec<u8>, SecretError> {
        match self {
            KeySource::Data(bytes) => Ok(bytes.clone()),
            KeySource::File(path) => std::fs::read(path)
                .map_err(|source| SecretError::Unreadable { path: path.display().to_string(), source }),
        }
    }

    /// What to call this source in an error: the file, or "key_data" (never the data).
    pub fn describe(&self) -> String {
        match self {
            KeySource::File(path) => path.display().to_string(),
            KeySource::Data(_) => "key_data".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_and_file_sources_load_and_a_missing_file_is_named() {
        assert_eq!(KeySource::Data(b"abc".to_vec()).load().unwrap(), b"abc");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        std::fs::write(&path, "secret").unwrap();
        assert_eq!(KeySource::File(path.clone()).load().unwrap(), b"secret");
        let missing = dir.path().join("missing.pem");
        let err = KeySource::File(missing.clone()).load().unwrap_err().to_string();
        assert!(err.contains(&missing.display().to_string()), "{err}");
        assert_eq!(KeySource::Data(b"secret".to_vec()).describe(), "key_data");
    }
}
