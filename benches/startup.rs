//! `make bench`: what the shim adds to container start, against plain runc in the same run.
//!
//! Three comparisons, each interleaved (shim, runc, shim, runc, ...) so drift hits both sides:
//! - `create`: the shim on a pristine docker-like spec (it edits and writes it, then execs runc)
//!   vs runc on the already-edited spec (so runc does the same device work in both);
//! - a pass-through command (`state`) through the shim vs runc directly;
//! - a whole `docker run --rm` with the shim as dockerd's default runtime vs `--runtime runc`;
//! - the shim alone, with runc replaced by `/bin/true` (runc's own variance gone), beside the
//!   floor: a static C program that does nothing but exec, i.e. the cost of one `execve` here.
//!   Both run as `BENCH_COPIES` (4) fresh copies in turn, each read back from disk as after a
//!   boot: one copy's placement in memory moved a create by up to 0.02 ms.
//!
//! Bundles and runc state live on tmpfs, as they do under dockerd (`/run`). Prints medians, the
//! added milliseconds and the ratios, and the targets next to them.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/timing.rs"]
mod timing;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::dockerd::{Dockerd, IMAGE};
use common::{require, write_shim_config, Bundle, FakeGpuHost, Shim};
use timing::{count, exec_floor, fresh_copies, median, ms, same_env, shim_path, timed};

struct Row {
    what: &'static str,
    runs: usize,
    shim: Duration,
    runc: Duration,
    target: &'static str,
    /// `None`: no target of its own (the "shim alone" rows are judged against the floor).
    ok: Option<bool>,
}

fn runc_cmd(root: &Path) -> Command {
    let mut c = Command::new("runc");
    c.arg("--root").arg(root);
    c
}

/// The shim measured, reading `config`, with runc's state under `root`.
fn via_shim(root: &Path, config: &Path) -> Shim {
    via(&shim_path(), root, config)
}

/// [`via_shim`] with the runtime at `binary` (one of its copies).
fn via(binary: &Path, root: &Path, config: &Path) -> Shim {
    Shim::new(config).binary(binary).root(root)
}

fn bench_runc(rows: &mut Vec<Row>, floor_rows: &mut Vec<FloorRow>) {
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
    timed(
        &mut via_shim(&root, &config)
            .create(&runc_bundle_dir, "prep")
            .into_command(),
    );
    timed(runc_cmd(&root).args(["delete", "--force", "prep"]));

    let n = count("BENCH_CREATES", 200);
    let (mut shim_t, mut runc_t) = (Vec::new(), Vec::new());
    for i in 0..n {
        std::fs::write(shim_bundle.join("config.json"), &pristine).unwrap();
        let id = format!("s{i}");
        let mut shim = via_shim(&root, &config)
            .create(&shim_bundle, &id)
            .into_command();
        let mut direct = same_env(runc_cmd(&root), &shim);
        shim_t.push(timed(&mut shim));
        timed(runc_cmd(&root).args(["delete", "--force", &id]));
        let id = format!("r{i}");
        runc_t.push(timed(
            direct
                .args(["create", "--bundle"])
                .arg(&runc_bundle_dir)
                .arg(&id),
        ));
        timed(runc_cmd(&root).args(["delete", "--force", &id]));
    }
    let (shim, runc) = (median(shim_t), median(runc_t));
    rows.push(Row {
        what: "create",
        runs: n,
        shim,
        runc,
        target: "adds <= 0.5 ms",
        ok: Some(ms(shim) - ms(runc) <= 0.5),
    });

    timed(
        runc_cmd(&root)
            .args(["create", "--bundle"])
            .arg(&runc_bundle_dir)
            .arg("st"),
    );
    let n = count("BENCH_STATES", 500);
    let (mut shim_t, mut runc_t) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let mut shim = via_shim(&root, &config)
            .args(["state", "st"])
            .into_command();
        let mut direct = same_env(runc_cmd(&root), &shim);
        shim_t.push(timed(&mut shim));
        runc_t.push(timed(direct.args(["state", "st"])));
    }
    timed(runc_cmd(&root).args(["delete", "--force", "st"]));
    let (shim, runc) = (median(shim_t), median(runc_t));
    rows.push(Row {
        what: "state (pass-through)",
        runs: n,
        shim,
        runc,
        target: "adds <= 0.2 ms",
        ok: Some(ms(shim) - ms(runc) <= 0.2),
    });

    bench_alone(
        tmp.path(),
        &root,
        &config,
        &pristine,
        &shim_bundle,
        rows,
        floor_rows,
    );
}

