//! Running the shim, `gpu-share-runtime`, as runc's callers do: [`Shim`] builds one invocation;
//! [`ShimHost`] is a fake GPU host with the shim's config over it; [`FakeRunc`] stands in for
//! runc and records how it was called.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};

use super::{shim_bin, write_shim_config, FakeGpuHost};

/// A temp dir holding the shim's config (`gpu-share.toml`), its log and its placement state
/// (`state/`), over a devices root: a fake GPU host it owns, or a root it was given.
pub struct ShimHost {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub log: PathBuf,
    /// Kept alive for the device nodes the config points at.
    _host: Option<FakeGpuHost>,
}

impl ShimHost {
    /// A fake host with `gpus` GPUs; `extra` is appended to the shim's TOML.
    pub fn new(gpus: u32, extra: &str) -> ShimHost {
        ShimHost::on(FakeGpuHost::new(gpus), extra)
    }

    /// The shim configured for `host`, which it keeps.
    pub fn on(host: FakeGpuHost, extra: &str) -> ShimHost {
        let mut h = ShimHost::on_root(host.root(), extra);
        h._host = Some(host);
        h
    }

    /// The shim configured for the devices root `root`, as it is.
    pub fn on_root(root: &Path, extra: &str) -> ShimHost {
        let dir = tempfile::tempdir().unwrap();
        let (config, log) = write_shim_config(dir.path(), root, extra);
        ShimHost {
            dir,
            config,
            log,
            _host: None,
        }
    }

    /// `name` inside the temp dir.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The shim reading this config.
    pub fn shim(&self) -> Shim {
        Shim::new(&self.config)
    }
}

/// One run of the shim. Runc's global flags (`root`, `log`) go before the arguments, whatever
/// the order of the calls. The environment is the test's own, less the variables the shim reads
/// (`GPU_SHARE_CONFIG`, `GPU_SHARE_RUNC`, `GPU_SHARE_TEST_HOLD_*`) unless set here; runc is
/// the one on `PATH` unless [`Shim::runc`] names one. Stdin is empty unless [`Shim::stdin`] says
/// otherwise.
///
/// stdout and stderr are collected in files, not pipes: after `create`, runc's init process
/// keeps the container's stdio open, and a pipe would never reach EOF.
pub struct Shim {
    binary: PathBuf,
    global: Vec<OsString>,
    args: Vec<OsString>,
    env: Vec<(OsString, Option<OsString>)>,
    current_dir: Option<PathBuf>,
    stdin: Option<Stdio>,
}

impl Shim {
    /// The shim reading `config` (`GPU_SHARE_CONFIG`).
    pub fn new(config: impl AsRef<OsStr>) -> Shim {
        Shim::without_config().env("GPU_SHARE_CONFIG", config)
    }

    /// The shim with `GPU_SHARE_CONFIG` unset.
    pub fn without_config() -> Shim {
        Shim {
            binary: shim_bin(),
            global: Vec::new(),
            args: Vec::new(),
            env: Vec::new(),
            current_dir: None,
            stdin: None,
        }
        .env_remove("GPU_SHARE_CONFIG")
        .env_remove("GPU_SHARE_RUNC")
        .env_remove("GPU_SHARE_TEST_HOLD_LOCK_MS")
        .env_remove("GPU_SHARE_TEST_HOLD_TEMP")
    }

    /// Runs the runtime at `path` instead of the one cargo built (the bench measures a release
    /// build).
    pub fn binary(mut self, path: impl Into<PathBuf>) -> Shim {
        self.binary = path.into();
        self
    }

