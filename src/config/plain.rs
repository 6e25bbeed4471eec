//! The runtime's sections read without `toml`, from the plain TOML an operator writes.
//!
//! Every container start reads the config, and `toml` with serde's derived readers is the
//! largest code a create runs (about 120 KiB, for a file of a few lines): each 64 KiB of it a
//! page fault in a process that lives a fraction of a millisecond. This reader takes `[section]`
//! headers and `key = value` lines whose value is a one-line string (basic without escapes, or
//! literal), a decimal integer or a boolean, with comments and blank lines (the AMI's config,
//! and every example in the docs).
//!
//! For anything else it gives up (`None`) and the caller parses with `toml`: an escape, an
//! array, an inline or dotted table, a float or a date, a signed or `_`-separated number, a
//! control character, a key or section it does not know or is given twice, a value of the
//! wrong type or out of range. So it never accepts a file `toml` refuses, and never reads one
//! differently: a property test holds the two to the same result.
//!
//! Owns that subset only. The rules across keys stay `config`'s (`check_runtime`), and the
//! error messages `toml`'s.

use std::path::PathBuf;

use serde::de::value::{Error as NotAName, StrDeserializer};
use serde::Deserialize;

use super::sections::RuntimeSections;
use super::size::ByteSize;

/// The sections a create reads, as `RuntimeSections` holds them.
const RUNTIME: &[&str] = &[
    "runtime",
    "devices",
    "sharing",
    "hook",
    "log",
    "state",
    "isolation",
];

/// Sections only `gpu-share` reads: any value of the subset is let through there.
const TOOL_SECTIONS: &[&str] = &["nvml", "metrics", "health"];

/// More keys and headers than any config has (about 30 keys exist): past it the file is left
/// to `toml`, so that the duplicate check (a scan of those seen) stays short.
const MAX_ENTRIES: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Scalar<'a> {
    Str(&'a str),
    Int(i64),
    /// No runtime key is a boolean: one only passes in `TOOL_SECTIONS`, its value unread.
    Bool,
}

