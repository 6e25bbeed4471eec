//! The digest: what create needs of the host's NVIDIA CDI specs, kept in `state.dir` as small
//! JSON (`cdi-digest.json`) so that a steady-state create reads no YAML.
//!
//! Keyed by the stat (mtime, size, inode) of both spec directories and of every spec file it was
//! built from: a file added, removed, renamed or rewritten changes one of them. A create stats
//! those keys (no directory listing), and reads only the digest while they match; otherwise, or
//! where the digest is corrupt or of another version, it is rebuilt from the specs and replaced
//! atomically (concurrent creates each write a whole, correct digest; the last rename wins).
//! A digest that cannot be written does not stop a create: the one built in memory is used.
//!
//! Owns the precedence between specs: CDI's rule, the later directory (`var/run/cdi`) wins for a
//! device name both give; two specs of one directory giving one name is an error. It never
//! decides which GPU a container gets and never touches config.json.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::edits::ContainerEdits;
use super::spec::{self, SpecError, NVIDIA_GPU_KIND};
use crate::atomic::{self, Perms};

/// The spec directories under `devices.root`, lowest precedence first (CDI's order).
pub const SPEC_DIRS: &[&str] = &["etc/cdi", "var/run/cdi"];

/// The digest's file name in `state.dir`.
pub const DIGEST_FILE: &str = "cdi-digest.json";

/// Bumped when the digest's shape changes: an older digest is rebuilt, never misread.
const VERSION: u32 = 1;

/// A digest larger than this is corrupt, not read.
const MAX_DIGEST_BYTES: u64 = 8 * 1024 * 1024;

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
}

/// What a file or directory was when the digest was built; `None` where it did not exist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Key {
    pub path: PathBuf,
    pub stat: Option<Stat>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stat {
    pub mtime_s: i64,
    pub mtime_ns: i64,
    pub size: u64,
    pub ino: u64,
}

impl Key {
    fn of(path: PathBuf) -> Key {
        let stat = std::fs::metadata(&path).ok().map(|m| Stat {
            mtime_s: m.mtime(),
            mtime_ns: m.mtime_nsec(),
            size: m.size(),
            ino: m.ino(),
        });
        Key { path, stat }
    }

    fn is_current(&self) -> bool {
        Key::of(self.path.clone()).stat == self.stat
    }
}

/// One NVIDIA spec: where it is and its spec-wide edits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestSpec {
    pub path: PathBuf,
    pub edits: ContainerEdits,
}

/// One device of kind `nvidia.com/gpu`, after precedence: its name, the spec it comes from (an
/// index into `specs`) and its edits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestDevice {
    pub name: String,
    pub spec: usize,
    pub edits: ContainerEdits,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    pub version: u32,
    pub keys: Vec<Key>,
    pub specs: Vec<DigestSpec>,
    pub devices: Vec<DigestDevice>,
    /// Why the specs these keys name cannot be used, where they cannot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// Why the digest in use was (re)built, for doctor and the tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The saved digest matched the specs.
    Current,
    /// There was none, or the specs changed since.
    Rebuilt,
    /// The saved one was corrupt (or of another version) and was rebuilt.
    RebuiltCorrupt,
}

impl Digest {
    /// Whether every key is as it was: nothing to rebuild.
    pub fn is_current(&self) -> bool {
        self.version == VERSION && self.keys.iter().all(Key::is_current)
    }

    /// The spec directories under `root`, as absolute paths, lowest precedence first.
    pub fn dirs(root: &Path) -> Vec<PathBuf> {
        SPEC_DIRS.iter().map(|d| root.join(d)).collect()
    }

