//! A bundle's `config.json` as JSON: reading and writing it losing nothing, and the access
//! helpers every edit uses to reach into it.
//!
//! Only what the shim reads or edits becomes a `serde_json::Value` (key order preserved):
//! [`LOADED`] at load, an edit's paths ([`PARSED`]) when [`SpecFile::expand`] is given the
//! plan's. Every other subtree is a placeholder in the tree and is written back as the input's
//! own bytes (`lazy`), so fields the shim does not own, known to any OCI release or not, survive
//! exactly, and a large `linux.seccomp` costs a syntax scan (`scan`, one pass, with serde
//! reading the text instead wherever that scan is unsure, so refusals read as serde words them).
//! Built values are written back by `compact`, byte for byte as serde_json writes them; the
//! entries a create's edits add are kept as the text they were rendered as (`added`). A new
//! reader or edit must declare its path (see `lazy`); an edit that meets a placeholder fails a
//! debug assertion. A write goes through `atomic::replace_volatile`, or its sole-writer form
//! under the placement lock (temp file in the bundle, rename): a writer killed at any point leaves either the old spec or the new one, never half
//! of each. It is not fsync'd: the bundle lives on tmpfs and means nothing after a reboot (see
//! `atomic`). On any error nothing is written.
//!
//! The spec is never acted on where runc would read it differently: an object repeating a key
//! (or holding two keys Go's encoding/json takes for one) is refused (`unique_keys`) on every
//! level that is parsed, since runc would merge what serde_json keeps only the last of. A raw
//! subtree is not checked: the shim does not read it, and runc reads the same bytes it would
//! have read without the shim.
//!
//! This module knows JSON shapes, not GPUs: what goes into the spec is `plan`'s business.

mod added;
mod compact;
mod lazy;
mod raw_pairs;
mod scan;
mod unique_keys;
mod values;

use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::atomic::{self, Perms};

pub use added::{Appender, NotJson};
pub use compact::string as push_string;
pub use lazy::{
    is_placeholder, to_vec, Raw, SpecPath, CGROUPS_PATH, HOOKS, LINUX_DEVICES, LINUX_RESOURCES,
    LOADED, MOUNTS, PARSED, PROCESS_ENV,
};

/// Every stage the OCI runtime spec has hooks for (`hooks.<stage>`), in the spec's order.
pub const HOOK_STAGES: &[&str] = &[
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

/// A spec larger than this is refused rather than read: docker's are tens of KiB.
pub const MAX_SPEC_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("bundle {0}: no such directory")]
    NoBundle(String),
    #[error("{0}: no such file")]
    Missing(String),
    #[error("{0} is a symbolic link; refusing to follow it out of the bundle")]
    Symlink(String),
    #[error("{0} is not a regular file")]
    NotAFile(String),
    #[error("{path} is {size} bytes, over the {MAX_SPEC_BYTES}-byte limit")]
    TooLarge { path: String, size: u64 },
    #[error("{0} is empty")]
    Empty(String),
    #[error("{path} is not valid JSON: {source}")]
    Json {
        path: String,
        source: serde_json::Error,
    },
    #[error("{path}: {repeated} (line {line}, column {column})")]
    RepeatedKey {
        path: String,
        repeated: unique_keys::Repeated,
        line: usize,
        column: usize,
    },
    #[error("{path} is {found}, expected an object")]
    NotAnObject { path: String, found: &'static str },
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
}

