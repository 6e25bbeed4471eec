//! The live GPU assignment: `<state.dir>/placements.json`, read and changed only under an
//! exclusive `flock` on `<state.dir>/placements.lock`, written atomically.
//!
//! Entries are never trusted to be removed: a container is live while runc has its state
//! (`<runc root>/<id>/state.json`) or while the create that placed it still runs (its pid, with
//! the process start time so a reused pid does not count). Everything else is dropped by
//! `reconcile`, which every reader runs first: a `delete`, a crash or a create killed half-way
//! never holds a GPU past the next look.
//!
//! Nor is a corrupt file ever silently forgotten. Readers (`peek`, `read`) see it as it is and
//! leave it there; the create's `lock` keeps it aside as `placements.json.corrupt-<time>` and
//! rebuilds the assignment from runc's own state (`runc_state`), saying so in
//! `Locked::rebuilt_from` for the create's log.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use nix::fcntl::Flock;
use serde::{Deserialize, Serialize};

use super::{Assignment, GpuLoad, Kind, Load};
use crate::atomic::{self, Perms};
use crate::caps::Caps;
use crate::gpu::Inventory;
use crate::timestamp::now_rfc3339;

mod liveness;
mod rebuilt;
mod runc_state;

pub use liveness::{own_start_time, process_start_time};
pub use rebuilt::Rebuilt;

/// runc's state root when `--root` is not given.
pub const RUNC_DEFAULT_ROOT: &str = "/run/runc";

const STATE_FILE: &str = "placements.json";
const LOCK_FILE: &str = "placements.lock";
/// A corrupt state file is kept aside under this prefix and the time it was found.
const KEPT_ASIDE_PREFIX: &str = "placements.json.corrupt-";

/// One live container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub id: String,
    /// runc's `--root` for this container.
    pub root: String,
    pub gpus: Vec<u32>,
    pub kind: Kind,
    /// The create's pid (runc's, once the shim has exec'd), and a time in clock ticks since
    /// boot at which that process was running (its start time, or a moment after it): a
    /// process now holding the pid that started later is another one.
    pub pid: i32,
    pub start_time: u64,
    pub created: String,
    /// The container's ECS task (from its cgroup parent), for `sharing.reserved = "task"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// Its MPS caps (`isolation.mode = "mps"`), which admission by memory sums per GPU. Absent
    /// in entries of uncapped containers and in files written before caps existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caps: Option<Caps>,
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
            start_time: own_start_time().unwrap_or(0),
            created: now_rfc3339(),
            task: assignment.task.clone(),
            caps: None,
        }
    }

    /// The entry, recording the caps it was given.
    pub fn with_caps(mut self, caps: Option<Caps>) -> Entry {
        self.caps = caps;
        self
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
    /// The file held something that was not a valid assignment. A reader sees no entries; the
    /// create's `lock` rebuilt them (`rebuilt_from`).
    pub was_corrupt: bool,
    /// Where the create's `lock` found the file corrupt: what it did about it, for the log.
    pub rebuilt_from: Option<Rebuilt>,
}

/// Where the truth lies when a corrupt state file must be rebuilt: runc's own state under
/// these roots, and the host's GPUs to map the device nodes it holds back to indices.
pub struct Truth<'a> {
    roots: Vec<PathBuf>,
    inventory: &'a Inventory,
}

