//! `/etc/sysconfig/docker`: the `--add-runtime` and `--default-runtime` flags in its `OPTIONS`,
//! which Amazon Linux's docker unit passes to dockerd.
//!
//! How the `OPTIONS` line is parsed and rendered is `options.rs`; this module knows which flags
//! gpu-share changes and how. It never reads or writes the file itself (`read.rs` and
//! `apply.rs` do), and it never adds a file that is not there.

use std::path::Path;

pub use super::options::Options;

use super::model::{Current, DockerConfigError, Edit, Previous, Record, NAME, NVIDIA};
use super::place::{Draft, Place};

const ADD_RUNTIME: &str = "add-runtime";
const DEFAULT: &str = "default-runtime";

/// `NAME=PATH`, as `--add-runtime` takes it.
fn runtime_path_of(add_runtime: &str) -> Option<(&str, &str)> {
    add_runtime.split_once('=')
}

/// Whether the flags define runtimes (then daemon.json may not).
pub(super) fn defines_runtimes(options: Option<&Options>) -> bool {
    options.is_some_and(|o| !o.values(ADD_RUNTIME).is_empty())
}

/// The default runtime the flags name: the last `--default-runtime`, as dockerd takes it.
fn default_flag(options: Option<&Options>) -> Option<String> {
    options.and_then(|o| o.values(DEFAULT).last().cloned())
}

/// Whether the flags name a default runtime.
pub(super) fn names_default(options: Option<&Options>) -> bool {
    default_flag(options).is_some()
}

/// Drops every `--add-runtime` for `gpu-share` or `nvidia`.
fn remove_ours(o: &mut Options) {
    o.remove(ADD_RUNTIME, |v| {
        runtime_path_of(v).is_some_and(|(n, _)| n == NAME || n == NVIDIA)
    });
}

/// The write of the sysconfig file at `path`, where its flags changed.
pub(super) fn write(
    path: &Path,
    current: &Current,
    options: Option<&Options>,
) -> Result<Option<Edit>, DockerConfigError> {
    let (Some(o), Some(before)) = (options, current.sysconfig.as_ref()) else {
        return Ok(None);
    };
    if Options::parse(before).words == o.words {
        return Ok(None);
    }
    let after = o.render().ok_or_else(|| DockerConfigError::Sysconfig {
        path: path.display().to_string(),
        reason: format!("a word of OPTIONS holds both kinds of quote: {:?}", o.words),
    })?;
    Ok(Some(Edit::Write {
        path: path.to_path_buf(),
        before: Some(before.clone()),
        after,
        backup: false,
    }))
}

/// The sysconfig file as a [`Place`]. Where there is no file, it changes nothing.
pub(super) struct Sysconfig;

impl Place for Sysconfig {
    fn nvidia(&self, draft: &Draft) -> Previous {
        draft
            .options
            .as_ref()
            .and_then(|o| {
                o.values(ADD_RUNTIME)
                    .iter()
                    .filter_map(|v| runtime_path_of(v))
                    .find(|(n, _)| *n == NVIDIA)
                    .map(|(_, p)| Previous::Path(p.to_owned()))
            })
            .unwrap_or(Previous::Absent)
    }

    fn default_runtime(&self, draft: &Draft) -> Option<String> {
        default_flag(draft.options.as_ref())
    }

    fn names_runtimes_by_path(&self) -> bool {
        true
    }

    fn set_runtimes(&self, draft: &mut Draft, runtime: &Path, nvidia: &Path) {
        if let Some(o) = draft.options.as_mut() {
            remove_ours(o);
            for (name, path) in [(NAME, runtime), (NVIDIA, nvidia)] {
                o.add(ADD_RUNTIME, &format!("{name}={}", path.display()));
            }
        }
    }

    fn set_default(&self, draft: &mut Draft) {
        if let Some(o) = draft.options.as_mut() {
            o.remove(DEFAULT, |_| true);
            o.add(DEFAULT, NAME);
        }
    }

    fn restore_runtimes(&self, draft: &mut Draft, record: &Record) {
        let previous = &record.previous_nvidia;
        if let Some(o) = draft.options.as_mut() {
            remove_ours(o);
            if let Previous::Path(p) = previous {
                o.add(ADD_RUNTIME, &format!("{NVIDIA}={p}"));
            }
        }
    }

    fn restore_default(&self, draft: &mut Draft, previous: Option<&str>) {
        if let Some(o) = draft.options.as_mut() {
            o.remove(DEFAULT, |_| true);
            if let Some(p) = previous {
                o.add(DEFAULT, p);
            }
        }
    }
}
