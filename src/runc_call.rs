//! runc's command line, read without being changed.
//!
//! The shim is called exactly as runc is. This module only *looks* at the arguments: which
//! command it is, where the bundle and runc's log are, which container. It never reorders,
//! rewrites or rejects anything: runc gets the identical argv, so a flag this module has never
//! heard of (one runc adds next year) passes through untouched.
//!
//! runc parses flags the Go way: `-x` and `--x` are the same flag, a value follows either as
//! `--x=value` or as the next argument, and `--` ends the flags.
//!
//! A help flag makes runc print and exit without reading the spec, so a `create`/`run` carrying
//! one is a pass-through. runc's CLI (urfave/cli v1) moves a command's flags ahead of its
//! positional arguments before Go's flag package reads them, so `create id -h` asks for help as
//! much as `create -h id`; only `--` ends them, and `-h` taken as a value (`--pid-file -h`) is
//! a value. Before the command, `-h`/`--help` and `-v`/`--version` print the same way.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// What the shim does with a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `create` or `run`: edit the bundle's `config.json`, then exec runc.
    EditBundle,
    /// Anything else: exec runc at once.
    PassThrough,
}

/// The log format runc was asked to write its `--log` file in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// What the shim needs to know of one runc invocation. Borrowed from argv.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuncCall<'a> {
    /// The runc command (`create`, `start`, ...), if one was found.
    pub command: Option<&'a OsStr>,
    /// `--bundle`/`-b` of `create`/`run`; runc's default is the working directory.
    pub bundle: Option<&'a OsStr>,
    /// Global `--root`.
    pub root: Option<&'a OsStr>,
    /// Global `--log`.
    pub log: Option<&'a OsStr>,
    /// Global `--log-format`.
    pub log_format: LogFormat,
    /// The container id: the last positional argument after the command.
    pub container_id: Option<&'a OsStr>,
    /// A help flag (or, before the command, a version flag) that runc answers by printing and
    /// exiting, reading no spec.
    pub prints_and_exits: bool,
}

/// runc's commands. A positional argument that is not one of these (say, the value of a global
/// flag added in a later runc) is not taken for the command.
const COMMANDS: &[&str] = &[
    "checkpoint",
    "create",
    "delete",
    "events",
    "exec",
    "features",
    "help",
    "h",
    "init",
    "kill",
    "list",
    "pause",
    "ps",
    "restore",
    "resume",
    "run",
    "spec",
    "start",
    "state",
    "update",
];

/// Global flags that take a value.
const GLOBAL_VALUE_FLAGS: &[&str] = &["root", "log", "log-format", "criu", "rootless"];

/// Global flags that make runc print and exit.
const GLOBAL_PRINT_FLAGS: &[&str] = &["h", "help", "v", "version"];

/// urfave/cli's help flag, which every command has.
const HELP_FLAGS: &[&str] = &["h", "help"];

/// Flags of `create`/`run` that take a value.
const CREATE_VALUE_FLAGS: &[&str] = &[
    "bundle",
    "b",
    "console-socket",
    "pid-file",
    "preserve-fds",
    "pidfd-socket",
];

/// One argument, seen as a Go-style flag or as a positional argument.
enum Token<'a> {
    /// `--name` or `--name=value`.
    Flag {
        name: &'a [u8],
        inline_value: Option<&'a [u8]>,
    },
    /// `--`: everything after it is positional.
    EndOfFlags,
    Positional(&'a OsStr),
}

fn token(arg: &OsStr) -> Token<'_> {
    let bytes = arg.as_bytes();
    if bytes == b"--" {
        return Token::EndOfFlags;
    }
    // A lone "-" is a positional argument to Go's flag package.
    if bytes.len() < 2 || bytes[0] != b'-' {
        return Token::Positional(arg);
    }
    let body = bytes.strip_prefix(b"--").unwrap_or(&bytes[1..]);
    match body.iter().position(|&b| b == b'=') {
        Some(eq) => Token::Flag {
            name: &body[..eq],
            inline_value: Some(&body[eq + 1..]),
        },
        None => Token::Flag {
            name: body,
            inline_value: None,
        },
    }
}

fn is_one_of(name: &[u8], names: &[&str]) -> bool {
    names.iter().any(|n| n.as_bytes() == name)
}

