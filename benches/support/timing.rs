//! What every bench times with: the runtime measured, iteration counts from the environment,
//! one timed command, medians, and the exec floor (a static C program that only execs), so that
//! every bench compares against the same floor measured the same way.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The runtime measured: `make bench` passes the static release build it ships.
pub fn shim_path() -> PathBuf {
    std::env::var_os("GPU_SHARE_BENCH_RUNTIME")
        .map(PathBuf::from)
        .unwrap_or_else(super::common::shim_bin)
}

/// `var` from the environment, else `default`.
pub fn count(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// How long `cmd` takes, start to exit, with no stdio (a pipe would cost both sides alike, but
/// nothing). Panics if it fails: a failed run is not a measurement.
pub fn timed(cmd: &mut Command) -> Duration {
    let start = Instant::now();
    let status = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("spawn");
    let took = start.elapsed();
    assert!(status.success(), "{cmd:?} failed");
    took
}

pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `cmd` with the environment changes `like` carries. std builds a fresh `envp` inside `spawn`
/// (so inside the timer) whenever a command sets or removes a variable: 20-40 µs here with
/// cargo's environment. Rows compared with each other must pay it alike.
pub fn same_env(mut cmd: Command, like: &Command) -> Command {
    for (key, value) in like.get_envs() {
        match value {
            Some(v) => cmd.env(key, v),
            None => cmd.env_remove(key),
        };
    }
    cmd
}

/// A static C program that does nothing but exec /bin/true: the least any exec-ing wrapper can
/// add on this machine. `None` where no C compiler with a static libc is at hand.
///
/// Built under cargo's target directory, the filesystem the runtime measured is built on: the
/// same binary execs faster from tmpfs (4 KiB pages) or from ext4 (large folios) depending on
/// its size, so a floor on another filesystem than the runtime is not the same conditions.
pub fn exec_floor() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("exec-floor");
    std::fs::create_dir_all(&dir).ok()?;
    let src = dir.join("floor.c");
    let bin = dir.join("floor");
    std::fs::write(
        &src,
        "#include <unistd.h>\nint main(int c, char **v) { (void)c; execv(\"/bin/true\", v); return 127; }\n",
    )
    .ok()?;
    let ok = Command::new("cc")
        .args(["-O2", "-static", "-o"])
        .arg(&bin)
        .arg(&src)
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(bin)
}

/// `n` fresh copies of `bin`, each read back from disk at its first exec (its page cache
/// dropped, as after a boot), under cargo's target directory like the floor.
///
/// Where one copy's pages land decides part of its time: the same runtime ran a legacy create
/// up to 0.02 ms faster or slower from one copy to the next here, in the same loop. Rows that
/// are judged against the floor run their copies in turn, and so does the floor.
pub fn fresh_copies(bin: &Path, n: usize) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("copies");
    std::fs::create_dir_all(&dir).expect("copies directory");
    let name = bin.file_name().expect("a binary's file name");
    (0..n.max(1))
        .map(|i| {
            let copy = dir.join(format!("{}.{i}", name.to_string_lossy()));
            let _ = std::fs::remove_file(&copy);
            std::fs::copy(bin, &copy).expect("copy the binary measured");
            let file = std::fs::File::open(&copy).expect("open the copy");
            file.sync_all().expect("sync the copy");
            // SAFETY: a plain advice call on an open descriptor.
            unsafe {
                libc::posix_fadvise(
                    std::os::fd::AsRawFd::as_raw_fd(&file),
                    0,
                    0,
                    libc::POSIX_FADV_DONTNEED,
                )
            };
            copy
        })
        .collect()
}
