//! The node's identity: a UUID created on first start and kept in the data directory, so log
//! records and xfer loop guards name the same node across restarts.

use std::path::Path;

use anyhow::Context;
use uuid::Uuid;

pub fn node_id(data_dir: &Path, configured: Option<&str>) -> anyhow::Result<Uuid> {
    if let Some(id) = configured {
        return Uuid::parse_str(id).with_context(|| format!("node.id {id:?} is not a UUID"));
    }
    let file = data_dir.join("node_id");
    match std::fs::read_to_string(&file) {
        Ok(text) => {
            Uuid::parse_str(text.trim()).with_context(|| format!("{} does not hold a UUID", file.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = Uuid::new_v4();
            // Write-then-rename so a crash never leaves a half-written id behind.
            let tmp = data_dir.join("node_id.tmp");
            std::fs::write(&tmp, format!("{}\n", id.hyphenated()))
                .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
                .and_then(|()| std::fs::rename(&tmp, &file))
                .with_context(|| format!("cannot write {}", file.display()))?;
            Ok(id)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", file.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = node_id(dir.path(), None).unwrap();
        assert_eq!(node_id(dir.path(), None).unwrap(), first);
        let configured = "557f3ad4-2c8c-11ee-976e-782d7e12e173";
        assert_eq!(node_id(dir.path(), Some(configured)).unwrap().to_string(), configured);
        std::fs::write(dir.path().join("node_id"), "garbage").unwrap();
        assert!(node_id(dir.path(), None).unwrap_err().to_string().contains("does not hold a UUID"));
    }
}
