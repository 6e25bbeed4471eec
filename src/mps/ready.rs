//! Making sure a container's daemon is there before its spec points at it: the create path's
//! one question to `mps` ("is this daemon up, with its limits?"), cheap on every create.
//!
//! A container must never start without its caps: an MPS client that finds no control socket
//! runs without MPS, uncapped. So the create path fails closed on any doubt. Per create:
//! - a non-blocking `connect()` to the control socket (tens of microseconds): a missing socket
//!   means the daemon was never started (or was stopped), and it is started now, limits and
//!   all (first use: a class nobody started at boot, or a non-root user's daemon); a socket
//!   nobody listens on, whose daemon's pid is dead, is replaced the same way (`Daemon::start`);
//! - a real round trip through the front-end (`get_server_list`, ~3 ms) only when the daemon has
//!   not answered one for `FRESH`: it catches a daemon that accepts but never answers, which a
//!   connect cannot tell from a healthy one. A daemon that hangs inside that window costs its
//!   clients a hang, never their caps: they reach the socket, so they never run without MPS.
//!
//! The record of the last answer lives in the daemon's log directory, which no container sees.
//! This module never edits a spec and never chooses a daemon.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::config::IsolationSection;

use super::control::ControlError;
use super::daemon::{process_exists, Daemon, DaemonError, Started};

/// How long one answer vouches for a daemon that still accepts connections.
pub const FRESH: Duration = Duration::from_secs(10);
const ANSWERED: &str = "answered";

/// How the daemon was found ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ready {
    /// It was not running; it was started now, with its limits.
    Started,
    /// It answered a command now.
    Answered,
    /// It accepts connections and answered one within `FRESH`.
    Listening,
}

/// What a connect to a control socket found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Socket {
    Missing,
    /// There, but nobody listens (ECONNREFUSED): its daemon died.
    Refused,
    /// Someone listens (connected, or its backlog is full).
    Listening,
}

impl Daemon {
    /// Makes sure this daemon is up and answering for a client of the GPU `visible` names,
    /// starting it if it is not running. Errors name the daemon, its pipe dir and the unit.
    pub fn ready(&self, isolation: &IsolationSection, visible: &str) -> Result<Ready, DaemonError> {
        match probe(&self.socket()) {
            Socket::Listening if self.answered_within(FRESH) => return Ok(Ready::Listening),
            Socket::Listening => {
                self.status(isolation)?;
                self.mark_answered();
                return Ok(Ready::Answered);
            }
            // Alive but not listening: never replaced behind its back (as `start` says).
            Socket::Refused if self.pid().is_some_and(process_exists) => {
                return Err(DaemonError::NoAnswer {
                    name: self.name(),
                    pipe_dir: self.pipe_dir.display().to_string(),
                    log: self.control_log(),
                    source: Box::new(ControlError::Io {
                        program: self.socket().display().to_string(),
                        source: std::io::ErrorKind::ConnectionRefused.into(),
                    }),
                })
            }
            Socket::Missing | Socket::Refused => {}
        }
        match self.start(isolation, visible)? {
            Started::Started => {
                self.mark_answered();
                Ok(Ready::Started)
            }
            Started::AlreadyRunning => {
                self.mark_answered();
                Ok(Ready::Answered)
            }
        }
    }

    fn answered_within(&self, window: Duration) -> bool {
        std::fs::metadata(self.log_dir.join(ANSWERED))
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age < window)
    }

    /// Best effort: a record that cannot be written only costs the next create a round trip.
    fn mark_answered(&self) {
        let _ = std::fs::write(self.log_dir.join(ANSWERED), b"");
    }
}

/// A non-blocking connect to the unix socket at `path`.
fn probe(path: &Path) -> Socket {
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: zeroed sockaddr_un is a valid value; sun_path is filled within its length below.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if bytes.len() >= addr.sun_path.len() {
        // Too long to connect to: say missing, and let start (which binds it) report the path.
        return Socket::Missing;
    }
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (dst, &b) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = b as libc::c_char;
    }
    // SAFETY: plain syscalls on a descriptor this function owns.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Socket::Missing;
    }
    // SAFETY: fd was just returned by socket() and is owned here alone.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    // SAFETY: addr is a valid sockaddr_un of `len` bytes.
    let rc = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            std::ptr::addr_of!(addr).cast::<libc::sockaddr>(),
            len,
        )
    };
    if rc == 0 {
        return Socket::Listening;
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EINPROGRESS) => Socket::Listening,
        Some(libc::ECONNREFUSED) => Socket::Refused,
        _ => Socket::Missing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_tells_missing_refused_and_listening_apart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control");
        assert_eq!(probe(&path), Socket::Missing);
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        assert_eq!(probe(&path), Socket::Listening);
        drop(listener);
        // The socket file stays after its listener is gone, as after a killed daemon.
        assert!(path.exists());
        assert_eq!(probe(&path), Socket::Refused);
    }
}
