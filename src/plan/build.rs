//! The JSON entries edits append to the spec, rendered directly as compact JSON text, and the
//! error an edit fails with.
//!
//! Each entry has exactly the field names, order and values runc's spec types give it (the
//! OCI runtime spec's `LinuxDevice`, `LinuxDeviceCgroup` and `Hook`), written byte for byte as
//! serde_json writes such a value compactly, so a spec kept as text and one built as `Value`s
//! (`spec::Appender`) come out the same. A path that is not UTF-8 cannot be written into JSON:
//! that is an error that stops the create, never a piece silently left out.

use std::path::Path;

use crate::decimal::{decimal, MAX_DIGITS};
use crate::gpu::DeviceNode;
use crate::spec::{push_string, NotJson, ShapeError};

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Shape(#[from] ShapeError),
    /// A device node whose path names one NVIDIA node and whose number another (or none).
    #[error(
        "config.json: linux.devices gives {given:?} as {found}, but {path} is {expected} on this \
         host: refusing a device node whose path and number disagree"
    )]
    Contradicts {
        given: String,
        found: String,
        path: String,
        expected: String,
    },
    #[error("cannot write {what} into config.json: {path:?} is not UTF-8")]
    NotUtf8 { what: &'static str, path: String },
    #[error(transparent)]
    NotJson(#[from] NotJson),
}

/// `path`'s text, or the error naming `what` it was for.
fn path_text<'a>(what: &'static str, path: &'a Path) -> Result<&'a str, PlanError> {
    path.to_str().ok_or_else(|| PlanError::NotUtf8 {
        what,
        path: path.display().to_string(),
    })
}

/// Appends `,` before every entry but a list's first.
pub fn separate(out: &mut Vec<u8>) {
    if !out.is_empty() {
        out.push(b',');
    }
}

/// Appends `n` in decimal, as serde_json writes an integer.
fn push_integer(out: &mut Vec<u8>, n: i64) {
    if n < 0 {
        out.push(b'-');
    }
    push_unsigned(out, n.unsigned_abs());
}

fn push_unsigned(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(decimal(n, &mut [0; MAX_DIGITS]).as_bytes());
}

/// `"type":"c","major":M,"minor":m`: a node's number, as both its entries give it.
fn push_number(out: &mut Vec<u8>, node: &DeviceNode) {
    out.extend_from_slice(b"\"type\":\"");
    out.extend_from_slice(type_text(node.kind).as_bytes());
    out.extend_from_slice(b"\",\"major\":");
    push_unsigned(out, node.major);
    out.extend_from_slice(b",\"minor\":");
    push_unsigned(out, node.minor);
}

/// Appends a JSON array of `items`.
pub fn push_strings<S: AsRef<str>>(out: &mut Vec<u8>, items: &[S]) {
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_string(out, item.as_ref());
    }
    out.push(b']');
}

/// A node's OCI type: `b` for a block device, `c` otherwise.
fn type_text(kind: char) -> &'static str {
    if kind == 'b' {
        "b"
    } else {
        "c"
    }
}

/// Starts an entry whose first key is `path` (after a `,` where `out` holds entries already);
/// nothing is written where the path is not UTF-8.
fn open_with_path(out: &mut Vec<u8>, what: &'static str, path: &Path) -> Result<(), PlanError> {
    let text = path_text(what, path)?;
    separate(out);
    out.extend_from_slice(b"{\"path\":");
    push_string(out, text);
    Ok(())
}

/// A `linux.devices` entry: path, type, major, minor, fileMode, uid, gid.
pub fn device_entry(out: &mut Vec<u8>, node: &DeviceNode) -> Result<(), PlanError> {
    open_with_path(out, "a linux.devices entry", &node.path)?;
    out.push(b',');
    push_number(out, node);
    out.extend_from_slice(b",\"fileMode\":");
    push_unsigned(out, u64::from(node.mode));
    out.extend_from_slice(b",\"uid\":");
    push_unsigned(out, u64::from(node.uid));
    out.extend_from_slice(b",\"gid\":");
    push_unsigned(out, u64::from(node.gid));
    out.push(b'}');
    Ok(())
}