/// One "shim alone" loop: the shim with runc replaced by `/bin/true`, `/bin/true` itself and
/// the exec floor, interleaved, so each row's distance from the floor is measured under the
/// same conditions.
struct Alone {
    shim: Vec<Duration>,
    direct: Vec<Duration>,
    floor: Vec<Duration>,
}

impl Alone {
    /// Round `i` runs the floor copy `i % floors.len()`; `shim(i)` picks its own copy alike.
    fn run(n: usize, floors: &[PathBuf], mut shim: impl FnMut(usize) -> Command) -> Alone {
        let truth = Path::new("/bin/true");
        let mut a = Alone {
            shim: Vec::new(),
            direct: Vec::new(),
            floor: Vec::new(),
        };
        for i in 0..n {
            let mut shim = shim(i);
            let mut direct = same_env(Command::new(truth), &shim);
            let floor = (!floors.is_empty()).then(|| &floors[i % floors.len()]);
            let mut floor = floor.map(|f| same_env(Command::new(f), &shim));
            // The order turns each round: no row always runs first, right after another's exit.
            for k in 0..3 {
                match (i + k) % 3 {
                    0 => a.shim.push(timed(&mut shim)),
                    1 => a.direct.push(timed(&mut direct)),
                    _ => {
                        if let Some(floor) = floor.as_mut() {
                            a.floor.push(timed(floor));
                        }
                    }
                }
            }
        }
        a
    }

    fn row(&self, what: &'static str, target_ms: f64, rows: &mut Vec<Row>) -> Option<FloorRow> {
        let (shim, direct) = (median(self.shim.clone()), median(self.direct.clone()));
        rows.push(Row {
            what,
            runs: self.shim.len(),
            shim,
            runc: direct,
            target: "its cost above the floor: see below",
            ok: None,
        });
        (!self.floor.is_empty()).then(|| FloorRow {
            what,
            above: ms(shim) - ms(median(self.floor.clone())),
            target_ms,
            skipped: None,
        })
    }
}

/// A row's distance from the exec floor measured in its own loop, against its target.
struct FloorRow {
    what: &'static str,
    above: f64,
    target_ms: f64,
    skipped: Option<String>,
}

/// The shim with runc replaced by /bin/true: runc's own variance gone, what is left is exactly
/// the shim's cost (one exec, plus the edit on create), beside the floor.
fn bench_alone(
    dir: &Path,
    root: &Path,
    config: &Path,
    pristine: &[u8],
    bundle: &Path,
    rows: &mut Vec<Row>,
    floor_rows: &mut Vec<FloorRow>,
) {
    let truth = Path::new("/bin/true");
    let n = count("BENCH_ALONE", 1000);
    let copies = count("BENCH_COPIES", 4);
    let floor = exec_floor().map_or_else(Vec::new, |f| fresh_copies(&f, copies));
    let floor = floor.as_slice();
    let shims = fresh_copies(&shim_path(), copies);
    let shim = |i: usize| via(&shims[i % shims.len()], root, config);
    let create = |i: usize, root: &Path, config: &Path, id: String| {
        std::fs::write(bundle.join("config.json"), pristine).unwrap();
        via(&shims[i % shims.len()], root, config)
            .runc(truth)
            .create(bundle, &id)
            .into_command()
    };

    // Today's path on 4 GPUs: device nodes, cgroup rules, env and the legacy hook.
    let legacy = legacy_host(dir);
    let a = Alone::run(n, floor, |i| create(i, root, &legacy, format!("l{i}")));
    floor_rows.extend(a.row("create, shim alone (legacy, 4 GPUs)", 0.15, rows));

    match cdi_host(dir) {
        Ok(cdi) => {
            let a = Alone::run(n, floor, |i| create(i, root, &cdi, format!("c{i}")));
            floor_rows.extend(a.row("create, shim alone (CDI, 4 GPUs)", 0.15, rows));
        }
        Err(why) => floor_rows.push(FloorRow {
            what: "create, shim alone (CDI, 4 GPUs)",
            above: 0.0,
            target_ms: 0.15,
            skipped: Some(why),
        }),
    }

    let a = Alone::run(n, floor, |i| {
        shim(i).runc(truth).args(["state", "x"]).into_command()
    });
    floor_rows.extend(a.row("pass-through, shim alone", 0.05, rows));

    let a = Alone::run(n, floor, |i| create(i, root, config, format!("t{i}")));
    a.row("create, shim alone (all, 1 GPU)", 0.0, rows);
    // Discovery of 4 GPUs (device nodes and the driver's /proc entries) and spread placement
    // under the state file's lock, with a few dozen live containers to reconcile.
    let (spread_config, spread_root) = spread_host(dir);
    let a = Alone::run(n, floor, |i| {
        create(i, &spread_root, &spread_config, format!("p{}", i % 32))
    });
    a.row("create, shim alone (spread)", 0.0, rows);

    if !a.floor.is_empty() {
        rows.push(Row {
            what: "exec floor (C, static)",
            runs: a.floor.len(),
            shim: median(a.floor.clone()),
            runc: median(a.direct.clone()),
            target: "reference: one execve",
            ok: None,
        });
    }
}