/// A loaded `config.json`, and what is needed to write it back in its place.
#[derive(Debug)]
pub struct SpecFile {
    pub path: PathBuf,
    /// The spec, with every subtree outside [`LOADED`] (and the paths [`SpecFile::expand`] was
    /// given) a placeholder: read and edit only there.
    pub value: Value,
    raw: Raw,
    mode: u32,
    uid: u32,
    gid: u32,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SpecError + '_ {
    move |source| SpecError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl SpecFile {
    /// Reads `bundle/config.json`, refusing symlinks, non-files, huge or empty files and bad JSON.
    pub fn load(bundle: &Path) -> Result<SpecFile, SpecError> {
        let path = bundle.join("config.json");
        // Named only in a refusal: not rendered on every create.
        let shown = || path.display().to_string();
        let mut file = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(SpecError::Symlink(shown()))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(if bundle.is_dir() {
                    SpecError::Missing(shown())
                } else {
                    SpecError::NoBundle(bundle.display().to_string())
                })
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
                return Err(SpecError::NoBundle(bundle.display().to_string()))
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        let meta = file.metadata().map_err(io_err(&path))?;
        if !meta.is_file() {
            return Err(SpecError::NotAFile(shown()));
        }
        if meta.len() > MAX_SPEC_BYTES {
            return Err(SpecError::TooLarge {
                path: shown(),
                size: meta.len(),
            });
        }
        if meta.len() == 0 {
            return Err(SpecError::Empty(shown()));
        }
        // One `read` for a file as large as fstat said; one that grew past the limit since is
        // still caught.
        let limit = MAX_SPEC_BYTES as usize;
        let bytes = match crate::read_whole::read_to_end(&mut file, meta.len() as usize, limit) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                return Err(SpecError::TooLarge {
                    path: shown(),
                    size: MAX_SPEC_BYTES + 1,
                })
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(SpecError::Empty(shown()));
        }
        let (value, raw) = lazy::parse(bytes).map_err(|e| parse_error(e, &shown()))?;
        if !value.is_object() {
            return Err(SpecError::NotAnObject {
                path: shown(),
                found: kind_name(&value),
            });
        }
        Ok(SpecFile {
            path,
            value,
            raw,
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
        })
    }

    /// Builds the subtrees at `paths` (the plan's) that are still held raw.
    pub fn expand(&mut self, paths: &[SpecPath]) -> Result<(), SpecError> {
        // The path is shown only in a refusal: not rendered on every create.
        for path in paths {
            lazy::expand(&mut self.value, &self.raw, path)
                .map_err(|e| parse_error(e, &self.path.display().to_string()))?;
        }
        Ok(())
    }

    /// The document, and where edits put the entries they add: kept as text, written as it is.
    pub fn appender(&mut self) -> (&mut Value, Appender<'_>) {
        (&mut self.value, Appender::Text(&mut self.raw))
    }

    /// Writes the spec back atomically, with the original file's mode and owner.
    pub fn save(&self) -> Result<(), SpecError> {
        self.write(atomic::replace_volatile)
    }

    /// [`SpecFile::save`] by a create that holds the placement lock, which every create that
    /// writes a spec under it takes: its temp file has one name, reused, and no scan for the
    /// leftovers of killed writers is needed (`atomic`).
    pub fn save_under_lock(&self) -> Result<(), SpecError> {
        self.write(atomic::replace_volatile_as_sole_writer)
    }

    fn write(&self, replace: atomic::Replace) -> Result<(), SpecError> {
        let bytes = lazy::to_vec(&self.value, &self.raw);
        let perms = Perms {
            mode: self.mode,
            owner: Some((self.uid, self.gid)),
        };
        replace(&self.path, &bytes, perms).map_err(|(path, source)| SpecError::Io {
            path: path.display().to_string(),
            source,
        })
    }
}

/// Parses a spec's text as [`SpecFile::load`] does: only [`LOADED`]'s subtrees built. `shown`
/// names it in errors.
pub fn parse(bytes: Vec<u8>, shown: &str) -> Result<(Value, Raw), SpecError> {
    lazy::parse(bytes).map_err(|e| parse_error(e, shown))
}

/// Builds the subtrees at `paths` of a spec [`parse`]d into `value` and `raw`.
pub fn expand(
    value: &mut Value,
    raw: &Raw,
    paths: &[SpecPath],
    shown: &str,
) -> Result<(), SpecError> {
    for path in paths {
        lazy::expand(value, raw, path).map_err(|e| parse_error(e, shown))?;
    }
    Ok(())
}

