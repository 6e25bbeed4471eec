//! Replacing a file whole: write a temp file beside it, rename it over the file. Readers never
//! see a half-written file, and a writer killed at any point leaves the old contents or the new,
//! never a mix.
//!
//! Whether the write must also survive a power cut is the caller's to say:
//! - [`replace`] is durable: the temp file is fsync'd before the rename and the directory after
//!   it. For what an operator keeps across reboots: dockerd's configuration (`gpu-share
//!   configure`), the GPU cache.
//! - [`replace_volatile`] and [`replace_volatile_as_sole_writer`] skip both fsyncs. For what
//!   the runtime writes on every create: the bundle's `config.json` and the placement state.
//!   Both live on tmpfs on a real host (dockerd's bundles under `/run/containerd`, `state.dir`
//!   under `/run`), where fsync does nothing but cost syscalls, and neither means anything after
//!   a reboot: the containers they describe are gone, the bundles are made again, and a state
//!   file that did not reach the disk (`state.dir` moved to one) reads as empty or corrupt and
//!   is rebuilt from runc's state. runc does not fsync its own `state.json` either.
//!
//! Owns the temp files beside each file it writes, and clearing the stale ones a writer killed
//! mid-write left, so they cannot pile up:
//! - a writer that may have company names its temp for its pid (`.NAME.gpu-share-PID.tmp`), and
//!   first removes the leftovers of writers that are gone (a directory scan);
//! - a sole writer (one holding the lock every writer of the file takes: the placement state,
//!   and the bundle's spec written under it) has one temp name (`.NAME.gpu-share.tmp`): a
//!   killed writer's leftover is replaced by the next write, with no scan (six syscalls a
//!   write, on every create).
//!
//! It must never remove a temp file another live writer is still writing, nor any file that
//! is not one of its temps.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::unistd::Pid;

/// A way to replace a file whole ([`replace_volatile`], [`replace_volatile_as_sole_writer`]).
pub type Replace = fn(&Path, &[u8], Perms) -> Result<(), (PathBuf, io::Error)>;

/// Mode and owner for the new file.
#[derive(Debug, Clone, Copy)]
pub struct Perms {
    pub mode: u32,
    pub owner: Option<(u32, u32)>,
}

/// Writes `bytes` to `path` atomically. On error the temp file is removed and `path` is as it
/// was. The error carries the path it concerns.
///
/// Others may be writing `path` at the same time (two creates on one bundle, two `gpu-share`
/// commands), so a leftover temp is removed only once the process its name carries is gone.
pub fn replace(path: &Path, bytes: &[u8], perms: Perms) -> Result<(), (PathBuf, io::Error)> {
    replace_with(path, bytes, perms, Writer::SHARED_DURABLE)
}

/// As [`replace`], without the fsyncs: for a file that need not survive a power cut (see the
/// module's doc).
pub fn replace_volatile(
    path: &Path,
    bytes: &[u8],
    perms: Perms,
) -> Result<(), (PathBuf, io::Error)> {
    replace_with(path, bytes, perms, Writer::SHARED_VOLATILE)
}

/// As [`replace_volatile`], for a caller that holds the lock every writer of `path` takes (the
/// placement state, a spec written under it): its temp has one name, and a leftover of a
/// killed writer is simply replaced, with no directory scan.
pub fn replace_volatile_as_sole_writer(
    path: &Path,
    bytes: &[u8],
    perms: Perms,
) -> Result<(), (PathBuf, io::Error)> {
    replace_with(path, bytes, perms, Writer::SOLE_VOLATILE)
}

/// Who else may write the file, and whether the write must reach the disk.
#[derive(Clone, Copy)]
struct Writer {
    sole: bool,
    durable: bool,
}

impl Writer {
    const SHARED_DURABLE: Writer = Writer {
        sole: false,
        durable: true,
    };
    const SHARED_VOLATILE: Writer = Writer {
        sole: false,
        durable: false,
    };
    const SOLE_VOLATILE: Writer = Writer {
        sole: true,
        durable: false,
    };
}