/// A fake 4-GPU host with `placement = "all"` and the legacy hook present: every create gets
/// the 4 GPUs' nodes, the control nodes, their cgroup rules, the env and the hook.
fn legacy_host(dir: &Path) -> std::path::PathBuf {
    let host = FakeGpuHost::new_in(dir, 4);
    let sub = dir.join("legacy");
    std::fs::create_dir_all(&sub).unwrap();
    let hook = sub.join("nvidia-container-runtime-hook");
    std::fs::write(&hook, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (config, _) = write_shim_config(
        &sub,
        host.root(),
        &format!("[hook]\npath = {:?}\n", hook.display().to_string()),
    );
    std::mem::forget(host);
    config
}

/// A fake 4-GPU host with an nvidia-ctk-like CDI spec and `[devices] injection = "cdi"`.
/// `Err` (why) where the runtime measured does not know CDI injection yet.
fn cdi_host(dir: &Path) -> Result<std::path::PathBuf, String> {
    let host = FakeGpuHost::new_in(dir, 4);
    let sub = dir.join("cdi");
    std::fs::create_dir_all(&sub).unwrap();
    common::cdi::write_nvidia_spec(&host, "var/run/cdi");
    let config = sub.join("gpu-share.toml");
    std::fs::write(
        &config,
        format!(
            "[devices]\nroot = {:?}\ninjection = \"cdi\"\n[log]\npath = {:?}\nlevel = \"debug\"\n[state]\ndir = {:?}\n",
            host.root().display().to_string(),
            sub.join("gpu-share-runtime.log").display().to_string(),
            sub.join("state").display().to_string()
        ),
    )
    .unwrap();
    std::mem::forget(host);
    // One create tells whether the runtime knows the key: a runtime without CDI refuses it.
    let bundle = Bundle::docker().write(&sub.join("probe"));
    let out = Shim::new(&config)
        .binary(shim_path())
        .runc("/bin/true")
        .root(sub.join("runc"))
        .create(&bundle, "probe")
        .output();
    if out.status.success() {
        return Ok(config);
    }
    let err = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    if err.contains("unknown field") {
        return Err(format!(
            "skipped: this runtime has no CDI injection ({err})"
        ));
    }
    panic!("CDI create failed: {err}");
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
        ok: Some(shim.as_secs_f64() / runc.as_secs_f64() <= 1.01),
    });
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken.
    if !require("make bench", &["runc", "dockerd", "containerd"]) {
        return;
    }
    println!("runtime measured: {}", shim_path().display());
    let mut rows = Vec::new();
    let mut floor_rows = Vec::new();
    bench_runc(&mut rows, &mut floor_rows);
    bench_docker(&mut rows);
    println!();
    println!(
        "{:<36} {:>5} {:>9} {:>9} {:>9} {:>7}  target",
        "median of", "runs", "via ms", "direct ms", "added ms", "ratio"
    );
    for r in &rows {
        println!(
            "{:<36} {:>5} {:>9.3} {:>9.3} {:>+9.3} {:>7.3}  {}{}",
            r.what,
            r.runs,
            ms(r.shim),
            ms(r.runc),
            ms(r.shim) - ms(r.runc),
            r.shim.as_secs_f64() / r.runc.as_secs_f64(),
            r.target,
            match r.ok {
                Some(true) => " (met)",
                Some(false) => " (MISSED)",
                None => "",
            }
        );
    }
    print_floor_block(&floor_rows);
}

/// The targets that matter for the shim's own cost: each row's median minus the floor's median
/// in the same interleaved loop.
fn print_floor_block(floor_rows: &[FloorRow]) {
    println!();
    println!("minus the floor (row median - exec floor median, same loop)");
    if floor_rows.is_empty() {
        println!("  no exec floor: no C compiler with a static libc here");
    }
    for f in floor_rows {
        match &f.skipped {
            Some(why) => println!("  {:<36} {why}", f.what),
            None => println!(
                "  {:<36} {:>+7.3} ms  target <= {:.2} ms {}",
                f.what,
                f.above,
                f.target_ms,
                if f.above <= f.target_ms {
                    "(met)"
                } else {
                    "(MISSED)"
                }
            ),
        }
    }
}