/// Parses a spec's text into one whole `Value`, as the shim did before it kept raw subtrees:
/// the reference the lazy reading is tested against.
pub fn parse_full(bytes: Vec<u8>, shown: &str) -> Result<(Value, Raw), SpecError> {
    lazy::parse_full(bytes).map_err(|e| parse_error(e, shown))
}

fn parse_error(e: unique_keys::Error, shown: &str) -> SpecError {
    match e {
        unique_keys::Error::Json(source) => SpecError::Json {
            path: shown.to_owned(),
            source,
        },
        unique_keys::Error::Repeated {
            repeated,
            line,
            column,
        } => SpecError::RepeatedKey {
            path: shown.to_owned(),
            repeated,
            line,
            column,
        },
    }
}

/// A part of the spec that has the wrong JSON type for what the shim must do with it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("config.json: {path} is {found}, expected {expected}")]
pub struct ShapeError {
    path: String,
    found: &'static str,
    expected: &'static str,
}

/// "an array", "a string", ...: for messages about a spec of the wrong shape.
pub fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `v` as an object; `path` names it in the error.
pub fn as_object<'a>(
    v: &'a mut Value,
    path: &str,
) -> Result<&'a mut Map<String, Value>, ShapeError> {
    debug_assert!(
        !is_placeholder(v),
        "{path} is held raw: add it to spec::PARSED"
    );
    let found = kind_name(v);
    v.as_object_mut().ok_or(ShapeError {
        path: path.to_owned(),
        found,
        expected: "an object",
    })
}

/// Objects up to this many keys are searched by comparing keys: hashing a key (SipHash, for
/// `serde_json::Map`'s `IndexMap`) costs more than comparing it with each of a dozen.
const SCAN_KEYS: usize = 16;

/// `v[key]` where `v` is an object; `None` for an absent key or a `v` that is not an object.
/// What every edit's reads go through: a spec's entries have a handful of keys, compared
/// faster than one is hashed.
pub fn field<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    member(v.as_object()?, key)
}

/// `map[key]`, as [`field`] finds it.
pub fn member<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    if map.len() > SCAN_KEYS {
        return map.get(key);
    }
    map.iter().find_map(|(k, v)| (k == key).then_some(v))
}

/// The slot `parent[key]`, filled with `empty` when absent or null.
fn slot_at<'a>(
    parent: &'a mut Map<String, Value>,
    key: &str,
    empty: fn() -> Value,
) -> &'a mut Value {
    parent
        .entry(key)
        .and_modify(|v| {
            if v.is_null() {
                *v = empty();
            }
        })
        .or_insert_with(empty)
}

/// `parent[key]` as an object, created when absent (or null).
pub fn object_at<'a>(
    parent: &'a mut Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<&'a mut Map<String, Value>, ShapeError> {
    as_object(slot_at(parent, key, || Value::Object(Map::new())), path)
}

/// `parent[key]` as an array, created when absent (or null).
pub fn array_at<'a>(
    parent: &'a mut Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<&'a mut Vec<Value>, ShapeError> {
    let slot = slot_at(parent, key, || Value::Array(Vec::new()));
    debug_assert!(
        !is_placeholder(slot),
        "{path} is held raw: add it to spec::PARSED"
    );
    let found = kind_name(slot);
    slot.as_array_mut().ok_or(ShapeError {
        path: path.to_owned(),
        found,
        expected: "an array",
    })
}

/// The last `NAME=value` of `process.env`: the one runc's init sets last, so the container
/// sees it, and the one NVIDIA's hook reads.
pub fn env_value<'a>(spec: &'a Value, name: &str) -> Option<&'a str> {
    field(field(spec, "process")?, "env")?
        .as_array()?
        .iter()
        .rev()
        .filter_map(Value::as_str)
        .find_map(|e| {
            e.split_once('=')
                .filter(|(k, _)| *k == name)
                .map(|(_, v)| v)
        })
}

/// The bytes of entries edits added to `raw` as text.
#[cfg(test)]
pub(crate) fn text_held(raw: &Raw) -> usize {
    raw.added.len()
}

#[cfg(test)]
mod tests;
