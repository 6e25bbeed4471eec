//! The live GPU assignment: `<state.dir>/placements.json`, read and changed only under an
//! exclusive `flock` on `<state.dir>/placements.lock`, written atomically.
//!
//! Entries are never trusted to be removed: a container is live while runc has its state
//! (`<runc root>/<id>/state.json`) or while the create that placed it still runs (its pid, with
//! the process start time so a reused pid does not count). Everything else is dropped by
//! `reconcile`, which every reader runs first: a `delete`, a crash or a create killed half-way
//! never holds a GPU past the next look.

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use super::{Assignment, GpuLoad, Kind, Load};
use crate::atomic::{self, Perms};
use crate::timestamp::now_rfc3339;

/// runc's state root when `--root` is not given.
pub const RUNC_DEFAULT_ROOT: &str = "/run/runc";

const STATE_FILE: &str = "placements.json";
const LOCK_FILE: &str = "placements.lock";

/// One live container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub id: String,
    /// runc's `--root` for this container.
    pub root: String,
    pub gpus: Vec<u32>,
    pub kind: Kind,
    /// The create's pid (runc's, once the shim has exec'd) and its start time in clock ticks.
    pub pid: i32,
    pub start_time: u64,
    pub created: String,
}

impl Entry {
    /// The entry for the container this process is creating: runc's `--root` (absolute) and
    /// this pid, which runc keeps once the shim has exec'd it.
    pub fn for_this_create(
        id: String,
        runc_root: Option<&OsStr>,
        assignment: &Assignment,
    ) -> Entry {
        let pid = std::process::id() as i32;
        Entry {
            id,
            root: absolute_root(runc_root),
            gpus: assignment.gpus.clone(),
            kind: assignment.kind,
            pid,
            start_time: process_start_time(pid).unwrap_or(0),
            created: now_rfc3339(),
        }
    }
}

impl Entry {
    /// The entry, also holding `held` (GPUs the spec held before it was placed: a privileged
    /// spec's nodes): the load counts every GPU a container can open, not only those placed.
    pub fn also_holding(mut self, held: &[u32]) -> Entry {
        for &g in held {
            if !self.gpus.contains(&g) {
                self.gpus.push(g);
            }
        }
        self
    }
}

/// runc's `--root` as given (runc's default when absent), made absolute: the state file keys
/// containers by it.
fn absolute_root(root: Option<&OsStr>) -> String {
    let root = root
        .filter(|r| !r.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(RUNC_DEFAULT_ROOT));
    let absolute = if root.is_absolute() {
        root
    } else {
        std::env::current_dir().unwrap_or_default().join(root)
    };
    absolute.display().to_string()
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Assignments {
    pub version: u32,
    pub containers: Vec<Entry>,
}

#[derive(Debug, thiserror::Error)]
#[error("state {path}: {source}")]
pub struct StateError {
    pub path: String,
    pub source: io::Error,
}

fn err(path: &Path) -> impl FnOnce(io::Error) -> StateError + '_ {
    move |source| StateError {
        path: path.display().to_string(),
        source,
    }
}

/// The assignment, held under the lock until dropped.
pub struct Locked {
    _lock: Flock<File>,
    path: PathBuf,
    pub assignments: Assignments,
    /// The file held something that was not a valid assignment; it was started afresh.
    pub was_corrupt: bool,
}

/// Takes the lock (creating the directory and files as needed) and reads the assignment.
pub fn lock(dir: &Path) -> Result<Locked, StateError> {
    std::fs::create_dir_all(dir).map_err(err(dir))?;
    let lock_path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(&lock_path)
        .map_err(err(&lock_path))?;
    let lock = Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, e)| err(&lock_path)(io::Error::from(e)))?;
    let path = dir.join(STATE_FILE);
    let (assignments, was_corrupt) = match std::fs::read(&path) {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(a) => (a, false),
            Err(_) => (Assignments::default(), true),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => (Assignments::default(), false),
        Err(e) => return Err(err(&path)(e)),
    };
    Ok(Locked {
        _lock: lock,
        path,
        assignments,
        was_corrupt,
    })
}

/// The assignment under the lock, without creating anything: `None` where no state file exists
/// (nothing recorded yet, or no state dir at all).
pub fn peek(dir: &Path) -> Result<Option<Locked>, StateError> {
    if !dir.join(STATE_FILE).exists() {
        return Ok(None);
    }
    lock(dir).map(Some)
}