fn replace_with(
    path: &Path,
    bytes: &[u8],
    perms: Perms,
    writer: Writer,
) -> Result<(), (PathBuf, io::Error)> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = if writer.sole {
        dir.join(sole_temp_name(&name))
    } else {
        remove_stale_temps(dir, &name);
        dir.join(temp_name(&name, std::process::id()))
    };
    let result = write_temp(&tmp, bytes, perms, writer).and_then(|()| {
        pause_for_tests(&name);
        std::fs::rename(&tmp, path).map_err(|e| (path.to_path_buf(), e))?;
        if !writer.durable {
            return Ok(());
        }
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| (dir.to_path_buf(), e))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn temp_name(name: &str, pid: u32) -> String {
    format!(".{name}.gpu-share-{pid}.tmp")
}

/// The one temp name of a sole writer: the lock it holds keeps any other writer off it.
fn sole_temp_name(name: &str) -> String {
    format!(".{name}.gpu-share.tmp")
}

/// The writer's pid a temp file of `name` carries; `None` for any other file.
fn temp_writer(file: &str, name: &str) -> Option<u32> {
    let pid = file
        .strip_prefix('.')?
        .strip_prefix(name)?
        .strip_prefix(".gpu-share-")?
        .strip_suffix(".tmp")?;
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// Whether a process with this pid exists (a pid that cannot be one counts as gone).
fn process_exists(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    pid > 0 && nix::sys::signal::kill(Pid::from_raw(pid), None) != Err(Errno::ESRCH)
}

/// Removes the temps of `name` in `dir` that writers killed mid-write left: those whose writer
/// is gone. Best effort: a leftover that cannot be removed costs a file, never the write.
fn remove_stale_temps(dir: &Path, name: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let me = std::process::id();
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(pid) = file.to_str().and_then(|f| temp_writer(f, name)) else {
            continue;
        };
        // Our own name is write_temp's to replace.
        if pid != me && !process_exists(pid) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Debug builds only: with `GPU_SHARE_TEST_HOLD_TEMP=NAME:MS`, wait MS milliseconds between
/// writing the temp file for a file named NAME and renaming it, so a test can kill a writer
/// mid-write.
fn pause_for_tests(name: &str) {
    #[cfg(debug_assertions)]
    if let Some(ms) = std::env::var("GPU_SHARE_TEST_HOLD_TEMP")
        .ok()
        .and_then(|v| {
            let (file, ms) = v.split_once(':')?;
            (file == name).then(|| ms.parse().ok())?
        })
    {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}

fn write_temp(
    tmp: &Path,
    bytes: &[u8],
    perms: Perms,
    writer: Writer,
) -> Result<(), (PathBuf, io::Error)> {
    let err = |e| (tmp.to_path_buf(), e);
    // Always a new file: whatever already has the temp's name (a killed writer's leftover, or a
    // FIFO or hard link someone put there) is unlinked, never opened, so it can neither block
    // the write nor have another file's bytes replaced through it.
    let create = || {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(tmp)
    };
    // A temp file left by a process killed mid-write is ours to replace: a sole writer's always
    // (its one name), a shared writer's where the pid was reused. Removed only when it is there,
    // to spare every write an `unlink`.
    let mut file = match create() {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let _ = std::fs::remove_file(tmp);
            create()
        }
        other => other,
    }
    .map_err(err)?;
    file.write_all(bytes).map_err(err)?;
    if let Some((uid, gid)) = perms.owner {
        // Only matters when the owner differs from the writer's; failing to change it is not
        // worth refusing the write for.
        let _ = std::os::unix::fs::fchown(&file, Some(uid), Some(gid));
    }
    file.set_permissions(std::fs::Permissions::from_mode(perms.mode))
        .map_err(err)?;
    if writer.durable {
        file.sync_all().map_err(err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn mode(mode: u32) -> Perms {
        Perms { mode, owner: None }
    }

    #[test]
    fn replaces_whole_with_the_mode_asked_and_no_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.json");
        std::fs::write(&p, b"old").unwrap();
        let perms = mode(0o640);
        replace(&p, b"new", perms).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o7777, 0o640);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_leftover_temp_with_this_pid_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.json");
        // A writer killed mid-write whose pid this process now has.
        let mine = dir.path().join(temp_name("f.json", std::process::id()));
        std::fs::write(&mine, b"half").unwrap();
        let perms = mode(0o644);
        replace_volatile(&p, b"new", perms).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert_eq!(names_in(dir.path()), ["f.json"]);
    }

    #[test]
    fn failure_leaves_the_file_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("is-a-dir");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("inside"), b"x").unwrap();
        let perms = mode(0o644);
        let (path, _) = replace(&target, b"new", perms).unwrap_err();
        assert_eq!(path, target);
        assert!(target.join("inside").exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    const GONE: u32 = 999_999_999;

    #[test]
    fn leftover_temps_of_gone_writers_are_removed_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.json");
        for file in [
            temp_name("f.json", GONE),
            temp_name("f.json", GONE - 1),
            // pid 1 is alive: another writer still at work.
            temp_name("f.json", 1),
            // Not temps of this file.
            temp_name("g.json", GONE),
            ".f.json.gpu-share-x.tmp".to_owned(),
            "f.json.gpu-share-5.tmp".to_owned(),
        ] {
            std::fs::write(dir.path().join(file), b"half").unwrap();
        }
        let perms = mode(0o644);
        replace(&p, b"new", perms).unwrap();
        assert_eq!(
            names_in(dir.path()),
            [
                ".f.json.gpu-share-1.tmp",
                ".f.json.gpu-share-x.tmp",
                &temp_name("g.json", GONE),
                "f.json",
                "f.json.gpu-share-5.tmp"
            ]
        );
    }

    #[test]
    fn a_sole_writer_reuses_its_one_temp_name_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.json");
        // A sole writer killed mid-write: a longer half-written temp.
        std::fs::write(
            dir.path().join(sole_temp_name("f.json")),
            b"half written, long",
        )
        .unwrap();
        let perms = mode(0o644);
        replace_volatile_as_sole_writer(&p, b"newer", perms).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"newer");
        assert_eq!(names_in(dir.path()), ["f.json"]);
        replace_volatile_as_sole_writer(&p, b"new", perms).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert_eq!(names_in(dir.path()), ["f.json"]);
    }

    #[test]
    fn what_holds_the_temp_name_is_replaced_never_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.json");
        let tmp = dir.path().join(sole_temp_name("f.json"));
        let perms = mode(0o644);
        // A FIFO with no reader: opening it for writing would wait for ever.
        nix::unistd::mkfifo(&tmp, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        replace_volatile_as_sole_writer(&p, b"one", perms).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"one");
        // A hard link to another file: that file keeps its bytes.
        let other = dir.path().join("other");
        std::fs::write(&other, b"keep me").unwrap();
        std::fs::hard_link(&other, &tmp).unwrap();
        replace_volatile_as_sole_writer(&p, b"two", perms).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read(&other).unwrap(), b"keep me");
        assert_eq!(names_in(dir.path()), ["f.json", "other"]);
    }
}
