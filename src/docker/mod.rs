//! Registering gpu-share-runtime in dockerd: `gpu-share configure docker` / `unconfigure docker`.
//!
//! dockerd is configured one of three ways on ECS hosts, and a setting given both as a flag and
//! in daemon.json stops dockerd from starting, so each setting is changed where it already is:
//! - the ECS-optimized AMIs' docker unit turns every executable in `/etc/docker-runtimes.d/`
//!   into `--add-runtime NAME=PATH` and adds `OPTIONS` from `/etc/sysconfig/docker`;
//! - plain `--add-runtime` / `--default-runtime` flags in `OPTIONS`;
//! - `/etc/docker/daemon.json` (`runtimes`, `default-runtime`).
//!
//! The runtime is registered as `gpu-share` and made the default, and the runtime named `nvidia`
//! (which the ECS agent asks for, for tasks that reserve GPUs) is pointed at it too. What was
//! there before is kept in a record file so `unconfigure` puts it back. Planning is pure: the
//! current files in, the edits out; `apply` writes them atomically.

pub mod sysconfig;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::atomic::{self, Perms};
use sysconfig::Options;

/// The name the runtime is registered under.
pub const NAME: &str = "gpu-share";
/// The name the ECS agent asks for.
pub const NVIDIA: &str = "nvidia";

#[derive(Debug, Clone)]
pub struct Paths {
    pub daemon_json: PathBuf,
    pub sysconfig: PathBuf,
    pub runtimes_dir: PathBuf,
    /// What `configure` replaced, for `unconfigure`.
    pub record: PathBuf,
}

impl Default for Paths {
    fn default() -> Self {
        Paths {
            daemon_json: PathBuf::from("/etc/docker/daemon.json"),
            sysconfig: PathBuf::from("/etc/sysconfig/docker"),
            runtimes_dir: PathBuf::from("/etc/docker-runtimes.d"),
            record: PathBuf::from("/etc/gpu-share/docker-configure.json"),
        }
    }
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
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DockerConfigError + '_ {
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
    /// daemon.json did not exist before: unconfigure removes it again when nothing else is left.
    #[serde(default)]
    pub created_daemon_json: bool,
}

/// One change to the filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    Write {
        path: PathBuf,
        before: Option<String>,
        after: String,
        /// Keep a timestamped copy of the old file beside it.
        backup: bool,
    },
    Link {
        path: PathBuf,
        target: PathBuf,
    },
    Restore {
        path: PathBuf,
        previous: Previous,
    },
    Remove {
        path: PathBuf,
    },
}

/// The files as they are.
#[derive(Debug, Clone, Default)]
pub struct Current {
    pub daemon_text: Option<String>,
    pub daemon: Option<Map<String, Value>>,
    pub sysconfig: Option<String>,
    pub runtimes_dir: bool,
    pub nvidia_file: Previous,
    pub gpu_share_link: Option<PathBuf>,
    pub record: Option<Record>,
}

/// Reads the files `paths` names. Invalid daemon.json is an error: nothing may be written then.
pub fn read_current(paths: &Paths) -> Result<Current, DockerConfigError> {
    let read = |p: &Path| match std::fs::read_to_string(p) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(p)(e)),
    };
    let daemon_text = read(&paths.daemon_json)?;
    let daemon = match &daemon_text {
        Some(t) if t.trim().is_empty() => Some(Map::new()),
        Some(t) => match serde_json::from_str::<Value>(t) {
            Ok(Value::Object(m)) => Some(m),
            Ok(_) => {
                return Err(DockerConfigError::NotAnObject {
                    path: paths.daemon_json.display().to_string(),
                })
            }
            Err(source) => {
                return Err(DockerConfigError::BadJson {
                    path: paths.daemon_json.display().to_string(),
                    source,
                })
            }
        },
        None => None,
    };
    let nvidia = paths.runtimes_dir.join(NVIDIA);
    let nvidia_file = match std::fs::symlink_metadata(&nvidia) {
        Ok(m) if m.file_type().is_symlink() => Previous::Link(
            std::fs::read_link(&nvidia)
                .map_err(io(&nvidia))?
                .display()
                .to_string(),
        ),
        Ok(_) => Previous::File(std::fs::read_to_string(&nvidia).map_err(io(&nvidia))?),
        Err(_) => Previous::Absent,
    };
    let record = read(&paths.record)?.and_then(|t| serde_json::from_str(&t).ok());
    Ok(Current {
        daemon_text,
        daemon,
        sysconfig: read(&paths.sysconfig)?,
        runtimes_dir: paths.runtimes_dir.is_dir(),
        nvidia_file,
        gpu_share_link: std::fs::read_link(paths.runtimes_dir.join(NAME)).ok(),
        record,
    })
}

