//! Building `Value`s only for the parts of `config.json` a create reads or edits, and writing
//! the rest back byte for byte.
//!
//! A spec is mostly what the shim never looks at: `root`, `process.args`/`capabilities`/
//! `rlimits`, `linux.namespaces`/`maskedPaths`/`seccomp` (docker's is tens of KiB), ...
//! Building those into `Value`s, then serializing them again, was most of a create's
//! instructions. Here the top level, and `process` and `linux` one level down, are read as
//! `(key, raw text)` pairs; only the paths in [`PARSED`] become `Value`s. Every other subtree
//! is held in the tree as a placeholder string (a per-process random nonce and an index into
//! the raw spans) and written back as the input's own bytes on save.
//!
//! Two readers give the same result. `scan` (with `values`) reads the text in one pass, skipping
//! raw subtrees and building the rest, and answers only where it is sure; serde (`raw_pairs`,
//! `unique_keys`) reads it otherwise, and words every refusal, with its line and column. A
//! property test holds the two to the same values, spans and refusals.
//!
//! Repeated keys (`unique_keys`) are refused on every level that is parsed: the three levels
//! read as pairs and everything under [`PARSED`]. A raw subtree is not checked: the shim does
//! not read it, and it reaches runc exactly as runc would have read it without the shim (the
//! same bytes), so no reading of it can disagree with the shim's.
//!
//! An edit's new array entries are held the same way (`hold_text`): their JSON text kept after
//! the input's bytes, and a placeholder for it in the array, so a create neither builds them as
//! `Value`s nor writes them again.
//!
//! A placeholder is recognised only with this process's nonce, which no input can know; so no
//! input string is ever mistaken for one, and no fallback parse is needed. It owns the
//! representation only: which file, and atomic writing, are `spec`'s.

use std::ops::Range;
use std::sync::OnceLock;

use serde_json::{Map, Value};

use super::compact;
use super::raw_pairs::{self, Pairs};
use super::scan::{Scanner, Unsure};
use super::unique_keys::{self, Error};
use super::values;
use crate::decimal::{decimal, MAX_DIGITS};

/// A path into the spec: one key, or two where the first is `process` or `linux`.
pub type SpecPath = &'static [&'static str];

pub const PROCESS_ENV: SpecPath = &["process", "env"];
/// Read by MPS capping: a non-root user gets a daemon of its own (`capping`).
pub const PROCESS_USER: SpecPath = &["process", "user"];
pub const MOUNTS: SpecPath = &["mounts"];
pub const HOOKS: SpecPath = &["hooks"];
pub const LINUX_DEVICES: SpecPath = &["linux", "devices"];
pub const LINUX_RESOURCES: SpecPath = &["linux", "resources"];
pub const CGROUPS_PATH: SpecPath = &["linux", "cgroupsPath"];

/// Every path the shim reads or edits; anything not under one of these is kept as raw text and
/// must never be read or edited. A new reader or edit adds its path here, and says it: a reader
/// of the loaded spec in [`LOADED`], an edit in its `Edit::paths` (`plan`).
pub const PARSED: &[SpecPath] = &[
    PROCESS_ENV,
    PROCESS_USER,
    MOUNTS,
    HOOKS,
    LINUX_DEVICES,
    LINUX_RESOURCES,
    CGROUPS_PATH,
];

/// The paths built at load: what is read before a plan exists (the request's env and cgroup
/// path, the GPUs `linux.devices` holds). An edit's other paths are built by [`expand`] once
/// the plan is known, so a legacy create never builds `mounts`.
pub const LOADED: &[SpecPath] = &[PROCESS_ENV, PROCESS_USER, CGROUPS_PATH, LINUX_DEVICES];

/// Top-level objects read one level further as pairs.
const SPLIT: &[&str] = &["process", "linux"];

const PLACEHOLDER: &str = "\u{1}gpu-share raw subtree ";

/// The input's bytes, the text of entries edits added, and the spans placeholders stand for: a
/// span from `bytes.len()` on is in `added` (counted from its start at `bytes.len()`).
#[derive(Debug, Default)]
pub struct Raw {
    bytes: Vec<u8>,
    /// Kept apart from `bytes`: appending there would copy the whole input to grow it.
    pub(super) added: Vec<u8>,
    spans: Vec<Range<usize>>,
}

impl Raw {
    /// The text placeholder `s` stands for, and whether an edit added it (else it is the
    /// input's); `None` for any other string.
    fn held(&self, s: &str) -> Option<(&[u8], bool)> {
        let span = self.spans.get(placeholder_index(s)?)?;
        Some(match span.start.checked_sub(self.bytes.len()) {
            Some(at) => (&self.added[at..at + span.len()], true),
            None => (&self.bytes[span.clone()], false),
        })
    }
}