/// Reads the assignment without changing it (still under the lock, so it is whole).
pub fn read(dir: &Path) -> Result<Assignments, StateError> {
    if !dir.join(STATE_FILE).exists() {
        return Ok(Assignments::default());
    }
    lock(dir).map(|l| l.assignments)
}

impl Locked {
    /// Drops every entry whose container is gone. Returns how many.
    pub fn reconcile(&mut self) -> usize {
        let before = self.assignments.containers.len();
        self.assignments.containers.retain(is_live);
        before - self.assignments.containers.len()
    }

    /// Live containers per GPU.
    pub fn load(&self) -> Load {
        load_of(&self.assignments)
    }

    /// Records a container, replacing an older entry for the same id and root.
    pub fn record(&mut self, entry: Entry) {
        self.assignments
            .containers
            .retain(|e| !(e.id == entry.id && e.root == entry.root));
        self.assignments.containers.push(entry);
    }

    pub fn save(&mut self) -> Result<(), StateError> {
        self.assignments.version = 1;
        let bytes = serde_json::to_vec_pretty(&self.assignments).map_err(|e| StateError {
            path: self.path.display().to_string(),
            source: io::Error::other(e),
        })?;
        let perms = Perms {
            mode: 0o644,
            owner: None,
        };
        atomic::replace_as_sole_writer(&self.path, &bytes, perms).map_err(|(path, source)| {
            StateError {
                path: path.display().to_string(),
                source,
            }
        })
    }
}

/// Live containers per GPU in an assignment.
pub fn load_of(assignments: &Assignments) -> Load {
    let mut load = Load::new();
    for e in &assignments.containers {
        for &g in &e.gpus {
            let l: &mut GpuLoad = load.entry(g).or_default();
            l.containers += 1;
            if e.kind == Kind::Reserved {
                l.reserved += 1;
            }
        }
    }
    load
}

/// Whether runc still has the container, or its create is still running.
pub fn is_live(e: &Entry) -> bool {
    Path::new(&e.root).join(&e.id).join("state.json").exists()
        || process_start_time(e.pid) == Some(e.start_time)
}

/// A process's start time (field 22 of `/proc/<pid>/stat`), in clock ticks since boot.
pub fn process_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count from its end.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, root: &Path, gpus: &[u32], kind: Kind, pid: i32) -> Entry {
        Entry {
            id: id.into(),
            root: root.display().to_string(),
            gpus: gpus.to_vec(),
            kind,
            pid,
            start_time: process_start_time(pid).unwrap_or(0),
            created: "now".into(),
        }
    }

    #[test]
    fn own_start_time_is_read() {
        let me = std::process::id() as i32;
        assert!(process_start_time(me).is_some());
        assert_eq!(process_start_time(-5), None);
    }

    #[test]
    fn records_reconcile_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let runc_root = dir.path().join("runc");
        std::fs::create_dir_all(runc_root.join("alive")).unwrap();
        std::fs::write(runc_root.join("alive/state.json"), b"{}").unwrap();
        let me = std::process::id() as i32;
        {
            let mut l = lock(dir.path()).unwrap();
            l.record(entry("alive", &runc_root, &[0], Kind::Shared, 999_999_999));
            l.record(entry("creating", &runc_root, &[1], Kind::Reserved, me));
            l.record(entry("gone", &runc_root, &[1], Kind::Shared, 999_999_999));
            l.save().unwrap();
        }
        let mut l = lock(dir.path()).unwrap();
        assert_eq!(l.assignments.containers.len(), 3);
        assert_eq!(l.reconcile(), 1);
        let load = l.load();
        assert_eq!(
            load[&0],
            GpuLoad {
                containers: 1,
                reserved: 0
            }
        );
        assert_eq!(
            load[&1],
            GpuLoad {
                containers: 1,
                reserved: 1
            }
        );
    }

    #[test]
    fn a_recorded_id_is_replaced_not_doubled() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = lock(dir.path()).unwrap();
        l.record(entry("a", dir.path(), &[0], Kind::Shared, 1));
        l.record(entry("a", dir.path(), &[2], Kind::Shared, 1));
        assert_eq!(l.assignments.containers.len(), 1);
        assert_eq!(l.assignments.containers[0].gpus, vec![2]);
    }

    #[test]
    fn a_corrupt_file_starts_afresh() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STATE_FILE), b"{not json").unwrap();
        let l = lock(dir.path()).unwrap();
        assert!(l.was_corrupt);
        assert!(l.assignments.containers.is_empty());
    }
}
