//! The shim's own log: one line per decision, for the operator.
//!
//! `2026-11-24T17:48:18.123456Z INFO create id=abc gpus=0 ...`: greppable, one line, appended
//! with a single write so lines from concurrent creates never interleave. A log that cannot be
//! opened never stops a container; the shim says so once on stderr (which runc's caller keeps).
//!
//! One event is always exactly one line: messages carry values the container chose (its
//! `NVIDIA_VISIBLE_DEVICES`, its spec's keys), so every message passes through [`one_line`]
//! here, and the runtime's failure line on stderr and in runc's `--log` does too. This module
//! must never write a message that has not been through it.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::config::{LogLevel, LogSection};
use crate::timestamp::now_rfc3339;

pub struct ShimLog<'a> {
    config: &'a LogSection,
}

fn level_name(level: LogLevel) -> &'static str {
    match level {
        LogLevel::Off => "OFF",
        LogLevel::Error => "ERROR",
        LogLevel::Warn => "WARN",
        LogLevel::Info => "INFO",
        LogLevel::Debug => "DEBUG",
    }
}

impl<'a> ShimLog<'a> {
    pub fn new(config: &'a LogSection) -> Self {
        ShimLog { config }
    }

    pub fn enabled(&self, level: LogLevel) -> bool {
        level != LogLevel::Off && level <= self.config.level
    }

    pub fn write(&self, level: LogLevel, message: &str) {
        if !self.enabled(level) {
            return;
        }
        let line = format!(
            "{} {} {}\n",
            now_rfc3339(),
            level_name(level),
            one_line(message)
        );
        if let Err(e) = append(&self.config.path, &line) {
            // Best effort, and never a panic: stderr may be a closed pipe.
            let _ = writeln!(
                std::io::stderr(),
                "gpu-share-runtime: cannot write log {}: {e}",
                one_line(&self.config.path.display().to_string())
            );
        }
    }
}

/// `text` with everything that could end a line, or rewrite one on a terminal, escaped the way
/// Go quotes strings (`\n`, `\r`, `\t`, `\x1b`, `\u2028`): control characters (C0, DEL, C1)
/// and the Unicode line and paragraph separators. Anything else, backslashes included, is left
/// as it is, so a message without such characters comes back unchanged (and unallocated).
pub fn one_line(text: &str) -> Cow<'_, str> {
    let breaks = |c: char| c.is_control() || c == '\u{2028}' || c == '\u{2029}';
    // Printable ASCII only (every line a create logs): nothing to escape, no char decoding.
    if text.bytes().all(|b| (b' '..b'\x7f').contains(&b)) || !text.contains(breaks) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c < '\u{80}' && breaks(c) => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if breaks(c) => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn append(path: &Path, line: &str) -> std::io::Result<()> {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)?;
    f.write_all(line.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_below_the_level_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let section = LogSection {
            path: dir.path().join("shim.log"),
            level: LogLevel::Warn,
        };
        let log = ShimLog::new(&section);
        log.write(LogLevel::Info, "quiet");
        log.write(LogLevel::Error, "loud");
        let text = std::fs::read_to_string(&section.path).unwrap();
        assert_eq!(text.lines().count(), 1);
        assert!(text.contains(" ERROR loud"), "{text}");
    }

    #[test]
    fn one_line_escapes_what_could_start_another_line() {
        assert!(matches!(one_line("plain \\ text é"), Cow::Borrowed(_)));
        assert_eq!(
            one_line("a\nb\rc\td\x1be\x7ff\u{85}g\u{2028}h\u{2029}"),
            "a\\nb\\rc\\td\\x1be\\x7ff\\u0085g\\u2028h\\u2029"
        );
    }

    #[test]
    fn a_message_is_one_line_whatever_it_holds() {
        let dir = tempfile::tempdir().unwrap();
        let section = LogSection {
            path: dir.path().join("shim.log"),
            level: LogLevel::Info,
        };
        ShimLog::new(&section).write(LogLevel::Error, "x\n2026-01-01T00:00:00Z INFO forged");
        let text = std::fs::read_to_string(&section.path).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(
            text.ends_with(" ERROR x\\n2026-01-01T00:00:00Z INFO forged\n"),
            "{text}"
        );
    }

    #[test]
    fn off_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let section = LogSection {
            path: dir.path().join("shim.log"),
            level: LogLevel::Off,
        };
        ShimLog::new(&section).write(LogLevel::Error, "x");
        assert!(!section.path.exists());
    }
}
