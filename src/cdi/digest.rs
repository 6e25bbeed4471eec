//! The digest: what create needs of the host's NVIDIA CDI specs, built from them, and the keys
//! that say when it is out of date.
//!
//! Keyed by the stat (mtime, size, inode) of both spec directories and of every spec file it was
//! built from: a file added, removed, renamed or rewritten changes one of them. Its file format
//! is `packed`'s, and where it is kept and when it is rebuilt `store`'s.
//!
//! Owns the precedence between specs: CDI's rule, the later directory (`var/run/cdi`) wins for a
//! device name both give; two specs of one directory giving one name is an error. It never
//! decides which GPU a container gets and never touches config.json.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::edits::ContainerEdits;
use super::spec::{self, SpecError, NVIDIA_GPU_KIND};

/// The spec directories under `root`, lowest precedence first (CDI's order).
pub const SPEC_DIRS: &[&str] = &["etc/cdi", "var/run/cdi"];

#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("cannot list CDI spec directory {dir}: {source}")]
    List { dir: String, source: io::Error },
    #[error("CDI specs {first} and {second} both give device {kind}={name}")]
    Conflict {
        kind: &'static str,
        name: String,
        first: String,
        second: String,
    },
    /// One of the errors above, as the digest recorded it when the specs were last read: specs
    /// that cannot be used are not re-read (YAML and all) by every create until they change.
    #[error("{0}")]
    Recorded(String),
    /// A saved digest whose checksum holds but whose edits do not read: removed, so that the
    /// next create rebuilds it.
    #[error("the CDI digest {0} is damaged; it was removed and the next create rebuilds it")]
    Damaged(String),
}

/// What a file or directory was when the digest was built; `None` where it did not exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub path: PathBuf,
    pub stat: Option<Stat>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub mtime_s: i64,
    pub mtime_ns: i64,
    pub size: u64,
    pub ino: u64,
}

impl Stat {
    /// `path`'s stat now; `None` where it does not exist (or cannot be stat'ed).
    pub fn of(path: &Path) -> Option<Stat> {
        std::fs::metadata(path).ok().map(|m| Stat {
            mtime_s: m.mtime(),
            mtime_ns: m.mtime_nsec(),
            size: m.size(),
            ino: m.ino(),
        })
    }
}

impl Key {
    fn of(path: PathBuf) -> Key {
        let stat = Stat::of(&path);
        Key { path, stat }
    }

    /// Whether the file is as it was when the digest was built.
    pub fn is_current(&self) -> bool {
        Stat::of(&self.path) == self.stat
    }
}

/// One NVIDIA spec: where it is and its spec-wide edits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestSpec {
    pub path: PathBuf,
    pub edits: ContainerEdits,
}

/// One device of kind `nvidia.com/gpu`, after precedence: its name, the spec it comes from (an
/// index into `specs`) and its edits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestDevice {
    pub name: String,
    pub spec: usize,
    pub edits: ContainerEdits,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Digest {
    pub keys: Vec<Key>,
    pub specs: Vec<DigestSpec>,
    pub devices: Vec<DigestDevice>,
    /// Why the specs these keys name cannot be used, where they cannot.
    pub problem: Option<String>,
}

impl Digest {
    /// The spec directories under `root`, as absolute paths, lowest precedence first.
    pub fn dirs(root: &Path) -> Vec<PathBuf> {
        SPEC_DIRS.iter().map(|d| root.join(d)).collect()
    }

