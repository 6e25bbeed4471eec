//! Replacing a file whole: write a temp file beside it, fsync, rename over it, fsync the
//! directory. A crash leaves the old contents or the new, never a mix, and readers never see a
//! half-written file.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode and owner for the new file.
#[derive(Debug, Clone, Copy)]
pub struct Perms {
    pub mode: u32,
    pub owner: Option<(u32, u32)>,
}

/// Writes `bytes` to `path` atomically. On error the temp file is removed and `path` is as it
/// was. The error carries the path it concerns.
pub fn replace(path: &Path, bytes: &[u8], perms: Perms) -> Result<(), (PathBuf, io::Error)> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.gpu-share-{}.tmp", std::process::id()));
    let result = write_temp(&tmp, bytes, perms).and_then(|()| {
        std::fs::rename(&tmp, path).map_err(|e| (path.to_path_buf(), e))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| (dir.to_path_buf(), e))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn write_temp(tmp: &Path, bytes: &[u8], perms: Perms) -> Result<(), (PathBuf, io::Error)> {
    let err = |e| (tmp.to_path_buf(), e);
    // A temp file left by a process killed mid-write has this pid's name only if the pid was
    // reused; it is ours to replace.
    let _ = std::fs::remove_file(tmp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(tmp)
        .map_err(err)?;
    file.write_all(bytes).map_err(err)?;
    if let Some((uid, gid)) = perms.owner {
        // Only matters when the owner differs from the writer's; failing to change it is not
        // worth refusing the write for.
        let _ = std::os::unix::fs::fchown(&file, Some(uid), Some(gid));
    }
    file.set_permissions(std::fs::Permissions::from_mode(perms.mode))
        .map_err(err)?;
    file.sync_all().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn replaces_whole_with_the_mode_asked_and_no_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.json");
        std::fs::write(&p, b"old").unwrap();
        let perms = Perms {
            mode: 0o640,
            owner: None,
        };
        replace(&p, b"new", perms).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o7777, 0o640);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn failure_leaves_the_file_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("is-a-dir");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("inside"), b"x").unwrap();
        let perms = Perms {
            mode: 0o644,
            owner: None,
        };
        let (path, _) = replace(&target, b"new", perms).unwrap_err();
        assert_eq!(path, target);
        assert!(target.join("inside").exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
