//! `/etc/docker/daemon.json`: its `runtimes` and `default-runtime` keys.
//!
//! Every other key is kept as it is, in its order. This module parses and renders the file's
//! text and changes the two keys in the draft; it never reads or writes the file itself
//! (`read.rs` and `apply.rs` do).

use std::path::Path;

use serde_json::{Map, Value};

use super::model::{Current, DockerConfigError, Edit, Previous, Record, NAME, NVIDIA};
use super::place::{Draft, Place};

const RUNTIMES: &str = "runtimes";
const DEFAULT: &str = "default-runtime";

/// daemon.json's settings from its text. Invalid JSON is an error: nothing may be written then.
pub(super) fn parse(path: &Path, text: &str) -> Result<Map<String, Value>, DockerConfigError> {
    // dockerd takes an empty file for no settings.
    if text.trim().is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(DockerConfigError::NotAnObject {
            path: path.display().to_string(),
        }),
        Err(source) => Err(DockerConfigError::BadJson {
            path: path.display().to_string(),
            source,
        }),
    }
}

/// The object as text, indented the way `before` is (two spaces where it shows none).
fn render(m: &Map<String, Value>, before: Option<&str>) -> String {
    use serde::Serialize;
    let indent = before
        .into_iter()
        .flat_map(str::lines)
        .map(|l| &l[..l.len() - l.trim_start().len()])
        .find(|i| !i.is_empty())
        .unwrap_or("  ");
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(indent.as_bytes());
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    // Writing a Value to memory cannot fail.
    let _ = Value::Object(m.clone()).serialize(&mut ser);
    let mut s = String::from_utf8_lossy(&out).into_owned();
    s.push('\n');
    s
}

/// Whether daemon.json defines runtimes (then flags may not).
pub(super) fn defines_runtimes(daemon: &Map<String, Value>) -> bool {
    daemon.contains_key(RUNTIMES)
}

/// Whether daemon.json names a default runtime, whatever its value.
pub(super) fn names_default(daemon: &Map<String, Value>) -> bool {
    daemon.contains_key(DEFAULT)
}

/// The write of daemon.json at `path`, where its settings changed.
pub(super) fn write(path: &Path, current: &Current, daemon: &Map<String, Value>) -> Option<Edit> {
    let changed = match &current.daemon {
        Some(before) => before != daemon,
        None => !daemon.is_empty(),
    };
    changed.then(|| Edit::Write {
        path: path.to_path_buf(),
        before: current.daemon_text.clone(),
        after: render(daemon, current.daemon_text.as_deref()),
        // One backup per original: the first configure's, not one per run.
        backup: current.daemon_text.is_some() && current.record.is_none(),
    })
}

/// daemon.json as a [`Place`].
pub(super) struct DaemonJson;

impl Place for DaemonJson {
    fn nvidia(&self, draft: &Draft) -> Previous {
        draft
            .daemon
            .get(RUNTIMES)
            .and_then(|r| r.get(NVIDIA))
            .cloned()
            .map_or(Previous::Absent, Previous::Json)
    }

    fn default_runtime(&self, draft: &Draft) -> Option<String> {
        draft
            .daemon
            .get(DEFAULT)
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    fn names_runtimes_by_path(&self) -> bool {
        true
    }

    fn set_runtimes(&self, draft: &mut Draft, runtime: &Path, nvidia: &Path) {
        let runtimes = draft
            .daemon
            .entry(RUNTIMES)
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(r) = runtimes {
            for (name, path) in [(NAME, runtime), (NVIDIA, nvidia)] {
                let path = path.display().to_string();
                r.insert(name.to_owned(), serde_json::json!({ "path": path }));
            }
        }
    }

    fn set_default(&self, draft: &mut Draft) {
        draft.daemon.insert(DEFAULT.to_owned(), Value::from(NAME));
    }

    fn restore_runtimes(&self, draft: &mut Draft, record: &Record) {
        let previous = &record.previous_nvidia;
        let mut now_empty = false;
        if let Some(Value::Object(r)) = draft.daemon.get_mut(RUNTIMES) {
            r.remove(NAME);
            match previous {
                Previous::Json(v) => {
                    r.insert(NVIDIA.to_owned(), v.clone());
                }
                _ => {
                    r.remove(NVIDIA);
                }
            }
            now_empty = r.is_empty();
        }
        if now_empty {
            draft.daemon.remove(RUNTIMES);
        }
    }

    fn restore_default(&self, draft: &mut Draft, previous: Option<&str>) {
        match previous {
            Some(p) => {
                draft.daemon.insert(DEFAULT.to_owned(), Value::from(p));
            }
            None => {
                draft.daemon.remove(DEFAULT);
            }
        }
    }
}
