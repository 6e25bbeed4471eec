//! `<state.dir>/health.json`: the GPUs the metrics agent marked unhealthy after a critical Xid,
//! until an operator clears them (`gpu-share gpu clear`).
//!
//! Owns the file's format, its one read on the create path, and its writers' lock
//! (`health.lock`, so the agent and `gpu clear` never lose each other's edits). Readers take no
//! lock: the file is only ever replaced whole (`atomic`). Never decides what an unhealthy GPU
//! means for a container (that is `placement`) and never watches for Xids.

use std::io;
use std::path::{Path, PathBuf};

use nix::fcntl::Flock;
use serde::{Deserialize, Serialize};

use crate::atomic::{self, Perms};
use crate::gpu::Inventory;

const HEALTH_FILE: &str = "health.json";
const LOCK_FILE: &str = "health.lock";

/// One GPU marked unhealthy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unhealthy {
    /// The GPU's index when it was marked (the UUID wins where both are known).
    pub index: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// RFC 3339, UTC: when the first critical Xid was seen.
    pub since: String,
    /// The Xid that marked it.
    pub xid: u64,
    /// The driver's words, where the kernel log gave them; else the source.
    #[serde(default)]
    pub message: String,
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HealthFile {
    #[serde(default)]
    pub gpus: Vec<Unhealthy>,
}

#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("{}: {source}", .path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: not a health file ({detail}); remove it or run `gpu-share gpu clear --all`", .path.display())]
    Corrupt { path: PathBuf, detail: String },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> HealthError + '_ {
    move |source| HealthError::Io {
        path: path.to_owned(),
        source,
    }
}

impl HealthFile {
    /// The entry for this GPU: by UUID where both sides know it, else by index.
    pub fn find(&self, index: u32, uuid: Option<&str>) -> Option<&Unhealthy> {
        self.gpus.iter().find(|u| same_gpu(u, index, uuid))
    }

    /// The entries as this inventory numbers its GPUs: an entry whose UUID names a GPU under
    /// another index now takes that index; one whose GPU is gone is left out.
    pub fn on(&self, inventory: &Inventory) -> Vec<Unhealthy> {
        inventory
            .gpus
            .iter()
            .filter_map(|g| {
                let mut u = self.find(g.index, g.info.uuid.as_deref())?.clone();
                u.index = g.index;
                Some(u)
            })
            .collect()
    }
}

fn same_gpu(u: &Unhealthy, index: u32, uuid: Option<&str>) -> bool {
    match (u.uuid.as_deref(), uuid) {
        (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
        _ => u.index == index,
    }
}

/// A health file larger than this is corrupt, not read.
const MAX_HEALTH_BYTES: usize = 16 << 20;

/// Reads the file: one open, no lock. A missing file (or state dir) is every GPU healthy.
pub fn read(dir: &Path) -> Result<HealthFile, HealthError> {
    let path = dir.join(HEALTH_FILE);
    match crate::read_whole::read_path(&path, 0, 4096, MAX_HEALTH_BYTES) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| HealthError::Corrupt {
            path,
            detail: e.to_string(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(HealthFile::default()),
        Err(e) => Err(io_err(&path)(e)),
    }
}

/// The file's writers' lock, held while it lives.
pub struct Locked {
    _lock: Flock<std::fs::File>,
    dir: PathBuf,
    pub file: HealthFile,
}

/// Takes the writers' lock (creating the state dir as needed) and reads the file. A corrupt
/// file reads as empty, so clearing or re-marking replaces it.
pub fn lock(dir: &Path) -> Result<Locked, HealthError> {
    let lock = crate::lock_file::exclusive(dir, LOCK_FILE).map_err(|(p, e)| io_err(&p)(e))?;
    let file = match read(dir) {
        Ok(f) => f,
        Err(HealthError::Corrupt { .. }) => HealthFile::default(),
        Err(e) => return Err(e),
    };
    Ok(Locked {
        _lock: lock,
        dir: dir.to_owned(),
        file,
    })
}

impl Locked {
    /// Marks a GPU unhealthy unless it already is (its first Xid is the one kept). Whether it
    /// was newly marked.
    pub fn mark(&mut self, entry: Unhealthy) -> bool {
        if self.file.find(entry.index, entry.uuid.as_deref()).is_some() {
            return false;
        }
        self.file.gpus.push(entry);
        self.file.gpus.sort_by_key(|u| u.index);
        true
    }

    /// Replaces the file whole; with no GPU left unhealthy, removes it (ENOENT is the cheapest
    /// "all healthy" for a create to read).
    pub fn save(&self) -> Result<(), HealthError> {
        let path = self.dir.join(HEALTH_FILE);
        if self.file.gpus.is_empty() {
            return match std::fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(&path)(e)),
                _ => Ok(()),
            };
        }
        let bytes = serde_json::to_vec_pretty(&self.file).map_err(|e| HealthError::Corrupt {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        let perms = Perms {
            mode: 0o644,
            owner: None,
        };
        atomic::replace_volatile_as_sole_writer(&path, &bytes, perms)
            .map_err(|(p, source)| HealthError::Io { path: p, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u32, uuid: Option<&str>, xid: u64) -> Unhealthy {
        Unhealthy {
            index,
            uuid: uuid.map(str::to_owned),
            since: "2026-11-25T12:00:00Z".into(),
            xid,
            message: String::new(),
        }
    }

    #[test]
    fn no_file_means_every_gpu_healthy() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            read(&dir.path().join("absent")).unwrap(),
            HealthFile::default()
        );
    }

    #[test]
    fn marks_survive_a_round_trip_and_the_first_xid_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = lock(dir.path()).unwrap();
        assert!(l.mark(entry(1, Some("GPU-b"), 79)));
        assert!(!l.mark(entry(1, Some("GPU-B"), 48)));
        l.save().unwrap();
        drop(l);
        let f = read(dir.path()).unwrap();
        assert_eq!(f.gpus, vec![entry(1, Some("GPU-b"), 79)]);
        let mut l = lock(dir.path()).unwrap();
        l.file.gpus.clear();
        l.save().unwrap();
        assert!(!dir.path().join(HEALTH_FILE).exists());
    }

    #[test]
    fn a_corrupt_file_is_an_error_for_readers_and_empty_for_writers() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(HEALTH_FILE), b"{not json").unwrap();
        let e = read(dir.path()).unwrap_err();
        assert!(e.to_string().contains("not a health file"), "{e}");
        assert_eq!(lock(dir.path()).unwrap().file, HealthFile::default());
    }

    #[test]
    fn entries_follow_their_uuid_to_the_current_index() {
        let inv = Inventory::synthetic(3);
        let uuid2 = inv.gpus[2].info.uuid.clone().unwrap();
        let f = HealthFile {
            gpus: vec![
                entry(0, Some(&uuid2), 79),
                entry(1, None, 48),
                entry(5, None, 79),
            ],
        };
        let got: Vec<(u32, u64)> = f.on(&inv).iter().map(|u| (u.index, u.xid)).collect();
        assert_eq!(got, vec![(1, 48), (2, 79)]);
    }
}