fn render_json(m: &Map<String, Value>) -> String {
    let mut s = serde_json::to_string_pretty(&Value::Object(m.clone())).unwrap_or_default();
    s.push('\n');
    s
}

fn runtime_path_of(add_runtime: &str) -> Option<(&str, &str)> {
    add_runtime.split_once('=')
}

/// The edits that make `runtime` dockerd's default and its `nvidia`, and the record of what was
/// there. Running it on its own result gives no edits.
pub fn plan_configure(
    paths: &Paths,
    current: &Current,
    runtime: &Path,
) -> Result<(Vec<Edit>, Record), DockerConfigError> {
    let runtime_s = runtime.display().to_string();
    let mut daemon = current.daemon.clone().unwrap_or_default();
    let mut options = current.sysconfig.as_deref().map(Options::parse);
    let flags_add = options
        .as_ref()
        .is_some_and(|o| !o.values("add-runtime").is_empty());
    let json_runtimes = daemon.contains_key("runtimes");
    if flags_add && json_runtimes {
        return Err(DockerConfigError::Conflict(
            paths.daemon_json.display().to_string(),
            paths.sysconfig.display().to_string(),
        ));
    }
    let runtimes_in = if json_runtimes {
        Location::DaemonJson
    } else if flags_add {
        Location::Sysconfig
    } else if current.runtimes_dir {
        Location::RuntimesDir
    } else {
        Location::DaemonJson
    };
    let flag_default = options
        .as_ref()
        .and_then(|o| o.values("default-runtime").last().cloned());
    let default_in = if flag_default.is_some() {
        Location::Sysconfig
    } else if daemon.contains_key("default-runtime") {
        Location::DaemonJson
    } else if runtimes_in != Location::DaemonJson && options.is_some() {
        Location::Sysconfig
    } else {
        Location::DaemonJson
    };
    let found_default = flag_default.or_else(|| {
        daemon
            .get("default-runtime")
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    let found_nvidia = match runtimes_in {
        Location::DaemonJson => daemon
            .get("runtimes")
            .and_then(|r| r.get(NVIDIA))
            .cloned()
            .map_or(Previous::Absent, Previous::Json),
        Location::Sysconfig => options
            .as_ref()
            .and_then(|o| {
                o.values("add-runtime")
                    .iter()
                    .filter_map(|v| runtime_path_of(v))
                    .find(|(n, _)| *n == NVIDIA)
                    .map(|(_, p)| Previous::Path(p.to_owned()))
            })
            .unwrap_or(Previous::Absent),
        Location::RuntimesDir => current.nvidia_file.clone(),
    };
    // A second configure must not take its own work for what was there before.
    let record = current.record.clone().unwrap_or(Record {
        runtimes_in,
        default_in,
        previous_default: found_default,
        previous_nvidia: found_nvidia,
        created_daemon_json: current.daemon_text.is_none(),
    });

    let mut edits = Vec::new();
    match runtimes_in {
        Location::DaemonJson => {
            let runtimes = daemon
                .entry("runtimes")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(r) = runtimes {
                for name in [NAME, NVIDIA] {
                    r.insert(name.to_owned(), serde_json::json!({"path": runtime_s}));
                }
            }
        }
        Location::Sysconfig => {
            if let Some(o) = options.as_mut() {
                o.remove("add-runtime", |v| {
                    runtime_path_of(v).is_some_and(|(n, _)| n == NAME || n == NVIDIA)
                });
                for name in [NAME, NVIDIA] {
                    o.add("add-runtime", &format!("{name}={runtime_s}"));
                }
            }
        }
        Location::RuntimesDir => {
            for name in [NAME, NVIDIA] {
                let path = paths.runtimes_dir.join(name);
                let already = std::fs::read_link(&path).is_ok_and(|t| t == runtime);
                if !already {
                    edits.push(Edit::Link {
                        path,
                        target: runtime.to_path_buf(),
                    });
                }
            }
        }
    }
    match default_in {
        Location::Sysconfig => {
            if let Some(o) = options.as_mut() {
                o.remove("default-runtime", |_| true);
                o.add("default-runtime", NAME);
            }
        }
        _ => {
            daemon.insert("default-runtime".to_owned(), Value::from(NAME));
        }
    }
    push_daemon_write(paths, current, &daemon, &mut edits);
    push_sysconfig_write(paths, current, options.as_ref(), &mut edits);
    if current.record.is_none() {
        let text = serde_json::to_string_pretty(&record).unwrap_or_default() + "\n";
        edits.push(Edit::Write {
            path: paths.record.clone(),
            before: None,
            after: text,
            backup: false,
        });
    }
    Ok((edits, record))
}

/// A write of daemon.json, where its settings changed.
fn push_daemon_write(
    paths: &Paths,
    current: &Current,
    daemon: &Map<String, Value>,
    edits: &mut Vec<Edit>,
) {
    let changed = match &current.daemon {
        Some(before) => before != daemon,
        None => !daemon.is_empty(),
    };
    if changed {
        edits.push(Edit::Write {
            path: paths.daemon_json.clone(),
            before: current.daemon_text.clone(),
            after: render_json(daemon),
            backup: current.daemon_text.is_some(),
        });
    }
}

/// A write of the sysconfig file, where its flags changed.
fn push_sysconfig_write(
    paths: &Paths,
    current: &Current,
    options: Option<&Options>,
    edits: &mut Vec<Edit>,
) {
    if let (Some(o), Some(before)) = (options, &current.sysconfig) {
        if Options::parse(before).words != o.words {
            edits.push(Edit::Write {
                path: paths.sysconfig.clone(),
                before: Some(before.clone()),
                after: o.render(),
                backup: false,
            });
        }
    }
}

/// The edits that put back what the record says configure replaced.
pub fn plan_unconfigure(paths: &Paths, current: &Current) -> Result<Vec<Edit>, DockerConfigError> {
    let record = current
        .record
        .clone()
        .ok_or_else(|| DockerConfigError::NoRecord(paths.record.display().to_string()))?;
    let mut daemon = current.daemon.clone().unwrap_or_default();
    let mut options = current.sysconfig.as_deref().map(Options::parse);
    let mut edits = Vec::new();
    match record.runtimes_in {
        Location::DaemonJson => {
            let mut now_empty = false;
            if let Some(Value::Object(r)) = daemon.get_mut("runtimes") {
                r.remove(NAME);
                match &record.previous_nvidia {
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
                daemon.remove("runtimes");
            }
        }
        Location::Sysconfig => {
            if let Some(o) = options.as_mut() {
                o.remove("add-runtime", |v| {
                    runtime_path_of(v).is_some_and(|(n, _)| n == NAME || n == NVIDIA)
                });
                if let Previous::Path(p) = &record.previous_nvidia {
                    o.add("add-runtime", &format!("{NVIDIA}={p}"));
                }
            }
        }
        Location::RuntimesDir => {
            if current.gpu_share_link.is_some() {
                edits.push(Edit::Remove {
                    path: paths.runtimes_dir.join(NAME),
                });
            }
            edits.push(Edit::Restore {
                path: paths.runtimes_dir.join(NVIDIA),
                previous: record.previous_nvidia.clone(),
            });
        }
    }
    match (record.default_in, &record.previous_default) {
        (Location::Sysconfig, prev) => {
            if let Some(o) = options.as_mut() {
                o.remove("default-runtime", |_| true);
                if let Some(p) = prev {
                    o.add("default-runtime", p);
                }
            }
        }
        (_, Some(p)) => {
            daemon.insert("default-runtime".to_owned(), Value::from(p.as_str()));
        }
        (_, None) => {
            daemon.remove("default-runtime");
        }
    }
    if record.created_daemon_json && daemon.is_empty() && current.daemon.is_some() {
        edits.push(Edit::Remove {
            path: paths.daemon_json.clone(),
        });
    } else {
        push_daemon_write(paths, current, &daemon, &mut edits);
    }
    push_sysconfig_write(paths, current, options.as_ref(), &mut edits);
    edits.push(Edit::Remove {
        path: paths.record.clone(),
    });
    Ok(edits)
}

/// A person-readable account of the edits: unified diffs and link changes.
pub fn describe(edits: &[Edit]) -> String {
    let mut out = String::new();
    for e in edits {
        match e {
            Edit::Write {
                path,
                before,
                after,
                ..
            } => {
                let old = before.as_deref().unwrap_or("");
                let shown = path.display().to_string();
                let diff = similar::TextDiff::from_lines(old, after.as_str());
                out.push_str(
                    &diff
                        .unified_diff()
                        .header(&format!("{shown} (before)"), &format!("{shown} (after)"))
                        .to_string(),
                );
            }
            Edit::Link { path, target } => out.push_str(&format!(
                "link {} -> {}\n",
                path.display(),
                target.display()
            )),
            Edit::Restore { path, previous } => {
                let what = match previous {
                    Previous::Absent => "remove".to_owned(),
                    Previous::Link(t) => format!("link -> {t}"),
                    Previous::File(_) => "restore the original file".to_owned(),
                    Previous::Json(_) | Previous::Path(_) => "restore".to_owned(),
                };
                out.push_str(&format!("{}: {what}\n", path.display()));
            }
            Edit::Remove { path } => out.push_str(&format!("remove {}\n", path.display())),
        }
    }
    out
}

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
            Edit::Link { path, target } => replace_with_link(path, target)?,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(dir: &Path) -> Paths {
        Paths {
            daemon_json: dir.join("daemon.json"),
            sysconfig: dir.join("sysconfig-docker"),
            runtimes_dir: dir.join("runtimes.d"),
            record: dir.join("record.json"),
        }
    }

    #[test]
    fn sysconfig_default_is_changed_in_sysconfig_and_runtimes_go_to_daemon_json() {
        let current = Current {
            sysconfig: Some("OPTIONS=\"--default-runtime nvidia\"\n".into()),
            ..Current::default()
        };
        let dir = Path::new("/etc");
        let (edits, record) = plan_configure(
            &paths(dir),
            &current,
            Path::new("/usr/bin/gpu-share-runtime"),
        )
        .unwrap();
        assert_eq!(record.default_in, Location::Sysconfig);
        assert_eq!(record.previous_default.as_deref(), Some("nvidia"));
        assert_eq!(record.runtimes_in, Location::DaemonJson);
        let text = describe(&edits);
        assert!(
            text.contains("+OPTIONS=\"--default-runtime gpu-share\""),
            "{text}"
        );
        assert!(
            !text.contains("+  \"default-runtime\""),
            "set twice: {text}"
        );
    }

    #[test]
    fn runtimes_in_both_places_is_refused() {
        let current = Current {
            daemon: Some(serde_json::from_str(r#"{"runtimes": {}}"#).unwrap()),
            sysconfig: Some("OPTIONS=\"--add-runtime x=/y\"\n".into()),
            ..Current::default()
        };
        let e = plan_configure(&paths(Path::new("/etc")), &current, Path::new("/r")).unwrap_err();
        assert!(matches!(e, DockerConfigError::Conflict(..)));
    }
}
