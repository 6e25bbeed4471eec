//! `make bench`: what the shim adds to container start, against plain runc in the same run.
//!
//! Three comparisons, each interleaved (shim, runc, shim, runc, ...) so drift hits both sides:
//! - `create`: the shim on a pristine docker-like spec (it edits and writes it, then execs runc)
//!   vs runc on the already-edited spec (so runc does the same device work in both);
//! - a pass-through command (`state`) through the shim vs runc directly;
//! - a whole `docker run --rm` with the shim as dockerd's default runtime vs `--runtime runc`;
//! - the shim alone, with runc replaced by `/bin/true` (runc's own variance gone), beside the
//!   floor: a static C program that does nothing but exec, i.e. the cost of one `execve` here.
//!
//! Bundles and runc state live on tmpfs, as they do under dockerd (`/run`). Prints medians, the
//! added milliseconds and the ratios, and the targets next to them.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::dockerd::{Dockerd, IMAGE};
use common::{require, shim_bin, write_shim_config, Bundle, FakeGpuHost, Shim};

/// The runtime measured: `make bench` passes the static release build it ships.
fn shim_path() -> std::path::PathBuf {
    std::env::var_os("GPU_SHARE_BENCH_RUNTIME")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(shim_bin)
}

fn count(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn timed(cmd: &mut Command) -> Duration {
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

fn quiet(cmd: &mut Command) {
    let status = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("spawn");
    assert!(status.success(), "{cmd:?} failed");
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Row {
    what: &'static str,
    runs: usize,
    shim: Duration,
    runc: Duration,
    target: &'static str,
    ok: bool,
}

fn runc_cmd(root: &Path) -> Command {
    let mut c = Command::new("runc");
    c.arg("--root").arg(root);
    c
}

/// The shim measured, reading `config`, with runc's state under `root`.
fn via_shim(root: &Path, config: &Path) -> Shim {
    Shim::new(config).binary(shim_path()).root(root)
}

fn bench_runc(rows: &mut Vec<Row>) {
    let tmp = tempfile::Builder::new()
        .prefix("gpu-share-bench.")
        .tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap();
    let host = FakeGpuHost::new_in(tmp.path(), 1);
    // The shim logs its one line per create, as it does in production.
    let (config, _) = write_shim_config(tmp.path(), host.root(), "");
    let root = tmp.path().join("state");
    let sleeper = Bundle::busybox().args(&["sleep", "1000"]);
    let pristine_dir = sleeper.write(&tmp.path().join("pristine"));
    let pristine = std::fs::read(pristine_dir.join("config.json")).unwrap();
    let shim_bundle = sleeper.write(&tmp.path().join("shim"));
    let runc_bundle_dir = sleeper.write(&tmp.path().join("runc"));

    // runc's bundle gets the spec the shim produces, so both runcs do the same work.
    quiet(
        &mut via_shim(&root, &config)
            .create(&runc_bundle_dir, "prep")
            .into_command(),
    );
    quiet(runc_cmd(&root).args(["delete", "--force", "prep"]));

    let n = count("BENCH_CREATES", 200);
    let (mut shim_t, mut runc_t) = (Vec::new(), Vec::new());
    for i in 0..n {
        std::fs::write(shim_bundle.join("config.json"), &pristine).unwrap();
        let id = format!("s{i}");
        shim_t.push(timed(
            &mut via_shim(&root, &config)
                .create(&shim_bundle, &id)
                .into_command(),
        ));
        quiet(runc_cmd(&root).args(["delete", "--force", &id]));
        let id = format!("r{i}");
        runc_t.push(timed(
            runc_cmd(&root)
                .args(["create", "--bundle"])
                .arg(&runc_bundle_dir)
                .arg(&id),
        ));
        quiet(runc_cmd(&root).args(["delete", "--force", &id]));
    }
    let (shim, runc) = (median(shim_t), median(runc_t));
    rows.push(Row {
        what: "create",
        runs: n,
        shim,
        runc,
        target: "adds <= 0.5 ms",
        ok: ms(shim) - ms(runc) <= 0.5,
    });

    quiet(
        runc_cmd(&root)
            .args(["create", "--bundle"])
            .arg(&runc_bundle_dir)
            .arg("st"),
    );
    let n = count("BENCH_STATES", 500);
    let (mut shim_t, mut runc_t) = (Vec::new(), Vec::new());
    for _ in 0..n {
        shim_t.push(timed(
            &mut via_shim(&root, &config)
                .args(["state", "st"])
                .into_command(),
        ));
        runc_t.push(timed(runc_cmd(&root).args(["state", "st"])));
    }
    quiet(runc_cmd(&root).args(["delete", "--force", "st"]));
    let (shim, runc) = (median(shim_t), median(runc_t));
    rows.push(Row {
        what: "state (pass-through)",
        runs: n,
        shim,
        runc,
        target: "adds <= 0.2 ms",
        ok: ms(shim) - ms(runc) <= 0.2,
    });

    // The same two paths with runc replaced by /bin/true: runc's own variance gone, what is
    // left is exactly the shim's cost (one exec, plus the edit on create).
    let truth = Path::new("/bin/true");
    let n = count("BENCH_STATES", 500);
    let (mut shim_t, mut true_t, mut floor_t) = (Vec::new(), Vec::new(), Vec::new());
    let floor = exec_floor(tmp.path());
    for i in 0..n {
        std::fs::write(shim_bundle.join("config.json"), &pristine).unwrap();
        shim_t.push(timed(
            &mut via_shim(&root, &config)
                .runc(truth)
                .create(&shim_bundle, &format!("t{i}"))
                .into_command(),
        ));
        true_t.push(timed(&mut Command::new(truth)));
        if let Some(floor) = &floor {
            floor_t.push(timed(&mut Command::new(floor)));
        }
    }
    let (shim, direct) = (median(shim_t), median(true_t));
    rows.push(Row {
        what: "create, shim alone (all)",
        runs: n,
        shim,
        runc: direct,
        target: "adds <= 0.5 ms",
        ok: ms(shim) - ms(direct) <= 0.5,
    });
    // Discovery of 4 GPUs (device nodes and the driver's /proc entries) and spread placement
    // under the state file's lock, with a few dozen live containers to reconcile.
    let (spread_config, spread_root) = spread_host(tmp.path());
    let (mut shim_t, mut true_t) = (Vec::new(), Vec::new());
    for i in 0..n {
        std::fs::write(shim_bundle.join("config.json"), &pristine).unwrap();
        shim_t.push(timed(
            &mut via_shim(&spread_root, &spread_config)
                .runc(truth)
                .create(&shim_bundle, &format!("p{}", i % 32))
                .into_command(),
        ));
        true_t.push(timed(&mut Command::new(truth)));
    }
    let (shim, direct) = (median(shim_t), median(true_t));
    rows.push(Row {
        what: "create, shim alone (spread)",
        runs: n,
        shim,
        runc: direct,
        target: "adds <= 0.5 ms",
        ok: ms(shim) - ms(direct) <= 0.5,
    });

    let mut shim_t = Vec::new();
    let mut true_t = Vec::new();
    for _ in 0..n {
        shim_t.push(timed(
            &mut via_shim(&root, &config)
                .runc(truth)
                .args(["state", "x"])
                .into_command(),
        ));
        true_t.push(timed(&mut Command::new(truth)));
    }
    let (shim, direct) = (median(shim_t), median(true_t));
    rows.push(Row {
        what: "pass-through, shim alone",
        runs: n,
        shim,
        runc: direct,
        target: "adds <= 0.2 ms",
        ok: ms(shim) - ms(direct) <= 0.2,
    });
    if !floor_t.is_empty() {
        let f = median(floor_t);
        rows.push(Row {
            what: "exec floor (C, static)",
            runs: n,
            shim: f,
            runc: direct,
            target: "reference: one execve",
            ok: true,
        });
    }
}

/// A fake 4-GPU host with driver /proc entries and `spread` placement, and a runc root in which
/// 32 containers look alive (their state files exist), so every create reconciles 32 entries.
fn spread_host(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let host = FakeGpuHost::new_in(dir, 4);
    let sub = dir.join("spread");
    std::fs::create_dir_all(&sub).unwrap();
    let (config, _) = write_shim_config(&sub, host.root(), "[sharing]\nplacement = \"spread\"\n");
    let runc_root = sub.join("runc");
    for i in 0..32 {
        let d = runc_root.join(format!("p{i}"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("state.json"), b"{}").unwrap();
    }
    // The host lives inside `dir`, which removes it; its own guard must not go first.
    std::mem::forget(host);
    (config, runc_root)
}

/// A static C program that does nothing but exec /bin/true: the least any exec-ing wrapper can
/// add on this machine. `None` where no C compiler with a static libc is at hand.
fn exec_floor(dir: &Path) -> Option<std::path::PathBuf> {
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

fn bench_docker(rows: &mut Vec<Row>) {
    let d = Dockerd::start(&shim_path(), 1, "");
    let run = |runtime: Option<&str>| {
        let mut args = vec!["run", "--rm", "--network", "none"];
        if let Some(r) = runtime {
            args.extend(["--runtime", r]);
        }
        args.extend([IMAGE, "true"]);
        let start = Instant::now();
        let out = d.docker(&args);
        let took = start.elapsed();
        assert!(out.status.success(), "{out:?}");
        took
    };
    // Warm both paths (image layers, shim binary pages) before measuring.
    run(None);
    run(Some("runc"));
    let n = count("BENCH_DOCKER_RUNS", 40);
    let (mut shim_t, mut runc_t) = (Vec::new(), Vec::new());
    for _ in 0..n {
        shim_t.push(run(None));
        runc_t.push(run(Some("runc")));
    }
    d.stop();
    let (shim, runc) = (median(shim_t), median(runc_t));
    rows.push(Row {
        what: "docker run --rm",
        runs: n,
        shim,
        runc,
        target: "ratio <= 1.01",
        ok: shim.as_secs_f64() / runc.as_secs_f64() <= 1.01,
    });
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken.
    if !require("make bench", &["runc", "dockerd", "containerd"]) {
        return;
    }
    println!("runtime measured: {}", shim_path().display());
    let mut rows = Vec::new();
    bench_runc(&mut rows);
    bench_docker(&mut rows);
    println!();
    println!(
        "{:<26} {:>5} {:>9} {:>9} {:>9} {:>7}  target",
        "median of", "runs", "via ms", "direct ms", "added ms", "ratio"
    );
    for r in &rows {
        println!(
            "{:<26} {:>5} {:>9.3} {:>9.3} {:>+9.3} {:>7.3}  {} {}",
            r.what,
            r.runs,
            ms(r.shim),
            ms(r.runc),
            ms(r.shim) - ms(r.runc),
            r.shim.as_secs_f64() / r.runc.as_secs_f64(),
            r.target,
            if r.ok { "(met)" } else { "(MISSED)" }
        );
    }
}
