//! Finding the real runc and becoming it.
//!
//! Pass-through commands reach this module before anything else happens, so it reads no file:
//! the runc binary comes from `GPU_SHARE_RUNC`, else from the first `runc` on `PATH` that is not
//! this very program (an operator may install the shim under the name `runc`).
//!
//! The shim *becomes* runc with `execve`: same pid, fds, working directory, environment and
//! stdio. That is what keeps `LISTEN_PID`, `--preserve-fds`, the console socket, exit status and
//! signals exactly runc's own.

use std::ffi::{CString, OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The environment variable that names the runc binary for every command.
pub const RUNC_ENV: &str = "GPU_SHARE_RUNC";

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("no runc found: {RUNC_ENV} is unset and no runc other than this shim is on PATH")]
    NotFound,
    #[error("{RUNC_ENV}={0} is not an executable file")]
    BadEnv(String),
    #[error("cannot exec runc {path}: {source}")]
    Exec { path: String, source: nix::Error },
    #[error("an argument holds a NUL byte")]
    Nul,
    #[error("runtime.path = {configured}: not an executable file")]
    RuntimeMissing { configured: String },
    #[error(
        "runtime.path = {configured} is not the runc other commands use ({passthrough}); \
         set {RUNC_ENV}={configured} in dockerd's environment so every command reaches the same runc"
    )]
    RuntimeMismatch {
        configured: String,
        passthrough: String,
    },
}

/// The runc that every command goes to, found without reading any file.
pub fn default_runc() -> Result<PathBuf, ExecError> {
    if let Some(value) = std::env::var_os(RUNC_ENV).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(&value);
        return if is_executable(&path) {
            Ok(path)
        } else {
            Err(ExecError::BadEnv(value.to_string_lossy().into_owned()))
        };
    }
    let path =
        std::env::var_os("PATH").unwrap_or_else(|| OsString::from("/usr/sbin:/usr/bin:/sbin:/bin"));
    let me = std::fs::metadata("/proc/self/exe").ok();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join("runc");
        let Ok(meta) = std::fs::metadata(&candidate) else {
            continue;
        };
        if !meta.is_file() || meta.mode() & 0o111 == 0 {
            continue;
        }
        if let Some(me) = &me {
            if me.dev() == meta.dev() && me.ino() == meta.ino() {
                continue;
            }
        }
        return Ok(candidate);
    }
    Err(ExecError::NotFound)
}

/// The runc for create, and what `gpu-share doctor` reports: the one pass-through commands
/// reach, which `runtime.path` (when set) must agree with, so that start/kill/delete never go to
/// a different runc than create did.
pub fn resolve(configured: Option<&Path>) -> Result<PathBuf, ExecError> {
    let Some(configured) = configured else {
        return default_runc();
    };
    let shown = configured.display().to_string();
    if !is_executable(configured) {
        return Err(ExecError::RuntimeMissing { configured: shown });
    }
    let passthrough = default_runc()?;
    if !same_file(configured, &passthrough) {
        return Err(ExecError::RuntimeMismatch {
            configured: shown,
            passthrough: passthrough.display().to_string(),
        });
    }
    Ok(configured.to_path_buf())
}

/// Whether `path` is a regular file with an execute bit.
pub fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0)
}

/// Whether two paths name the same file.
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

fn cstring(s: &OsStr) -> Result<CString, ExecError> {
    CString::new(s.as_bytes()).map_err(|_| ExecError::Nul)
}

/// Replaces this process with `runc`, passing `args` (argv without argv[0]) unchanged.
/// Returns only on failure.
pub fn exec_runc<S: AsRef<OsStr>>(runc: &Path, args: &[S]) -> ExecError {
    let prog = match cstring(runc.as_os_str()) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let mut argv = Vec::with_capacity(args.len() + 1);
    argv.push(prog.clone());
    for a in args {
        match cstring(a.as_ref()) {
            Ok(c) => argv.push(c),
            Err(e) => return e,
        }
    }
    // Signal dispositions and the mask are left as the caller set them: the binary starts
    // without Rust's runtime (which would ignore SIGPIPE), so runc inherits them unchanged.
    match nix::unistd::execv(&prog, &argv) {
        Ok(never) => match never {},
        Err(source) => ExecError::Exec {
            path: runc.display().to_string(),
            source,
        },
    }
}