impl<'a> Truth<'a> {
    /// runc's state under `roots`, read against `inventory`.
    pub fn new(roots: Vec<PathBuf>, inventory: &'a Inventory) -> Truth<'a> {
        Truth { roots, inventory }
    }

    /// For a create under runc's `--root` (absent: runc's default): that root, and runc's
    /// default one, where creates without `--root` keep their containers.
    pub fn for_create(runc_root: Option<&OsStr>, inventory: &'a Inventory) -> Truth<'a> {
        let mut roots = vec![PathBuf::from(absolute_root(runc_root))];
        let default = PathBuf::from(RUNC_DEFAULT_ROOT);
        if !roots.contains(&default) {
            roots.push(default);
        }
        Truth { roots, inventory }
    }
}

/// The create's lock: takes it (creating the directory and files as needed) and reads the
/// assignment. A corrupt file is kept aside and the assignment rebuilt from `truth` and saved
/// before anything else reads it, so no live container or reservation is forgotten.
pub fn lock(dir: &Path, truth: &Truth) -> Result<Locked, StateError> {
    let (mut locked, corrupt) = open(dir)?;
    if let Some(reason) = corrupt {
        locked.rebuild(dir, truth, reason)?;
    }
    Ok(locked)
}

/// A state file larger than this is corrupt, not read (each container is ~200 bytes of it).
const MAX_STATE_BYTES: usize = 64 << 20;

/// Takes the lock and reads the assignment as it is; a corrupt file reads as empty, and why
/// is returned beside it.
fn open(dir: &Path) -> Result<(Locked, Option<String>), StateError> {
    let lock = crate::lock_file::exclusive(dir, LOCK_FILE).map_err(|(p, e)| err(&p)(e))?;
    let path = dir.join(STATE_FILE);
    let read = crate::read_whole::read_path(&path, 0, 16 * 1024, MAX_STATE_BYTES);
    let (assignments, corrupt) = match read {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(a) => (a, None),
            Err(e) => (Assignments::default(), Some(e.to_string())),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => (Assignments::default(), None),
        Err(e) => return Err(err(&path)(e)),
    };
    let locked = Locked {
        _lock: lock,
        path,
        assignments,
        was_corrupt: corrupt.is_some(),
        rebuilt_from: None,
    };
    Ok((locked, corrupt))
}

/// The assignment under the lock, without creating or changing anything: `None` where no state
/// file exists (nothing recorded yet, or no state dir at all). A corrupt file is left as it is.
pub fn peek(dir: &Path) -> Result<Option<Locked>, StateError> {
    if !dir.join(STATE_FILE).exists() {
        return Ok(None);
    }
    open(dir).map(|(l, _)| Some(l))
}

/// Reads the assignment without changing it (still under the lock, so it is whole).
pub fn read(dir: &Path) -> Result<Assignments, StateError> {
    if !dir.join(STATE_FILE).exists() {
        return Ok(Assignments::default());
    }
    open(dir).map(|(l, _)| l.assignments)
}

/// The corrupt state files kept aside in `dir`, oldest first.
pub fn kept_aside(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(KEPT_ASIDE_PREFIX))
        })
        .map(|e| e.path())
        .collect();
    found.sort();
    found
}

impl Locked {
    /// Keeps the corrupt file aside, then replaces it with the assignment runc's state gives:
    /// every live container holding GPUs, as `shared` (how it came to hold them is not in
    /// runc's state). The copy is made before the new file is written, so a failure on the way
    /// leaves the corrupt file in place for the next create to try again.
    fn rebuild(&mut self, dir: &Path, truth: &Truth, reason: String) -> Result<(), StateError> {
        // Colons make awkward file names for the tools an operator reaches for.
        let kept_aside = dir.join(format!(
            "{KEPT_ASIDE_PREFIX}{}",
            now_rfc3339().replace(':', "")
        ));
        std::fs::hard_link(&self.path, &kept_aside)
            .or_else(|_| std::fs::copy(&self.path, &kept_aside).map(drop))
            .map_err(err(&kept_aside))?;
        let live = runc_state::holding_gpus(&truth.roots, truth.inventory);
        self.assignments.containers = live
            .into_iter()
            .map(|l| Entry {
                id: l.id,
                root: l.root,
                gpus: l.gpus,
                kind: Kind::Shared,
                // Live while runc has its state: no create of ours is running for it (its init
                // process is no such create, and as a zombie it would outlive the container).
                pid: 0,
                start_time: 0,
                created: l.created,
                // Neither the kind nor the task survives in runc's state: the rebuilt entry
                // is a shared container of no task, and of no caps (docs/isolation.md).
                task: None,
                caps: None,
            })
            .collect();
        self.save()?;
        self.rebuilt_from = Some(Rebuilt {
            kept_aside,
            reason,
            roots: truth.roots.clone(),
            containers: self.assignments.containers.len(),
        });
        Ok(())
    }

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
        atomic::replace_volatile_as_sole_writer(&self.path, &bytes, perms).map_err(
            |(path, source)| StateError {
                path: path.display().to_string(),
                source,
            },
        )
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
                l.reserved_for.push(e.task.clone());
            }
        }
    }
    load
}

/// Whether runc still has the container, or its create is still running.
pub fn is_live(e: &Entry) -> bool {
    Path::new(&e.root).join(&e.id).join("state.json").exists()
        || liveness::still_running(e.pid, e.start_time)
}

#[cfg(test)]
mod tests;
