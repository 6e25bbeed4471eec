//! Where the digest is kept (`<state.dir>/cdi-digest`) and when it is rebuilt.
//!
//! A create stats the digest's keys (no directory listing) and reads only the digest while they
//! match; otherwise, or where the digest is damaged or of another version, it is rebuilt from
//! the specs and replaced atomically (concurrent creates each write a whole, correct digest; the
//! last rename wins). A digest that cannot be written does not stop a create: the one built in
//! memory is used. It never reads a spec itself (`digest` does) and never touches config.json.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::digest::{Digest, DigestError};
use super::packed::{self, Packed};
use crate::atomic::{self, Perms};
use crate::read_whole;

/// The digest's file name in `state.dir`.
pub const DIGEST_FILE: &str = "cdi-digest";

/// A digest larger than this is damaged, not read.
const MAX_DIGEST_BYTES: u64 = 8 * 1024 * 1024;

/// Why the digest in use was (re)built, for doctor and the tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The saved digest matched the specs.
    Current,
    /// There was none, or the specs changed since.
    Rebuilt,
    /// The saved one was damaged (or of another version) and was rebuilt.
    RebuiltCorrupt,
}

/// Whether `digest` was built from the spec directories under `root` and every key is as it
/// was: nothing to rebuild.
pub fn is_current(digest: &Packed, root: &Path) -> bool {
    let rooted = Digest::dirs(root)
        .iter()
        .all(|d| digest.keys.iter().any(|k| k.path == *d));
    rooted && digest.keys.iter().all(|k| k.is_current())
}

/// The digest, or the problem it recorded.
fn usable(digest: Packed, origin: Origin) -> Result<(Packed, Origin), DigestError> {
    match digest.problem {
        Some(problem) => Err(DigestError::Recorded(problem)),
        None => Ok((digest, origin)),
    }
}

/// The saved digest in `state_dir`, if it reads and is of this version.
pub fn saved(state_dir: &Path) -> Option<Packed> {
    Packed::parse(read_bounded(&state_dir.join(DIGEST_FILE))?)
}

/// The digest for the specs under `root`: the saved one while it is current, else one built
/// now and saved (best effort) for the next create.
pub fn load(root: &Path, state_dir: &Path) -> Result<(Packed, Origin), DigestError> {
    let path = state_dir.join(DIGEST_FILE);
    let origin = match read_bounded(&path).map(Packed::parse) {
        Some(Some(d)) if is_current(&d, root) => return usable(d, Origin::Current),
        Some(Some(_)) | None => Origin::Rebuilt,
        Some(None) => Origin::RebuiltCorrupt,
    };
    let encoded = packed::encode(&Digest::build_or_record(root));
    if encoded.exact {
        let _ = std::fs::create_dir_all(state_dir);
        let perms = Perms {
            mode: 0o644,
            owner: None,
        };
        let _ = atomic::replace_volatile(&path, &encoded.bytes, perms);
    }
    // Only a bug in the encoder gets here: what was just written is removed, as the message says.
    let digest = Packed::parse(encoded.bytes).ok_or_else(|| discard(state_dir))?;
    usable(digest, origin)
}

/// Removes a saved digest whose edits turned out not to read, so that the next create rebuilds
/// it; the error to report.
pub fn discard(state_dir: &Path) -> DigestError {
    let path = state_dir.join(DIGEST_FILE);
    let _ = std::fs::remove_file(&path);
    DigestError::Damaged(path.display().to_string())
}

/// A file's bytes, or `None` where it is missing, unreadable, not a regular file or too big to
/// be a digest. Opened without blocking, so a FIFO in its place cannot hang a create.
fn read_bounded(path: &Path) -> Option<Vec<u8>> {
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.len() > MAX_DIGEST_BYTES {
        return None;
    }
    read_whole::read_to_end(&mut file, meta.len() as usize, MAX_DIGEST_BYTES as usize).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdi::digest::fixtures::{spec, write};

    #[test]
    fn a_changed_spec_makes_the_digest_stale_and_a_corrupt_one_is_rebuilt() {
        let root = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        write(root.path(), "etc/cdi/nvidia.yaml", &spec("A=1", &["0"]));
        let (_, origin) = load(root.path(), state.path()).unwrap();
        assert_eq!(origin, Origin::Rebuilt);
        let (_, origin) = load(root.path(), state.path()).unwrap();
        assert_eq!(origin, Origin::Current);
        write(root.path(), "etc/cdi/nvidia.yaml", &spec("A=22", &["0"]));
        let (d, origin) = load(root.path(), state.path()).unwrap();
        assert_eq!(origin, Origin::Rebuilt);
        assert_eq!(d.device_edits(0).unwrap().env, vec!["A=22".to_owned()]);
        // Cut short, or one byte changed: rebuilt, never trusted.
        let file = state.path().join(DIGEST_FILE);
        let whole = std::fs::read(&file).unwrap();
        for damaged in [whole[..whole.len() - 3].to_vec(), {
            let mut b = whole.clone();
            *b.last_mut().unwrap() ^= 0x20;
            b
        }] {
            std::fs::write(&file, damaged).unwrap();
            let (_, origin) = load(root.path(), state.path()).unwrap();
            assert_eq!(origin, Origin::RebuiltCorrupt);
            assert_eq!(std::fs::read(&file).unwrap(), whole);
        }
    }

    #[test]
    fn a_spec_that_cannot_be_used_is_recorded_until_it_changes() {
        let root = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        write(root.path(), "etc/cdi/nvidia.yaml", "cdiVersion: [\n");
        let first = load(root.path(), state.path()).unwrap_err();
        assert!(matches!(first, DigestError::Recorded(_)), "{first}");
        assert!(first.to_string().contains("not a valid spec"), "{first}");
        let recorded = saved(state.path()).unwrap();
        assert!(is_current(&recorded, root.path()) && recorded.problem.is_some());
        let again = load(root.path(), state.path()).unwrap_err();
        assert_eq!(again.to_string(), first.to_string());
        write(root.path(), "etc/cdi/nvidia.yaml", &spec("A=1", &["0"]));
        let (d, origin) = load(root.path(), state.path()).unwrap();
        assert_eq!((origin, d.devices.len()), (Origin::Rebuilt, 1));
    }

    #[test]
    fn a_fifo_in_the_digests_place_is_replaced_not_waited_on() {
        let root = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        write(root.path(), "etc/cdi/nvidia.yaml", &spec("A=1", &["0"]));
        let file = state.path().join(DIGEST_FILE);
        nix::unistd::mkfifo(&file, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let (sent, got) = std::sync::mpsc::channel();
        let (r, s) = (root.path().to_owned(), state.path().to_owned());
        std::thread::spawn(move || sent.send(load(&r, &s).map(|(_, origin)| origin).ok()));
        let origin = got
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("a create waited on a FIFO with no writer");
        assert_eq!(origin, Some(Origin::Rebuilt));
        assert!(std::fs::metadata(&file).unwrap().is_file());
    }

    #[test]
    fn a_digest_of_another_root_is_rebuilt() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let state = tempfile::tempdir().unwrap();
        write(a.path(), "etc/cdi/nvidia.yaml", &spec("A=1", &["0"]));
        write(b.path(), "etc/cdi/nvidia.yaml", &spec("B=1", &["0"]));
        load(a.path(), state.path()).unwrap();
        let (d, origin) = load(b.path(), state.path()).unwrap();
        assert_eq!(origin, Origin::Rebuilt);
        assert_eq!(d.spec_edits(0).unwrap().env, ["B=1"]);
    }
}