/// Whether a boolean flag given as `name` or `name=value` is set, as Go's `strconv.ParseBool`
/// reads it. A value Go cannot read counts as set: runc then fails on usage, reading no spec.
fn bool_flag_set(inline_value: Option<&[u8]>) -> bool {
    !matches!(
        inline_value,
        Some(b"0" | b"f" | b"F" | b"false" | b"FALSE" | b"False")
    )
}

fn os(bytes: &[u8]) -> &OsStr {
    OsStr::from_bytes(bytes)
}

/// A flag's value: `--name=value`, or the next argument (consumed) when `name` takes one.
fn flag_value<'a, S: AsRef<OsStr>>(
    name: &[u8],
    inline_value: Option<&'a [u8]>,
    value_flags: &[&str],
    args: &'a [S],
    next: &mut usize,
) -> Option<&'a OsStr> {
    match inline_value {
        Some(v) => Some(os(v)),
        None if is_one_of(name, value_flags) => {
            let v = args.get(*next).map(|a| a.as_ref());
            *next += 1;
            v
        }
        None => None,
    }
}

impl<'a> RuncCall<'a> {
    /// Reads runc's argv, without the program name.
    pub fn parse<S: AsRef<OsStr>>(args: &'a [S]) -> RuncCall<'a> {
        let mut call = RuncCall {
            command: None,
            bundle: None,
            root: None,
            log: None,
            log_format: LogFormat::Text,
            container_id: None,
            prints_and_exits: false,
        };
        let mut i = 0;
        let mut flags_ended = false;
        // Global flags, up to the command.
        while i < args.len() {
            let arg = args[i].as_ref();
            i += 1;
            match token(arg) {
                Token::Flag { .. } if flags_ended => {}
                Token::Flag { name, inline_value } => {
                    let value = flag_value(name, inline_value, GLOBAL_VALUE_FLAGS, args, &mut i);
                    match name {
                        b"root" => call.root = value,
                        b"log" => call.log = value,
                        b"log-format" => {
                            call.log_format = match value.map(OsStr::as_bytes) {
                                Some(b"json") => LogFormat::Json,
                                _ => LogFormat::Text,
                            }
                        }
                        _ if is_one_of(name, GLOBAL_PRINT_FLAGS) => {
                            call.prints_and_exits |= bool_flag_set(inline_value);
                        }
                        _ => {}
                    }
                }
                Token::EndOfFlags => flags_ended = true,
                Token::Positional(p) => {
                    if is_one_of(p.as_bytes(), COMMANDS) {
                        call.command = Some(p);
                        break;
                    }
                }
            }
        }
        if call.edits_bundle_unless_help() {
            call.parse_create_args(&args[i..]);
        }
        call
    }

    fn edits_bundle_unless_help(&self) -> bool {
        matches!(self.command.map(OsStr::as_bytes), Some(b"create" | b"run"))
    }

    fn parse_create_args<S: AsRef<OsStr>>(&mut self, args: &'a [S]) {
        let mut i = 0;
        let mut flags_ended = false;
        while i < args.len() {
            let arg = args[i].as_ref();
            i += 1;
            match token(arg) {
                Token::Flag { name, inline_value } if !flags_ended => {
                    let value = flag_value(name, inline_value, CREATE_VALUE_FLAGS, args, &mut i);
                    if name == b"bundle" || name == b"b" {
                        self.bundle = value;
                    } else if is_one_of(name, HELP_FLAGS) {
                        self.prints_and_exits |= bool_flag_set(inline_value);
                    }
                }
                Token::EndOfFlags if !flags_ended => flags_ended = true,
                _ => self.container_id = Some(arg),
            }
        }
    }

    /// Whether this call edits the bundle or goes straight to runc.
    pub fn action(&self) -> Action {
        if self.edits_bundle_unless_help() && !self.prints_and_exits {
            Action::EditBundle
        } else {
            Action::PassThrough
        }
    }

    /// The bundle directory: `--bundle`, else the working directory (as runc does).
    pub fn bundle_dir(&self) -> PathBuf {
        match self.bundle {
            Some(b) if !b.is_empty() => PathBuf::from(b),
            _ => PathBuf::from("."),
        }
    }

    /// The container id as text, for logs.
    pub fn container_label(&self) -> String {
        self.container_id
            .map(|id| id.to_string_lossy().into_owned())
            .unwrap_or_else(|| "-".to_owned())
    }

    /// runc's `--log` file, if one was given.
    pub fn log_path(&self) -> Option<&Path> {
        self.log.filter(|l| !l.is_empty()).map(Path::new)
    }
}

#[cfg(test)]
mod tests;
