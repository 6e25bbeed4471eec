//! Carrying out a plan: the only module of `docker` that writes to the filesystem.
//!
//! It decides nothing; it does what each [`Edit`] says, in order.

use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use crate::atomic::{self, Perms};

use super::model::{io, DockerConfigError, Edit, Previous};

/// Carries out the edits. Each file is replaced atomically; daemon.json gets a timestamped
/// backup beside it first.
pub fn apply(edits: &[Edit], stamp: &str) -> Result<(), DockerConfigError> {
    let perms = Perms {
        mode: 0o644,
        owner: None,
    };
    for e in edits {
        match e {
            Edit::Write {
                path,
                before,
                after,
                backup,
            } => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(io(dir))?;
                }
                if let (true, Some(old)) = (*backup, before) {
                    let name = path.file_name().unwrap_or_default().to_string_lossy();
                    let copy = path.with_file_name(format!("{name}.{stamp}.bak"));
                    std::fs::write(&copy, old).map_err(io(&copy))?;
                }
                atomic::replace(path, after.as_bytes(), perms).map_err(|(p, e)| io(&p)(e))?;
            }
            Edit::Link { path, target } => {
                if let Some(dir) = path.parent() {
                    // Where the channel link goes: root's, and not writable by others, since
                    // dockerd runs what is there as root.
                    std::fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o755)
                        .create(dir)
                        .map_err(io(dir))?;
                }
                replace_with_link(path, target)?
            }
            Edit::Restore { path, previous } => match previous {
                Previous::Absent | Previous::Json(_) | Previous::Path(_) => remove(path)?,
                Previous::Link(t) => replace_with_link(path, Path::new(t))?,
                Previous::File(text) => {
                    let exec = Perms {
                        mode: 0o755,
                        owner: None,
                    };
                    remove(path)?;
                    atomic::replace(path, text.as_bytes(), exec).map_err(|(p, e)| io(&p)(e))?;
                }
            },
            Edit::Remove { path } => remove(path)?,
            Edit::RemoveDir { path } => match std::fs::remove_dir(path) {
                // Something was put there since configure: it stays, and so does the directory.
                Err(e)
                    if !matches!(
                        e.kind(),
                        std::io::ErrorKind::NotFound | std::io::ErrorKind::DirectoryNotEmpty
                    ) =>
                {
                    return Err(io(path)(e))
                }
                _ => {}
            },
        }
    }
    Ok(())
}

fn remove(path: &Path) -> Result<(), DockerConfigError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(path)(e)),
        _ => Ok(()),
    }
}

/// Puts a symlink at `path` in one rename, so the runtimes dir never lacks the entry.
fn replace_with_link(path: &Path, target: &Path) -> Result<(), DockerConfigError> {
    let tmp = path.with_file_name(format!(
        ".{}.gpu-share-{}.tmp",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}
