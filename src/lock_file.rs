//! The lock files beside the files gpu-share keeps under `state.dir` (the placement state's,
//! `health.json`'s): opened one way (created 0600, never through a symlink, not inherited by
//! runc) and `flock`ed exclusively, the directory made only when the file cannot be opened (so
//! a create on a host already set up spends no `mkdir`).
//!
//! Owns opening and locking. What a lock guards, and reading or writing it, is the caller's.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

/// `dir/name`, locked exclusively until the returned value is dropped. The error carries the
/// path it concerns.
pub fn exclusive(dir: &Path, name: &str) -> Result<Flock<File>, (PathBuf, io::Error)> {
    let path = dir.join(name);
    let open = || {
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(&path)
    };
    let file = match open() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(|e| (dir.to_owned(), e))?;
            open()
        }
        other => other,
    }
    .map_err(|e| (path.clone(), e))?;
    Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| (path, io::Error::from(e)))
}