/// This process's placeholder prefix: [`PLACEHOLDER`] and a nonce from the kernel's
/// `AT_RANDOM` bytes (which every process gets for free), made once.
fn prefix() -> &'static str {
    static PREFIX: OnceLock<String> = OnceLock::new();
    PREFIX.get_or_init(|| {
        // SAFETY: getauxval has no preconditions; AT_RANDOM, when present, points to 16 bytes
        // the kernel placed on the initial stack for the life of the process.
        let at = unsafe { libc::getauxval(libc::AT_RANDOM) } as *const u8;
        let nonce = if at.is_null() {
            // No auxv entry (not Linux as we know it): the stack's address still varies.
            let here = 0u8;
            std::ptr::addr_of!(here) as u64 ^ u64::from(std::process::id())
        } else {
            // SAFETY: as above, 16 readable bytes; read unaligned.
            unsafe { std::ptr::read_unaligned(at.cast::<u64>()) }
        };
        format!("{PLACEHOLDER}{nonce:016x} ")
    })
}

fn placeholder(index: usize) -> Value {
    let prefix = prefix();
    let mut s = String::with_capacity(prefix.len() + 4);
    s.push_str(prefix);
    s.push_str(decimal(index as u64, &mut [0; MAX_DIGITS]));
    Value::String(s)
}

/// The raw span index a placeholder string holds; `None` for any other string.
fn placeholder_index(s: &str) -> Option<usize> {
    // Every placeholder starts with a byte no spec string starts with in practice: one compare
    // rules out nearly every string before the prefix is looked at.
    if s.as_bytes().first() != PLACEHOLDER.as_bytes().first() {
        return None;
    }
    let digits = s.strip_prefix(prefix())?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Whether `v` stands for a raw subtree: an edit that meets one reached outside [`PARSED`].
pub fn is_placeholder(v: &Value) -> bool {
    v.as_str().and_then(placeholder_index).is_some()
}

/// Parses `bytes` building only [`PARSED`]'s values. A document that is not an object is
/// parsed whole (the caller refuses it). The fast reading (`scan`) is tried first; where it is
/// unsure, serde reads the text and gives the answer, refusal included.
pub fn parse(bytes: Vec<u8>) -> Result<(Value, Raw), Error> {
    if first_byte(&bytes) != Some(b'{') {
        return parse_full(bytes);
    }
    let mut spans = Vec::new();
    match parse_fast(&bytes, &mut spans) {
        Ok(value) => Ok((
            value,
            Raw {
                bytes,
                spans,
                ..Raw::default()
            },
        )),
        Err(Unsure) => parse_with_serde(bytes),
    }
}

fn parse_fast(bytes: &[u8], spans: &mut Vec<Range<usize>>) -> Result<Value, Unsure> {
    let mut s = Scanner::new(bytes)?;
    let root = object_fast(&mut s, None, spans)?;
    s.end()?;
    Ok(Value::Object(root))
}

/// The object that comes next: the top level (`parent` `None`), or one of [`SPLIT`] under it.
fn object_fast(
    s: &mut Scanner<'_>,
    parent: Option<&str>,
    spans: &mut Vec<Range<usize>>,
) -> Result<Map<String, Value>, Unsure> {
    s.begin_object()?;
    // Docker's top level, `process` and `linux` have about ten keys each.
    let mut object = Map::with_capacity(16);
    let mut first = true;
    while let Some(key) = s.next_key(&mut first)? {
        values::check_new_key(&object, &key)?;
        let value = match parent {
            Some(p) if wanted(&[p, &key]) => values::value(s)?,
            Some(_) => hold_span(s.skip_value()?, spans),
            None if wanted(&[&key]) => values::value(s)?,
            None if SPLIT.contains(&key.as_str()) && s.peek() == Some(b'{') => {
                Value::Object(object_fast(s, Some(&key), spans)?)
            }
            // Not an object: small, and the edits' shape errors need its type.
            None if SPLIT.contains(&key.as_str()) => values::value(s)?,
            None => hold_span(s.skip_value()?, spans),
        };
        object.insert(key, value);
    }
    Ok(object)
}

/// [`parse`] through serde only: the reference the fast reading answers for, and what words
/// every refusal.
pub fn parse_with_serde(bytes: Vec<u8>) -> Result<(Value, Raw), Error> {
    if first_byte(&bytes) != Some(b'{') {
        return parse_full(bytes);
    }
    let mut spans = Vec::new();
    let top = raw_pairs::from_slice(&bytes, &[])?;
    let mut root = Map::with_capacity(top.len());
    for (key, raw) in top {
        let text = raw.get().as_bytes();
        let value = if wanted(&[&key]) {
            parse_at(&bytes, text, &[&key])?
        } else if SPLIT.contains(&key.as_str()) && first_byte(text) == Some(b'{') {
            let inner = raw_pairs::from_slice(text, &[&key]).map_err(|e| shift(e, &bytes, text))?;
            Value::Object(split(&bytes, &key, inner, &mut spans)?)
        } else if SPLIT.contains(&key.as_str()) {
            parse_at(&bytes, text, &[&key])?
        } else {
            hold(&bytes, text, &mut spans)
        };
        root.insert(key, value);
    }
    let raw = Raw {
        bytes,
        spans,
        ..Raw::default()
    };
    Ok((Value::Object(root), raw))
}

/// Parses `bytes` into one whole `Value` (everything built, nothing held raw).
pub fn parse_full(bytes: Vec<u8>) -> Result<(Value, Raw), Error> {
    let value = unique_keys::from_slice(&bytes)?;
    Ok((value, Raw::default()))
}

fn split(
    whole: &[u8],
    parent: &str,
    pairs: Pairs<'_>,
    spans: &mut Vec<Range<usize>>,
) -> Result<Map<String, Value>, Error> {
    let mut object = Map::with_capacity(pairs.len());
    for (key, raw) in pairs {
        let text = raw.get().as_bytes();
        let value = if wanted(&[parent, &key]) {
            parse_at(whole, text, &[parent, &key])?
        } else {
            hold(whole, text, spans)
        };
        object.insert(key, value);
    }
    Ok(object)
}

fn wanted(path: &[&str]) -> bool {
    LOADED.contains(&path)
}

/// Builds the subtree at `path` (one of [`PARSED`]) where it is still held raw, checking its
/// keys as a load would have. A path that is absent, or under something that is not an
/// object, is left as it is (the edit creates it, or refuses the shape).
pub fn expand(value: &mut Value, raw: &Raw, path: &[&str]) -> Result<(), Error> {
    let mut slot = value;
    for key in path {
        match slot.as_object_mut().and_then(|o| o.get_mut(*key)) {
            Some(next) => slot = next,
            None => return Ok(()),
        }
    }
    // Only an input's subtree is ever held in an object's slot: added entries are array elements.
    let Some((text, false)) = slot.as_str().and_then(|s| raw.held(s)) else {
        return Ok(());
    };
    *slot = match values::value_of(text) {
        Ok(built) => built,
        Err(Unsure) => parse_at(&raw.bytes, text, path)?,
    };
    Ok(())
}

fn hold(whole: &[u8], text: &[u8], spans: &mut Vec<Range<usize>>) -> Value {
    let start = offset(whole, text);
    hold_span(start..start + text.len(), spans)
}

fn hold_span(span: Range<usize>, spans: &mut Vec<Range<usize>>) -> Value {
    spans.push(span);
    placeholder(spans.len() - 1)
}

/// Room for `len` more bytes of added text at once (`Appender::reserve` says why).
pub fn reserve_text(raw: &mut Raw, len: usize) {
    raw.added.reserve(len);
}

/// A placeholder for `text` (JSON values joined by commas, each written as [`compact`] writes
/// it), kept beside the input's bytes: an array element that [`to_vec`] writes as that text.
pub fn hold_text(raw: &mut Raw, text: &[u8]) -> Value {
    let start = raw.bytes.len() + raw.added.len();
    raw.added.extend_from_slice(text);
    hold_span(start..start + text.len(), &mut raw.spans)
}

/// The text a placeholder [`hold_text`] made stands for; `None` for any other value.
pub fn held_text<'r>(raw: &'r Raw, v: &Value) -> Option<&'r [u8]> {
    match v.as_str().and_then(|s| raw.held(s)) {
        Some((text, true)) => Some(text),
        _ => None,
    }
}