    /// Builds the digest from the specs under `root`. Each file is stat'ed before it is read, so
    /// one changed while it is read is re-digested by the next create.
    pub fn build(root: &Path) -> Result<Digest, DigestError> {
        let mut digest = Digest::default();
        // (device index, the directory's precedence) for conflicts.
        let mut precedence: Vec<usize> = Vec::new();
        for (rank, dir) in Digest::dirs(root).into_iter().enumerate() {
            digest.keys.push(Key::of(dir.clone()));
            for path in spec_files(&dir)? {
                digest.keys.push(Key::of(path.clone()));
                let parsed = spec::read(&path)?;
                if parsed.kind != NVIDIA_GPU_KIND {
                    continue;
                }
                let index = digest.specs.len();
                digest.specs.push(DigestSpec {
                    path: path.clone(),
                    edits: parsed.container_edits,
                });
                for device in parsed.devices {
                    let found = digest.devices.iter().position(|d| d.name == device.name);
                    let entry = DigestDevice {
                        name: device.name,
                        spec: index,
                        edits: device.container_edits,
                    };
                    match found {
                        Some(i) if precedence[i] == rank => {
                            return Err(DigestError::Conflict {
                                kind: NVIDIA_GPU_KIND,
                                name: entry.name,
                                first: digest.specs[digest.devices[i].spec]
                                    .path
                                    .display()
                                    .to_string(),
                                second: path.display().to_string(),
                            })
                        }
                        Some(i) => {
                            digest.devices[i] = entry;
                            precedence[i] = rank;
                        }
                        None => {
                            digest.devices.push(entry);
                            precedence.push(rank);
                        }
                    }
                }
            }
        }
        Ok(digest)
    }

    /// [`Digest::build`], or where the specs cannot be used, a digest recording why under the
    /// keys they had before they were read.
    pub fn build_or_record(root: &Path) -> Digest {
        let mut keys = Vec::new();
        for dir in Digest::dirs(root) {
            keys.push(Key::of(dir.clone()));
            keys.extend(
                spec_files(&dir)
                    .unwrap_or_default()
                    .into_iter()
                    .map(Key::of),
            );
        }
        Digest::build(root).unwrap_or_else(|e| Digest {
            keys,
            problem: Some(e.to_string()),
            ..Digest::default()
        })
    }
}

/// The spec files directly in `dir`, sorted by name; none where `dir` does not exist.
fn spec_files(dir: &Path) -> Result<Vec<PathBuf>, DigestError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(DigestError::List {
                dir: dir.display().to_string(),
                source,
            })
        }
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| spec::is_spec_file(p) && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// Spec files for the tests of `digest`, `packed` and `store`.
#[cfg(test)]
pub mod fixtures {
    use std::path::Path;

    /// A spec giving each of `names` the variable `env`, and `env` in its common edits.
    pub fn spec(env: &str, names: &[&str]) -> String {
        let devices: Vec<String> = names
            .iter()
            .map(|n| format!("- name: \"{n}\"\n  containerEdits:\n    env: [{env}]\n"))
            .collect();
        format!(
            "cdiVersion: 0.6.0\nkind: nvidia.com/gpu\ndevices:\n{}containerEdits:\n  env: [{env}]\n",
            devices.concat()
        )
    }

    pub fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{spec, write};
    use super::*;

    #[test]
    fn var_run_wins_over_etc_for_one_name() {
        let root = tempfile::tempdir().unwrap();
        write(
            root.path(),
            "etc/cdi/nvidia.yaml",
            &spec("FROM=etc", &["0", "1"]),
        );
        write(
            root.path(),
            "var/run/cdi/nvidia.yaml",
            &spec("FROM=run", &["0"]),
        );
        let d = Digest::build(root.path()).unwrap();
        let env_of = |name: &str| {
            let dev = d.devices.iter().find(|x| x.name == name).unwrap();
            dev.edits.env[0].clone()
        };
        assert_eq!(env_of("0"), "FROM=run");
        assert_eq!(env_of("1"), "FROM=etc");
    }

    #[test]
    fn one_name_twice_in_one_dir_is_a_conflict() {
        let root = tempfile::tempdir().unwrap();
        write(root.path(), "etc/cdi/a.yaml", &spec("A=1", &["0"]));
        write(
            root.path(),
            "etc/cdi/b.json",
            "{\"cdiVersion\":\"0.6.0\",\"kind\":\"nvidia.com/gpu\",\"devices\":[{\"name\":\"0\"}]}",
        );
        let e = Digest::build(root.path()).unwrap_err();
        assert!(matches!(e, DigestError::Conflict { .. }), "{e}");
    }
}
