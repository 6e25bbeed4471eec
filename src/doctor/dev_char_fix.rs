//! `gpu-share doctor --fix`: makes the `/dev/char` links `dev_char.rs` finds missing or wrong.
//!
//! Owns the only writes doctor makes, all under `<devices.root>/dev/char`: the directory when
//! it is missing, a missing link, and a symlink that leads elsewhere, replaced by renaming a new
//! link over it (a reader never sees no link). It must never remove anything that is not a
//! symlink (a regular file, a directory or a device node in a link's place is reported and
//! left), never touch a link already in place, and never write outside `dev/char`.

use std::fmt;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use super::dev_char::{dir_can_hold_links, shown_target, survey, LinkState, Survey, SurveyError};

/// A change `--fix` made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Done {
    Made {
        link: PathBuf,
        target: PathBuf,
    },
    Replaced {
        link: PathBuf,
        target: PathBuf,
        was: PathBuf,
    },
}

impl fmt::Display for Done {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Done::Made { link, target } => {
                write!(f, "made {} -> {}", link.display(), target.display())
            }
            Done::Replaced { link, target, was } => write!(
                f,
                "replaced {} -> {} with -> {}",
                link.display(),
                shown_target(was),
                target.display()
            ),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FixError {
    #[error(transparent)]
    Survey(#[from] SurveyError),
    #[error(
        "{dir} is not a directory: left as it is; remove it, then run gpu-share doctor --fix again"
    )]
    NotADirectory { dir: String },
    #[error("cannot make {dir}: {source}")]
    MakeDir { dir: String, source: io::Error },
    #[error(
        "{link} is {what}, not a link to {node}: left as it is; remove it if nothing needs it, \
         then run gpu-share doctor --fix again"
    )]
    Blocked {
        link: String,
        what: &'static str,
        node: String,
    },
    #[error("cannot link {link} -> {target}: {source}")]
    Link {
        link: String,
        target: String,
        source: io::Error,
    },
    #[error("cannot read {link}: {source}")]
    Unreadable { link: String, source: io::Error },
}

/// What one `--fix` did.
#[derive(Debug, Default)]
pub struct Fixed {
    pub done: Vec<Done>,
    /// Links it could not make; each is one line for the operator.
    pub failed: Vec<FixError>,
    /// Links that were in place already.
    pub in_place: usize,
}

/// Makes every missing or wrong link under `root`. A link it cannot make does not stop the
/// others; only a root whose `dev` cannot be listed stops all.
pub fn fix_links(root: &Path) -> Result<Fixed, FixError> {
    let Survey { dir, links } = survey(root)?;
    let mut fixed = Fixed::default();
    let needs_work = links.iter().any(|(_, s)| !matches!(s, LinkState::InPlace));
    if needs_work && !dir_can_hold_links(&dir) {
        return Err(FixError::NotADirectory {
            dir: dir.display().to_string(),
        });
    }
    // udev makes /dev/char 0755; made only when a link is to go in it.
    if needs_work {
        if let Err(source) = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&dir)
        {
            return Err(FixError::MakeDir {
                dir: dir.display().to_string(),
                source,
            });
        }
    }
    for (w, state) in links {
        let link = dir.join(w.file_name());
        let shown = || link.display().to_string();
        let result = match state {
            LinkState::InPlace => {
                fixed.in_place += 1;
                continue;
            }
            LinkState::Missing => {
                std::os::unix::fs::symlink(&w.target, &link).map(|()| Done::Made {
                    link: link.clone(),
                    target: w.target.clone(),
                })
            }
            LinkState::Wrong { points_at } => {
                replace_symlink(&dir, &link, &w.target).map(|()| Done::Replaced {
                    link: link.clone(),
                    target: w.target.clone(),
                    was: points_at,
                })
            }
            LinkState::Blocked { what } => {
                fixed.failed.push(FixError::Blocked {
                    link: shown(),
                    what,
                    node: w.node.display().to_string(),
                });
                continue;
            }
            LinkState::Unreadable(e) => {
                fixed.failed.push(FixError::Unreadable {
                    link: shown(),
                    source: e,
                });
                continue;
            }
        };
        match result {
            Ok(done) => fixed.done.push(done),
            Err(source) => fixed.failed.push(FixError::Link {
                link: shown(),
                target: w.target.display().to_string(),
                source,
            }),
        }
    }
    Ok(fixed)
}

/// Puts a new symlink over an old one in one rename. The survey found a symlink there; the
/// temp name is this process's own, so nothing else is replaced along the way.
fn replace_symlink(dir: &Path, link: &Path, target: &Path) -> io::Result<()> {
    let name = link
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.gpu-share-{}.tmp", std::process::id()));
    // A temp this pid left (a crash, then a reused pid) is only ever a symlink of ours.
    if std::fs::symlink_metadata(&tmp).is_ok_and(|m| m.file_type().is_symlink()) {
        std::fs::remove_file(&tmp)?;
    }
    std::os::unix::fs::symlink(target, &tmp)?;
    std::fs::rename(&tmp, link).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}
