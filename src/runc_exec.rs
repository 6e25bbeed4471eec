//! Finding the real runc and becoming it.
//!
//! Pass-through commands reach this module before anything else happens, so it reads no file
//! (it only `stat`s): the runc binary comes from `GPU_SHARE_RUNC`, else from the first `runc` on
//! `PATH` that is not this very program (an operator may install the shim under the name `runc`).
//!
//! A runc that is the shim itself is refused wherever it comes from: exec'ing it would come back
//! here and exec it again, forever. The shim is known by device and inode ([`NotRunc`]), so a
//! symlink or hard link to it is caught without reading either file.
//!
//! The shim *becomes* runc with `execve`: same pid, fds, working directory, environment and
//! stdio. That is what keeps `LISTEN_PID`, `--preserve-fds`, the console socket, exit status and
//! signals exactly runc's own.

use std::ffi::{CString, OsStr, OsString};
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The environment variable that names the runc binary for every command.
pub const RUNC_ENV: &str = "GPU_SHARE_RUNC";

/// The runtime's file name, as `make install` and `gpu-share configure docker` place it.
pub const RUNTIME_NAME: &str = "gpu-share-runtime";

/// Where the runtime is installed when it is not beside `gpu-share`.
pub const RUNTIME_INSTALLED: &str = "/usr/local/bin/gpu-share-runtime";

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("no runc found: {RUNC_ENV} is unset and no runc other than this shim is on PATH")]
    NotFound,
    #[error("{RUNC_ENV}={0} is not an executable file")]
    BadEnv(String),
    #[error(
        "{RUNC_ENV}={0} is the gpu-share runtime itself, not runc: it would exec itself forever; \
         point {RUNC_ENV} at the real runc"
    )]
    EnvIsShim(String),
    #[error("cannot exec runc {path}: {source}")]
    Exec { path: String, source: nix::Error },
    #[error("an argument holds a NUL byte")]
    Nul,
    #[error("runtime.path = {configured}: not an executable file")]
    RuntimeMissing { configured: String },
    #[error(
        "runtime.path = {configured} is the gpu-share runtime itself, not runc: it would exec \
         itself forever; point it at the real runc"
    )]
    RuntimeIsShim { configured: String },
    #[error(
        "runtime.path = {configured} is not the runc other commands use ({passthrough}); \
         set {RUNC_ENV}={configured} in dockerd's environment so every command reaches the same runc"
    )]
    RuntimeMismatch {
        configured: String,
        passthrough: String,
    },
}

/// The files that are the shim, never runc, by device and inode.
#[derive(Debug, Clone, Default)]
pub struct NotRunc {
    shims: Vec<(u64, u64)>,
}

impl NotRunc {
    /// This very program: what the runtime passes over and refuses, at the cost of one `stat`.
    pub fn this_program() -> NotRunc {
        let mut not_runc = NotRunc::default();
        not_runc.add(Path::new("/proc/self/exe"));
        not_runc
    }

    /// What `gpu-share doctor` must count as the shim. It is not the runtime, so its own
    /// `/proc/self/exe` says nothing; it names the runtime the way `gpu-share configure docker`
    /// does when it registers it with dockerd: `gpu-share-runtime` beside this program, else
    /// [`RUNTIME_INSTALLED`]; and, for a `gpu-share` run from elsewhere, the first
    /// `gpu-share-runtime` on `PATH`. All by `stat`; a copy of the runtime under another inode
    /// is not recognised here, but the copy itself refuses to run itself, so it cannot loop.
    pub fn installed_runtime() -> NotRunc {
        let mut not_runc = NotRunc::default();
        if let Ok(me) = std::env::current_exe() {
            not_runc.add(&me.with_file_name(RUNTIME_NAME));
        }
        not_runc.add(Path::new(RUNTIME_INSTALLED));
        if let Some(on_path) = search_path(RUNTIME_NAME, &NotRunc::default()) {
            not_runc.add(&on_path);
        }
        not_runc
    }

    fn add(&mut self, path: &Path) {
        if let Ok(meta) = std::fs::metadata(path) {
            self.shims.push((meta.dev(), meta.ino()));
        }
    }

    fn holds(&self, meta: &Metadata) -> bool {
        self.shims.contains(&(meta.dev(), meta.ino()))
    }
}

/// The runc that every command goes to, found without reading any file.
pub fn default_runc() -> Result<PathBuf, ExecError> {
    find_runc(&NotRunc::this_program())
}

/// [`default_runc`], passing over and refusing the binaries in `not_runc`.
pub fn find_runc(not_runc: &NotRunc) -> Result<PathBuf, ExecError> {
    if let Some(value) = std::env::var_os(RUNC_ENV).filter(|v| !v.is_empty()) {
        let shown = || value.to_string_lossy().into_owned();
        let path = PathBuf::from(&value);
        return match std::fs::metadata(&path) {
            Ok(meta) if not_runc.holds(&meta) => Err(ExecError::EnvIsShim(shown())),
            Ok(meta) if executable(&meta) => Ok(path),
            _ => Err(ExecError::BadEnv(shown())),
        };
    }
    search_path("runc", not_runc).ok_or(ExecError::NotFound)
}

/// The first executable file called `name` in a directory of `PATH` that is not in `skip`.
fn search_path(name: &str, skip: &NotRunc) -> Option<PathBuf> {
    let path =
        std::env::var_os("PATH").unwrap_or_else(|| OsString::from("/usr/sbin:/usr/bin:/sbin:/bin"));
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            std::fs::metadata(candidate).is_ok_and(|meta| executable(&meta) && !skip.holds(&meta))
        })
}

/// The runc for create, and what `gpu-share doctor` reports: the one pass-through commands
/// reach, which `runtime.path` (when set) must agree with, so that start/kill/delete never go to
/// a different runc than create did.
pub fn resolve(configured: Option<&Path>) -> Result<PathBuf, ExecError> {
    resolve_with(configured, &NotRunc::this_program())
}

/// [`resolve`], with what counts as the shim given: the runtime passes [`NotRunc::this_program`],
/// `gpu-share doctor` [`NotRunc::installed_runtime`].
pub fn resolve_with(configured: Option<&Path>, not_runc: &NotRunc) -> Result<PathBuf, ExecError> {
    let Some(configured) = configured else {
        return find_runc(not_runc);
    };
    let shown = configured.display().to_string();
    match std::fs::metadata(configured) {
        Ok(meta) if not_runc.holds(&meta) => {
            return Err(ExecError::RuntimeIsShim { configured: shown })
        }
        Ok(meta) if executable(&meta) => {}
        _ => return Err(ExecError::RuntimeMissing { configured: shown }),
    }
    let passthrough = find_runc(not_runc)?;
    if !same_file(configured, &passthrough) {
        return Err(ExecError::RuntimeMismatch {
            configured: shown,
            passthrough: passthrough.display().to_string(),
        });
    }
    Ok(configured.to_path_buf())
}

fn executable(meta: &Metadata) -> bool {
    meta.is_file() && meta.mode() & 0o111 != 0
}

/// Whether `path` is a regular file with an execute bit.
pub fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| executable(&m))
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