/// A `linux.resources.devices` allow rule: allow, type, major, minor, access `rwm`.
pub fn allow_rule(out: &mut Vec<u8>, node: &DeviceNode) {
    separate(out);
    out.extend_from_slice(b"{\"allow\":true,");
    push_number(out, node);
    out.extend_from_slice(b",\"access\":\"rwm\"}");
}

/// A hook entry: path, args.
pub fn hook_entry(
    out: &mut Vec<u8>,
    what: &'static str,
    path: &Path,
    args: &[&str],
) -> Result<(), PlanError> {
    open_with_path(out, what, path)?;
    close_hook(out, args, &[], None);
    Ok(())
}

/// The rest of a hook entry after its `path`: `args`, `env` and `timeout` where it has them
/// (OCI's `Hook` leaves out what is empty), and the closing brace.
pub fn close_hook<S: AsRef<str>>(out: &mut Vec<u8>, args: &[S], env: &[S], timeout: Option<i64>) {
    if !args.is_empty() {
        out.extend_from_slice(b",\"args\":");
        push_strings(out, args);
    }
    if !env.is_empty() {
        out.extend_from_slice(b",\"env\":");
        push_strings(out, env);
    }
    if let Some(t) = timeout {
        out.extend_from_slice(b",\"timeout\":");
        push_integer(out, t);
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use std::path::PathBuf;

    fn node(path: &str, kind: char, major: u64, minor: u64) -> DeviceNode {
        DeviceNode {
            path: PathBuf::from(path),
            kind,
            major,
            minor,
            mode: 0o666,
            uid: 0,
            gid: 44,
        }
    }

    fn parsed(out: &[u8]) -> Value {
        serde_json::from_slice(&[b"[", out, b"]"].concat()).unwrap()
    }

    #[test]
    fn entries_are_the_json_runc_reads_written_as_serde_writes_it() {
        let mut out = Vec::new();
        device_entry(&mut out, &node("/dev/nvidia0", 'c', 195, 0)).unwrap();
        device_entry(&mut out, &node("/dev/\"odd\\", 'b', 8, 4_294_967_296)).unwrap();
        allow_rule(&mut out, &node("/dev/nvidia0", 'c', 195, 0));
        hook_entry(&mut out, "a hook", Path::new("/h"), &["h", "prestart"]).unwrap();
        let expected = json!([
            {"path": "/dev/nvidia0", "type": "c", "major": 195, "minor": 0, "fileMode": 438, "uid": 0, "gid": 44},
            {"path": "/dev/\"odd\\", "type": "b", "major": 8, "minor": 4_294_967_296_u64, "fileMode": 438, "uid": 0, "gid": 44},
            {"allow": true, "type": "c", "major": 195, "minor": 0, "access": "rwm"},
            {"path": "/h", "args": ["h", "prestart"]}
        ]);
        assert_eq!(parsed(&out), expected);
        let written = serde_json::to_vec(&expected).unwrap();
        assert_eq!(out, written[1..written.len() - 1]);
    }

    #[test]
    fn integers_are_written_in_decimal() {
        for n in [0, 7, -7, 10, 195, i64::MAX, i64::MIN] {
            let mut out = Vec::new();
            push_integer(&mut out, n);
            assert_eq!(out, n.to_string().into_bytes());
        }
    }

    #[test]
    fn a_path_that_is_not_utf8_is_an_error_and_writes_nothing() {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;
        let mut bad = node("/dev/x", 'c', 1, 1);
        bad.path = PathBuf::from(OsStr::from_bytes(b"/dev/\xff"));
        let mut out = Vec::new();
        assert!(matches!(
            device_entry(&mut out, &bad),
            Err(PlanError::NotUtf8 { .. })
        ));
        assert!(out.is_empty());
    }
}