/// The runtime's sections of `text`, or `None` where it is not the plain subset.
pub fn read(text: &str) -> Option<RuntimeSections> {
    // TOML allows no control character but tab and a line's end, anywhere.
    let control = |b: u8| (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r')) || b == 0x7f;
    if text.bytes().any(control) {
        return None;
    }
    let mut out = RuntimeSections::default();
    let mut section: Option<&str> = None;
    // Headers as `(name, "")`: no bare key is empty, so a header never matches a key.
    let mut seen: Vec<(&str, &str)> = Vec::with_capacity(16);
    for line in text.split_inclusive('\n') {
        let line = match line.strip_suffix('\n') {
            Some(l) => l.strip_suffix('\r').unwrap_or(l),
            None => line,
        };
        if line.contains('\r') {
            return None;
        }
        let line = trim(line);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(header) = line.strip_prefix('[') {
            let (name, after) = header.split_once(']')?;
            let known = RUNTIME.contains(&name) || TOOL_SECTIONS.contains(&name);
            if !known || !ends(after) || seen.contains(&(name, "")) || seen.len() == MAX_ENTRIES {
                return None;
            }
            seen.push((name, ""));
            section = Some(name);
            continue;
        }
        let (key, rest) = line.split_once('=')?;
        let key = trim(key);
        let (value, after) = scalar(trim(rest))?;
        // `toml` refuses a key before any section (`deny_unknown_fields`): its error, not ours.
        let section = section?;
        let repeated = seen.contains(&(section, key)) || seen.len() == MAX_ENTRIES;
        if !bare(key) || !ends(after) || repeated {
            return None;
        }
        seen.push((section, key));
        set(&mut out, section, key, value)?;
    }
    Some(out)
}

/// Spaces and tabs off both ends: TOML's whitespace, not Unicode's.
fn trim(s: &str) -> &str {
    s.trim_matches([' ', '\t'])
}

/// A bare key: ASCII letters, digits, `_` and `-`.
fn bare(key: &str) -> bool {
    !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Whether what follows a value or a header is nothing, or a comment.
fn ends(after: &str) -> bool {
    let after = trim(after);
    after.is_empty() || after.starts_with('#')
}

/// The value at the start of `s`, and what follows it.
fn scalar(s: &str) -> Option<(Scalar<'_>, &str)> {
    if s.starts_with("\"\"\"") || s.starts_with("'''") {
        return None;
    }
    if let Some(body) = s.strip_prefix('"') {
        let (content, after) = body.split_once('"')?;
        return (!content.contains('\\')).then_some((Scalar::Str(content), after));
    }
    if let Some(body) = s.strip_prefix('\'') {
        let (content, after) = body.split_once('\'')?;
        return Some((Scalar::Str(content), after));
    }
    let word_end = s.find([' ', '\t', '#']).unwrap_or(s.len());
    let (word, after) = s.split_at(word_end);
    if word == "true" || word == "false" {
        return Some((Scalar::Bool, after));
    }
    let decimal = word.bytes().all(|b| b.is_ascii_digit()) && !word.is_empty();
    if !decimal || (word.len() > 1 && word.starts_with('0')) {
        return None;
    }
    Some((Scalar::Int(word.parse().ok()?), after))
}

/// Sets `section.key` to `value`; `None` where the key is unknown or the value is not one of
/// its values.
fn set(out: &mut RuntimeSections, section: &str, key: &str, value: Scalar<'_>) -> Option<()> {
    if TOOL_SECTIONS.contains(&section) {
        return Some(());
    }
    let s = match value {
        Scalar::Str(s) => Some(s),
        _ => None,
    };
    let path = || s.map(PathBuf::from);
    let int = match value {
        Scalar::Int(n) => Some(n),
        _ => None,
    };
    let isolation = &mut out.isolation;
    match (section, key) {
        ("runtime", "path") => out.runtime.path = Some(path()?),
        ("devices", "root") => out.devices.root = path()?,
        ("devices", "injection") => out.devices.injection = named(s?)?,
        ("sharing", "default") => out.sharing.default = named(s?)?,
        ("sharing", "placement") => out.sharing.placement = named(s?)?,
        ("sharing", "max_per_gpu") => out.sharing.max_per_gpu = Some(int?.try_into().ok()?),
        ("sharing", "container_requests") => out.sharing.container_requests = named(s?)?,
        ("sharing", "reserved") => out.sharing.reserved = named(s?)?,
        ("hook", "path") => out.hook.path = path()?,
        ("log", "path") => out.log.path = path()?,
        ("log", "level") => out.log.level = named(s?)?,
        ("state", "dir") => out.state.dir = path()?,
        ("isolation", "mode") => isolation.mode = named(s?)?,
        ("isolation", "control") => isolation.control = path()?,
        ("isolation", "dir") => isolation.dir = path()?,
        ("isolation", "memory") => isolation.memory = Some(size(value)?),
        ("isolation", "max_memory") => isolation.max_memory = Some(size(value)?),
        ("isolation", "reserved_memory") => isolation.reserved_memory = size(value)?,
        ("isolation", "compute_percent") => isolation.compute_percent = Some(int?.try_into().ok()?),
        ("isolation", "max_compute_percent") => {
            isolation.max_compute_percent = Some(int?.try_into().ok()?)
        }
        ("isolation", "answer_timeout_ms") => isolation.answer_timeout_ms = int?.try_into().ok()?,
        _ => return None,
    }
    Some(())
}

/// A size as `ByteSize` reads it: bytes, or a string such as `"4GiB"`.
fn size(value: Scalar<'_>) -> Option<ByteSize> {
    match value {
        Scalar::Int(n) => Some(ByteSize(n.try_into().ok()?)),
        Scalar::Str(s) => ByteSize::parse(s).ok(),
        Scalar::Bool => None,
    }
}

/// One of an enum's names, read by the enum's own `Deserialize` (its `rename_all`): the names
/// are written once, where the enum is.
fn named<'de, T: Deserialize<'de>>(s: &'de str) -> Option<T> {
    T::deserialize(StrDeserializer::<NotAName>::new(s)).ok()
}

#[cfg(test)]
mod tests;