fn parse_at(whole: &[u8], text: &[u8], path: &[&str]) -> Result<Value, Error> {
    unique_keys::from_slice_at(text, path).map_err(|e| shift(e, whole, text))
}

/// Where `part` (a subslice of `whole`) starts in it.
fn offset(whole: &[u8], part: &[u8]) -> usize {
    part.as_ptr() as usize - whole.as_ptr() as usize
}

/// An error found in `part` with its line and column counted from `whole`'s start.
fn shift(e: Error, whole: &[u8], part: &[u8]) -> Error {
    let Error::Repeated {
        repeated,
        line,
        column,
    } = e
    else {
        return e;
    };
    let before = &whole[..offset(whole, part)];
    let lines_before = before.iter().filter(|&&b| b == b'\n').count();
    let start_column = before.len()
        - before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
    Error::Repeated {
        repeated,
        line: line + lines_before,
        column: if line == 1 {
            column + start_column
        } else {
            column
        },
    }
}

fn first_byte(bytes: &[u8]) -> Option<u8> {
    bytes.iter().copied().find(|b| !b.is_ascii_whitespace())
}

/// The document as compact JSON, each held subtree as the input's own bytes and each added
/// entry as its text: what `SpecFile::save` writes.
pub fn to_vec(value: &Value, raw: &Raw) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.bytes.len() + raw.added.len() + 4096);
    write(&mut out, value, raw);
    out
}

/// Writes `v`, a placeholder as the text it stands for: a raw subtree is one of [`parse`]'s
/// (depth 1 and 2), an added entry one of [`hold_text`]'s (an array element, at any depth
/// under a built path).
fn write(out: &mut Vec<u8>, v: &Value, raw: &Raw) {
    match v {
        Value::String(s) => match raw.held(s) {
            Some((text, _)) => out.extend_from_slice(text),
            None => compact::string(out, s),
        },
        Value::Object(map) => {
            out.push(b'{');
            for (i, (key, value)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                compact::string(out, key);
                out.push(b':');
                write(out, value, raw);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(out, item, raw);
            }
            out.push(b']');
        }
        _ => compact::value(out, v),
    }
}

#[cfg(test)]
mod tests;