    /// Builds the digest from the specs under `root`. Each file is stat'ed before it is read, so
    /// one changed while it is read is re-digested by the next create.
    pub fn build(root: &Path) -> Result<Digest, DigestError> {
        let mut digest = Digest {
            version: VERSION,
            keys: Vec::new(),
            specs: Vec::new(),
            devices: Vec::new(),
            problem: None,
        };
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

    /// The saved digest in `state_dir`, if it parses and is of this version.
    pub fn saved(state_dir: &Path) -> Option<Digest> {
        let bytes = read_bounded(&state_dir.join(DIGEST_FILE))?;
        serde_json::from_slice::<Digest>(&bytes)
            .ok()
            .filter(|d| d.version == VERSION)
    }

    /// The digest for the specs under `root`: the saved one while it is current, else one built
    /// now and saved (best effort) for the next create.
    pub fn load(root: &Path, state_dir: &Path) -> Result<(Digest, Origin), DigestError> {
        let path = state_dir.join(DIGEST_FILE);
        let saved = read_bounded(&path);
        let origin = match saved.as_deref().map(serde_json::from_slice::<Digest>) {
            Some(Ok(d)) if d.version == VERSION && d.rooted_at(root) && d.is_current() => {
                return d.usable(Origin::Current)
            }
            Some(Ok(d)) if d.version == VERSION => Origin::Rebuilt,
            Some(_) => Origin::RebuiltCorrupt,
            None => Origin::Rebuilt,
        };
        let digest = Digest::build_or_record(root);
        if let Ok(bytes) = serde_json::to_vec(&digest) {
            let _ = std::fs::create_dir_all(state_dir);
            let perms = Perms {
                mode: 0o644,
                owner: None,
            };
            let _ = atomic::replace_volatile(&path, &bytes, perms);
        }
        digest.usable(origin)
    }

    /// The digest, or the problem it recorded.
    fn usable(self, origin: Origin) -> Result<(Digest, Origin), DigestError> {
        match self.problem {
            Some(problem) => Err(DigestError::Recorded(problem)),
            None => Ok((self, origin)),
        }
    }

    /// [`Digest::build`], or where the specs cannot be used, a digest recording why under the
    /// keys they had before they were read.
    fn build_or_record(root: &Path) -> Digest {
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
            version: VERSION,
            keys,
            specs: Vec::new(),
            devices: Vec::new(),
            problem: Some(e.to_string()),
        })
    }

    /// Whether this digest was built from the spec directories under `root`.
    pub fn rooted_at(&self, root: &Path) -> bool {
        let dirs = Digest::dirs(root);
        let mine = self.keys.iter().map(|k| &k.path);
        dirs.iter().all(|d| mine.clone().any(|p| p == d))
    }
}

/// A file's bytes, or `None` where it is missing, unreadable or too big to be a digest.
fn read_bounded(path: &Path) -> Option<Vec<u8>> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() || meta.len() > MAX_DIGEST_BYTES {
        return None;
    }
    std::fs::read(path).ok()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(env: &str, names: &[&str]) -> String {
        let devices: Vec<String> = names
            .iter()
            .map(|n| format!("- name: \"{n}\"\n  containerEdits:\n    env: [{env}]\n"))
            .collect();
        format!(
            "cdiVersion: 0.6.0\nkind: nvidia.com/gpu\ndevices:\n{}containerEdits:\n  env: [{env}]\n",
            devices.concat()
        )
    }

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

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

    #[test]
    fn a_changed_spec_makes_the_digest_stale_and_a_corrupt_one_is_rebuilt() {
        let root = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        write(root.path(), "etc/cdi/nvidia.yaml", &spec("A=1", &["0"]));
        let (_, origin) = Digest::load(root.path(), state.path()).unwrap();
        assert_eq!(origin, Origin::Rebuilt);
        let (_, origin) = Digest::load(root.path(), state.path()).unwrap();
        assert_eq!(origin, Origin::Current);
        write(root.path(), "etc/cdi/nvidia.yaml", &spec("A=22", &["0"]));
        let (d, origin) = Digest::load(root.path(), state.path()).unwrap();
        assert_eq!(origin, Origin::Rebuilt);
        assert_eq!(d.devices[0].edits.env, vec!["A=22".to_owned()]);
        std::fs::write(state.path().join(DIGEST_FILE), b"{\"version\":1,").unwrap();
        let (_, origin) = Digest::load(root.path(), state.path()).unwrap();
        assert_eq!(origin, Origin::RebuiltCorrupt);
        assert!(Digest::saved(state.path()).is_some());
    }

    #[test]
    fn a_spec_that_cannot_be_used_is_recorded_until_it_changes() {
        let root = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        write(root.path(), "etc/cdi/nvidia.yaml", "cdiVersion: [\n");
        let first = Digest::load(root.path(), state.path()).unwrap_err();
        assert!(matches!(first, DigestError::Recorded(_)), "{first}");
        assert!(first.to_string().contains("not a valid spec"), "{first}");
        let recorded = Digest::saved(state.path()).unwrap();
        assert!(recorded.is_current() && recorded.problem.is_some());
        let again = Digest::load(root.path(), state.path()).unwrap_err();
        assert_eq!(again.to_string(), first.to_string());
        write(root.path(), "etc/cdi/nvidia.yaml", &spec("A=1", &["0"]));
        let (d, origin) = Digest::load(root.path(), state.path()).unwrap();
        assert_eq!((origin, d.devices.len()), (Origin::Rebuilt, 1));
    }
}
