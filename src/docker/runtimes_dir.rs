//! `/etc/docker-runtimes.d`: the ECS-optimized AMIs' docker unit turns each executable there
//! into `--add-runtime NAME=PATH`.
//!
//! gpu-share's entries are symlinks to the runtime; `nvidia`, if it was there, is put back as it
//! was (a script or a link). The unit passes each entry's own path, so dockerd runs the runtime
//! with argv[0] `<dir>/nvidia` for `nvidia`: the entry is already the link `channel.rs` makes for
//! the other places, and no other is needed. The entries are files of their own, so this place adds edits rather
//! than changing a draft file. It never reads the directory (what is there comes in through
//! [`Current`](super::model::Current)) and never writes it (`apply.rs` does).

use std::path::Path;

use super::daemon_json::DaemonJson;
use super::model::{Edit, Previous, Record, NAME, NVIDIA};
use super::place::{Draft, Place};

/// The runtimes directory as a [`Place`]. It cannot name a default runtime: that setting is
/// daemon.json's here (only a hand-edited record says it lives in the directory).
pub(super) struct RuntimesDir;

impl Place for RuntimesDir {
    fn nvidia(&self, draft: &Draft) -> Previous {
        draft.current.nvidia_file.clone()
    }

    fn default_runtime(&self, draft: &Draft) -> Option<String> {
        DaemonJson.default_runtime(draft)
    }

    fn names_runtimes_by_path(&self) -> bool {
        false
    }

    fn set_runtimes(&self, draft: &mut Draft, runtime: &Path, nvidia: &Path) {
        let current = draft.current;
        for (name, link, target) in [
            (NAME, &current.gpu_share_link, runtime),
            (NVIDIA, &current.nvidia_link, nvidia),
        ] {
            if link.as_deref() != Some(target) {
                draft.edits.push(Edit::Link {
                    path: draft.paths.runtimes_dir.join(name),
                    target: target.to_path_buf(),
                });
            }
        }
    }

    fn set_default(&self, draft: &mut Draft) {
        DaemonJson.set_default(draft)
    }

    fn restore_runtimes(&self, draft: &mut Draft, record: &Record) {
        if draft.current.gpu_share_link.is_some() {
            draft.edits.push(Edit::Remove {
                path: draft.paths.runtimes_dir.join(NAME),
            });
        }
        draft.edits.push(Edit::Restore {
            path: draft.paths.runtimes_dir.join(NVIDIA),
            previous: record.previous_nvidia.clone(),
            mode: record.previous_nvidia_mode,
        });
    }

    fn restore_default(&self, draft: &mut Draft, previous: Option<&str>) {
        DaemonJson.restore_default(draft, previous)
    }
}
