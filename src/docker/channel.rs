//! The link named `nvidia` that daemon.json and the `--add-runtime` flags name as `nvidia`'s
//! path: planning its creation on configure and its removal on unconfigure.
//!
//! Why a link: dockerd (through containerd's runc shim, go-runc) execs a runtime with argv[0] =
//! the runtime's configured path. If `nvidia`'s path is `<channel dir>/nvidia` → the runtime,
//! the runtime sees argv[0]'s file name `nvidia` for the containers the ECS agent starts with
//! `--runtime nvidia`, and `gpu-share-runtime` for the rest. A container cannot choose argv[0],
//! and runc's argv gets nothing added. The runtimes directory needs no such link: its `nvidia`
//! entry is one (`runtimes_dir.rs`).
//!
//! Pure: what is at the link's path comes in through [`Current`](super::model::Current), and the
//! link and its removal go out as edits for `apply.rs`.

use std::path::{Path, PathBuf};

use super::model::{DockerConfigError, Edit, Entry, Record, NVIDIA};
use super::place::Draft;

/// Plans `<channel dir>/nvidia` → `runtime` and notes it in `record`, so unconfigure removes it
/// and the directories made for it. Returns the link's path, for `nvidia`'s path. Something at
/// that path other than this link (or a link the record says configure made) is refused.
pub(super) fn plan_link(
    draft: &mut Draft,
    runtime: &Path,
    record: &mut Record,
) -> Result<PathBuf, DockerConfigError> {
    let link = draft.paths.channel_dir.join(NVIDIA);
    let ours = record.channel_link.as_deref() == Some(link.as_path());
    match &draft.current.channel_entry {
        Entry::Link(target) if target == runtime => {}
        Entry::Link(_) if ours => draft.edits.push(link_edit(&link, runtime)),
        Entry::Absent => draft.edits.push(link_edit(&link, runtime)),
        Entry::Link(_) | Entry::Other => {
            return Err(DockerConfigError::ChannelTaken(link.display().to_string()))
        }
    }
    if !ours {
        // A configure with another --channel-dir: the old link goes, so that unconfigure has
        // one link to remove. Directories made for it that hold the new one stay, and stay
        // recorded (they are above the new ones, so still deepest first).
        let mut kept = Vec::new();
        if let Some(old) = record.channel_link.take() {
            draft.edits.push(Edit::Remove { path: old });
            let (above, gone): (Vec<_>, Vec<_>) = std::mem::take(&mut record.created_dirs)
                .into_iter()
                .partition(|d| link.starts_with(d));
            draft.edits.extend(remove_dirs(&gone));
            kept = above;
        }
        record.channel_link = Some(link.clone());
        record.created_dirs = draft.current.channel_dir_missing.clone();
        record.created_dirs.extend(kept);
    }
    Ok(link)
}

fn link_edit(link: &Path, runtime: &Path) -> Edit {
    Edit::Link {
        path: link.to_path_buf(),
        target: runtime.to_path_buf(),
    }
}

fn remove_dirs(dirs: &[PathBuf]) -> impl Iterator<Item = Edit> + '_ {
    dirs.iter().map(|d| Edit::RemoveDir { path: d.clone() })
}

/// The removal of the link the record says configure made, and of the directories it made for
/// it (each only if empty).
pub(super) fn undo(record: &Record) -> Vec<Edit> {
    let link = record
        .channel_link
        .iter()
        .map(|l| Edit::Remove { path: l.clone() });
    link.chain(remove_dirs(&record.created_dirs)).collect()
}
