//! Carrying out a plan: the only module of `docker` that writes to the filesystem.
//!
//! It decides nothing; it does what each [`Edit`] says, in order, as one transaction: before
//! each change it keeps what was at the path, and if any edit fails it puts every path back as
//! it was, in reverse order, and removes the directories it made. Planning puts the record
//! first, so a record that cannot be written changes nothing.

use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::atomic::{self, Perms};

use super::model::{io, DockerConfigError, Edit, Previous};

/// What was at a path before an edit changed it.
enum Saved {
    Absent,
    File(Vec<u8>, Perms),
    Link(PathBuf),
    /// An empty directory (the only kind an edit removes).
    Dir,
}

/// The changes made so far, to take back if a later edit fails.
#[derive(Default)]
struct Journal {
    saved: Vec<(PathBuf, Saved)>,
    made_dirs: Vec<PathBuf>,
}

impl Journal {
    fn save(&mut self, path: &Path) -> Result<(), DockerConfigError> {
        let saved = match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Saved::Absent,
            Err(e) => return Err(io(path)(e)),
            Ok(m) if m.file_type().is_symlink() => {
                Saved::Link(std::fs::read_link(path).map_err(io(path))?)
            }
            Ok(m) if m.is_dir() => Saved::Dir,
            Ok(m) => Saved::File(std::fs::read(path).map_err(io(path))?, perms_of(&m)),
        };
        self.saved.push((path.to_path_buf(), saved));
        Ok(())
    }

    /// Makes `dir` and the parents it lacks, noting each made.
    fn make_dirs(&mut self, dir: &Path) -> Result<(), DockerConfigError> {
        let missing: Vec<PathBuf> = dir
            .ancestors()
            .take_while(|d| !d.as_os_str().is_empty() && std::fs::symlink_metadata(d).is_err())
            .map(Path::to_path_buf)
            .collect();
        // Root's, and not writable by others: dockerd runs what is linked there as root.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(io(dir))?;
        self.made_dirs.extend(missing);
        Ok(())
    }

    /// Puts everything back; best effort, since the first error is what is reported.
    fn roll_back(self) {
        for (path, saved) in self.saved.into_iter().rev() {
            match saved {
                Saved::Absent => {
                    let _ = std::fs::remove_file(&path);
                }
                Saved::File(bytes, perms) => {
                    let _ = atomic::replace(&path, &bytes, perms);
                }
                Saved::Link(t) => {
                    let _ = replace_with_link(&path, &t);
                }
                Saved::Dir => {
                    let _ = std::fs::create_dir(&path);
                }
            }
        }
        // Deepest first: each is empty again once those below it are gone.
        let mut dirs = self.made_dirs;
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for d in dirs {
            let _ = std::fs::remove_dir(d);
        }
    }
}

fn perms_of(m: &std::fs::Metadata) -> Perms {
    Perms {
        mode: m.mode() & 0o7777,
        owner: Some((m.uid(), m.gid())),
    }
}

/// Where a write to `path` goes: through a symlink to the file it names, so that the link stays
/// a link.
fn write_target(path: &Path) -> PathBuf {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => std::fs::canonicalize(path)
            .or_else(|_| {
                std::fs::read_link(path).map(|t| path.parent().unwrap_or(Path::new("/")).join(t))
            })
            .unwrap_or_else(|_| path.to_path_buf()),
        _ => path.to_path_buf(),
    }
}

/// Carries out the edits, all or none. Each file is replaced atomically with its mode and
/// owner kept; daemon.json's backup, where planning asks for one, is `NAME.gpu-share.bak`.
pub fn apply(edits: &[Edit]) -> Result<(), DockerConfigError> {
    let mut journal = Journal::default();
    for e in edits {
        if let Err(err) = apply_one(e, &mut journal) {
            journal.roll_back();
            return Err(err);
        }
    }
    Ok(())
}

fn apply_one(e: &Edit, journal: &mut Journal) -> Result<(), DockerConfigError> {
    let new_file = Perms {
        mode: 0o644,
        owner: None,
    };
    match e {
        Edit::Write {
            path,
            before,
            after,
            backup,
        } => {
            let target = write_target(path);
            if let Some(dir) = target.parent() {
                journal.make_dirs(dir)?;
            }
            let perms = std::fs::metadata(&target)
                .map(|m| perms_of(&m))
                .unwrap_or(new_file);
            if let (true, Some(old)) = (*backup, before) {
                let name = path.file_name().unwrap_or_default().to_string_lossy();
                let copy = target.with_file_name(format!("{name}.gpu-share.bak"));
                journal.save(&copy)?;
                atomic::replace(&copy, old.as_bytes(), perms).map_err(|(p, e)| io(&p)(e))?;
            }
            journal.save(&target)?;
            atomic::replace(&target, after.as_bytes(), perms).map_err(|(p, e)| io(&p)(e))?;
        }
        Edit::Link { path, target } => {
            if let Some(dir) = path.parent() {
                journal.make_dirs(dir)?;
            }
            journal.save(path)?;
            replace_with_link(path, target)?
        }
        Edit::Restore {
            path,
            previous,
            mode,
        } => {
            journal.save(path)?;
            match previous {
                Previous::Absent | Previous::Json(_) | Previous::Path(_) => remove(path)?,
                Previous::Link(t) => replace_with_link(path, Path::new(t))?,
                Previous::File(text) => {
                    let exec = Perms {
                        mode: mode.unwrap_or(0o755),
                        owner: None,
                    };
                    remove(path)?;
                    atomic::replace(path, text.as_bytes(), exec).map_err(|(p, e)| io(&p)(e))?;
                }
            }
        }
        Edit::Remove { path } => {
            journal.save(path)?;
            remove(path)?
        }
        Edit::RemoveDir { path } => {
            journal.save(path)?;
            match std::fs::remove_dir(path) {
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
            }
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