    /// Runs the runtime as dockerd runs its `nvidia` runtime: through a link named `nvidia`
    /// (made in `dir`), the trusted channel of ECS reservations.
    pub fn via_nvidia(self, dir: &Path) -> Shim {
        let link = dir.join(gpu_share::request::NVIDIA_RUNTIME);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(self.binary.clone(), &link).unwrap();
        }
        self.binary(link)
    }

    /// The runc it execs (`GPU_SHARE_RUNC`): a [`FakeRunc`], or `/bin/true`.
    pub fn runc(self, path: impl AsRef<OsStr>) -> Shim {
        self.env("GPU_SHARE_RUNC", path)
    }

    /// runc's global `--root DIR`.
    pub fn root(mut self, dir: impl AsRef<OsStr>) -> Shim {
        self.global.push("--root".into());
        self.global.push(dir.as_ref().to_owned());
        self
    }

    /// runc's global `--log PATH --log-format FORMAT`.
    pub fn log(mut self, path: impl AsRef<OsStr>, format: &str) -> Shim {
        self.global.push("--log".into());
        self.global.push(path.as_ref().to_owned());
        self.global.push("--log-format".into());
        self.global.push(format.into());
        self
    }

    /// `create --bundle BUNDLE ID`.
    pub fn create(self, bundle: &Path, id: &str) -> Shim {
        self.args(["create", "--bundle"]).arg(bundle).arg(id)
    }

    /// `run --bundle BUNDLE ID`.
    pub fn run(self, bundle: &Path, id: &str) -> Shim {
        self.args(["run", "--bundle"]).arg(bundle).arg(id)
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Shim {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Shim
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Shim {
        self.env
            .push((key.as_ref().to_owned(), Some(value.as_ref().to_owned())));
        self
    }

    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Shim {
        self.env.push((key.as_ref().to_owned(), None));
        self
    }

    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Shim {
        self.current_dir = Some(dir.into());
        self
    }

    pub fn stdin(mut self, stdin: Stdio) -> Shim {
        self.stdin = Some(stdin);
        self
    }

    /// The command, stdout and stderr left to the caller.
    pub fn into_command(self) -> Command {
        let mut c = Command::new(&self.binary);
        c.args(&self.global).args(&self.args);
        for (key, value) in &self.env {
            match value {
                Some(v) => c.env(key, v),
                None => c.env_remove(key),
            };
        }
        if let Some(dir) = &self.current_dir {
            c.current_dir(dir);
        }
        c.stdin(self.stdin.unwrap_or_else(Stdio::null));
        c
    }

    /// Runs it to the end.
    pub fn output(self) -> Output {
        self.spawn().wait()
    }

    pub fn status(self) -> ExitStatus {
        self.output().status
    }

    /// Starts it; [`Running::wait`] collects what it wrote.
    pub fn spawn(self) -> Running {
        let stdout = tempfile::tempfile().unwrap();
        let stderr = tempfile::tempfile().unwrap();
        let child = self
            .into_command()
            .stdout(stdout.try_clone().unwrap())
            .stderr(stderr.try_clone().unwrap())
            .spawn()
            .expect("start gpu-share-runtime");
        Running {
            child,
            stdout,
            stderr,
        }
    }
}

/// A shim started by [`Shim::spawn`].
pub struct Running {
    pub child: Child,
    stdout: File,
    stderr: File,
}

impl Running {
    pub fn wait(mut self) -> Output {
        let status = self.child.wait().unwrap();
        Output {
            status,
            stdout: read_all(self.stdout),
            stderr: read_all(self.stderr),
        }
    }
}

fn read_all(mut f: File) -> Vec<u8> {
    use std::io::{Read, Seek};
    let mut v = Vec::new();
    f.rewind().unwrap();
    f.read_to_end(&mut v).unwrap();
    v
}

/// A stand-in for runc that records how it was called: its argv (NUL-separated), pid, working
/// directory and (with `FAKE_RUNC_STDIN` set) stdin; prints `runc-stdout` / `runc-stderr` and
/// exits with `FAKE_RUNC_EXIT`.
pub struct FakeRunc {
    pub dir: tempfile::TempDir,
}

impl FakeRunc {
    pub fn new() -> FakeRunc {
        let dir = tempfile::Builder::new()
            .prefix("gpu-share-fake-runc.")
            .tempdir()
            .unwrap();
        let script = dir.path().join("runc");
        let d = dir.path().display();
        // Written to a temp name and renamed: a file still open for writing cannot be executed.
        let tmp = dir.path().join("runc.tmp");
        std::fs::write(
            &tmp,
            format!(
                "#!/bin/sh\n\
                 echo $$ > '{d}/pid'\n\
                 pwd > '{d}/cwd'\n\
                 for a in \"$@\"; do printf '%s\\0' \"$a\"; done > '{d}/argv'\n\
                 if [ -n \"$FAKE_RUNC_STDIN\" ]; then cat > '{d}/stdin'; fi\n\
                 printf runc-stdout\n\
                 printf runc-stderr >&2\n\
                 exit ${{FAKE_RUNC_EXIT:-0}}\n"
            ),
        )
        .unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::rename(&tmp, &script).unwrap();
        FakeRunc { dir }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("runc")
    }

    /// The argv it was called with (without argv[0]), or `None` if it never ran.
    pub fn argv(&self) -> Option<Vec<Vec<u8>>> {
        let raw = std::fs::read(self.dir.path().join("argv")).ok()?;
        Some(
            raw.split(|&b| b == 0)
                .map(<[u8]>::to_vec)
                .collect::<Vec<_>>()
                .split_last()
                .map(|(_, rest)| rest.to_vec())
                .unwrap_or_default(),
        )
    }

    pub fn recorded(&self, what: &str) -> Option<String> {
        std::fs::read_to_string(self.dir.path().join(what)).ok()
    }
}
