//! The shim's own log: one line per decision, for the operator.
//!
//! `2026-11-24T17:48:18.123456Z INFO create id=abc gpus=0 ...`: greppable, one line, appended
//! with a single write so lines from concurrent creates never interleave. A log that cannot be
//! opened never stops a container; the shim says so once on stderr (which runc's caller keeps).

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
        let line = format!("{} {} {message}\n", now_rfc3339(), level_name(level));
        if let Err(e) = append(&self.config.path, &line) {
            eprintln!(
                "gpu-share-runtime: cannot write log {}: {e}",
                self.config.path.display()
            );
        }
    }
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
