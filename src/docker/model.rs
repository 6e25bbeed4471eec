//! The data of `configure docker`: where the files are, what was read from them, the edits to
//! make and the record of what was replaced, and the errors.
//!
//! A leaf: it imports no other module of `docker`, so every one of them can import it. It reads
//! and writes nothing.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The name the runtime is registered under.
pub const NAME: &str = "gpu-share";
/// The name the ECS agent asks for.
pub const NVIDIA: &str = "nvidia";

/// Where dockerd reads daemon.json from unless told otherwise.
pub const DEFAULT_DAEMON_JSON: &str = "/etc/docker/daemon.json";
/// Where Amazon Linux's docker unit reads `OPTIONS` from.
pub const DEFAULT_SYSCONFIG: &str = "/etc/sysconfig/docker";
/// The ECS-optimized AMIs' runtimes directory.
pub const DEFAULT_RUNTIMES_DIR: &str = "/etc/docker-runtimes.d";
/// Where configure keeps what it replaced.
pub const DEFAULT_RECORD: &str = "/etc/gpu-share/docker-configure.json";
/// Where configure makes the link named `nvidia` when runtimes are paths in daemon.json or in
/// flags. Not a directory on PATH: a command called `nvidia` there would mislead.
pub const DEFAULT_CHANNEL_DIR: &str = "/usr/local/libexec/gpu-share";

#[derive(Debug, Clone)]
pub struct Paths {
    pub daemon_json: PathBuf,
    pub sysconfig: PathBuf,
    pub runtimes_dir: PathBuf,
    /// What `configure` replaced, for `unconfigure`.
    pub record: PathBuf,
    /// Where the link named `nvidia` is made for daemon.json or the flags (see `channel.rs`).
    pub channel_dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum DockerConfigError {
    #[error("{path} is not valid JSON ({source}); nothing was written")]
    BadJson {
        path: String,
        source: serde_json::Error,
    },
    #[error("{path} is not a JSON object; nothing was written")]
    NotAnObject { path: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0} and the runtime flags in {1} both define runtimes: dockerd refuses to start like this; fix that first")]
    Conflict(String, String),
    #[error("no record of a configure at {0}: nothing to undo")]
    NoRecord(String),
    #[error("{0} is there and is not gpu-share's link to the runtime: move it away or pass another --channel-dir; nothing was written")]
    ChannelTaken(String),
    #[error("{path} cannot be rewritten faithfully: {reason}; nothing was written")]
    Sysconfig { path: String, reason: String },
    #[error("the record of what configure replaces cannot be written as JSON ({0}); nothing was written")]
    Record(serde_json::Error),
}

/// Turns an I/O error on `path` into a [`DockerConfigError::Io`] naming it.
pub(super) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DockerConfigError + '_ {
    move |source| DockerConfigError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Where a setting lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Location {
    DaemonJson,
    Sysconfig,
    RuntimesDir,
}

/// How `nvidia` was defined before configure.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "value")]
pub enum Previous {
    #[default]
    Absent,
    /// A daemon.json `runtimes` entry.
    Json(Value),
    /// An `--add-runtime nvidia=PATH` path.
    Path(String),
    /// A `/etc/docker-runtimes.d/nvidia` file's text (a script).
    File(String),
    /// A `/etc/docker-runtimes.d/nvidia` symlink's target.
    Link(String),
}

/// What configure found and replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub runtimes_in: Location,
    pub default_in: Location,
    pub previous_default: Option<String>,
    pub previous_nvidia: Previous,
    /// The mode of `runtimes.d/nvidia` where it was a file (a script), to put it back with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_nvidia_mode: Option<u32>,
    /// daemon.json did not exist before: unconfigure removes it again when nothing else is left.
    #[serde(default)]
    pub created_daemon_json: bool,
    /// The link named `nvidia` configure made for daemon.json or the flags; unconfigure removes
    /// it. Absent from records older than the link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_link: Option<PathBuf>,
    /// The directories configure made for that link, deepest first; unconfigure removes each
    /// that is empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub created_dirs: Vec<PathBuf>,
    /// daemon.json and the sysconfig file as they were before the first configure, and as
    /// configure last wrote them: while a file is still as configure wrote it, unconfigure
    /// puts the original back byte for byte. Absent from older records.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub originals: Vec<Original>,
    /// The directories configure made for the record itself, deepest first; unconfigure removes
    /// each that is empty once the record is gone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub record_dirs: Vec<PathBuf>,
}

/// One file configure rewrote: its text before (`None`: it was not there) and after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Original {
    pub path: PathBuf,
    pub before: Option<String>,
    pub after: String,
}

/// One change to the filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    Write {
        path: PathBuf,
        before: Option<String>,
        after: String,
        /// Keep a copy of the old file beside it (`NAME.gpu-share.bak`).
        backup: bool,
    },
    Link {
        path: PathBuf,
        target: PathBuf,
    },
    Restore {
        path: PathBuf,
        previous: Previous,
        /// The mode a file comes back with (0755 where the record has none).
        mode: Option<u32>,
    },
    Remove {
        path: PathBuf,
    },
    /// A directory, only if it is empty (so nothing put there since is lost).
    RemoveDir {
        path: PathBuf,
    },
}

/// What is at the path where configure would make a link.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Entry {
    #[default]
    Absent,
    Link(PathBuf),
    /// A file or directory: not a link configure may replace.
    Other,
}

/// The files as they are: everything planning needs, so that planning reads nothing itself.
#[derive(Debug, Clone, Default)]
pub struct Current {
    pub daemon_text: Option<String>,
    pub daemon: Option<Map<String, Value>>,
    pub sysconfig: Option<String>,
    pub runtimes_dir: bool,
    /// `runtimes.d/nvidia` as the record keeps it.
    pub nvidia_file: Previous,
    /// Its mode, where it is a file.
    pub nvidia_mode: Option<u32>,
    /// `runtimes.d/nvidia`'s link target as a path, to tell whether it already points at the
    /// runtime (`nvidia_file` holds it as text, which loses what is not UTF-8).
    pub nvidia_link: Option<PathBuf>,
    /// `runtimes.d/gpu-share`'s link target.
    pub gpu_share_link: Option<PathBuf>,
    /// `<channel dir>/nvidia`.
    pub channel_entry: Entry,
    /// The channel dir and those of its parents that are not there, deepest first: what making
    /// the link creates.
    pub channel_dir_missing: Vec<PathBuf>,
    /// The record's directory and those of its parents that are not there, deepest first.
    pub record_dir_missing: Vec<PathBuf>,
    pub record: Option<Record>,
}
