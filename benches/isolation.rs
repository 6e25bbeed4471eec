//! `make bench`: what `isolation.mode = "mps"` adds to a create, with the fake
//! `nvidia-cuda-mps-control` (a real one's front-end may be slower: measure on a GPU host too).
//!
//! Every create runs the shim with runc replaced by `/bin/true`, on a pristine docker-like spec,
//! interleaved with the floor (a static C program that only execs `/bin/true`) so drift hits
//! every side:
//! - `none`: the same host in `isolation.mode = "none"`;
//! - `mps, daemon up`: the common case, a connect() to the daemon's socket;
//! - `mps, round trip`: the daemon's last answer is stale, so the create asks it
//!   (`get_server_list` through the front-end), as it does at most once per `mps::FRESH`;
//! - `mps, first use`: a class no daemon serves yet, started by the create (limits included).
//!
//! Bundles and state live on tmpfs where there is one. Prints medians, "mps create minus floor" and "mps minus none" against the 5 ms target.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/timing.rs"]
mod timing;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::mps::{write_gpu_cache, MpsDir};
use common::{require, write_shim_config, Bundle, FakeGpuHost, Shim, NO_NVML};
use timing::{count, exec_floor, fresh_copies, median, ms, same_env, shim_path, timed};

const TARGET_MS: f64 = 5.0;

struct Host {
    config: PathBuf,
    root: PathBuf,
    bundle: PathBuf,
}

impl Host {
    fn new(dir: &Path, gpu_root: &Path, name: &str, extra: &str) -> Host {
        let sub = dir.join(name);
        std::fs::create_dir_all(&sub).unwrap();
        let (config, _) = write_shim_config(&sub, gpu_root, &format!("{NO_NVML}{extra}"));
        write_gpu_cache(&sub.join("state"), &[FakeGpuHost::uuid(0)], 1 << 50);
        Host {
            config,
            root: sub.join("runc"),
            bundle: sub.join("bundle"),
        }
    }

    /// One create of a pristine spec with `env` added, runc being /bin/true, by `binary`.
    fn create(&self, binary: &Path, id: &str, env: &[&str]) -> Command {
        Bundle::docker().env(env).write(&self.bundle);
        Shim::new(&self.config)
            .binary(binary)
            .root(&self.root)
            .runc("/bin/true")
            .create(&self.bundle, id)
            .into_command()
    }
}

fn main() {
    if !require("bench mps", &["cc"]) {
        return;
    }
    // Bundles and state on tmpfs, as under dockerd (`/run`): a disk's fsync would drown the
    // difference measured.
    let tmp = tempfile::Builder::new()
        .prefix("gpu-share-bench.")
        .tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap();
    let gpu = FakeGpuHost::new_in(tmp.path(), 1);
    let mps = MpsDir::new();
    let none = Host::new(tmp.path(), gpu.root(), "none", "");
    let capped = Host::new(tmp.path(), gpu.root(), "mps", &mps.section(""));
    let floor = exec_floor().expect("cc -static: the floor is needed to compare against");
    // Fresh copies in turn, as `startup` runs them (`timing::fresh_copies` says why).
    let copies = count("BENCH_COPIES", 4);
    let (floors, shims) = (
        fresh_copies(&floor, copies),
        fresh_copies(&shim_path(), copies),
    );
    let shim = |i: usize| shims[i % shims.len()].as_path();
    let answered = mps.path().join("gpu0-4096M-50pct/log/answered");

    // Warm: the default class's daemon started once, as at boot.
    timed(&mut capped.create(shim(0), "warm", &[]));

    let n = count("BENCH_MPS_CREATES", 300);
    let (mut floor_t, mut none_t, mut up_t, mut trip_t) = (vec![], vec![], vec![], vec![]);
    for i in 0..n {
        let mut none_create = none.create(shim(i), &format!("n{i}"), &[]);
        let floor = &floors[i % floors.len()];
        floor_t.push(timed(&mut same_env(Command::new(floor), &none_create)));
        none_t.push(timed(&mut none_create));
        up_t.push(timed(&mut capped.create(shim(i), &format!("u{i}"), &[])));
        let _ = std::fs::remove_file(&answered);
        trip_t.push(timed(&mut capped.create(shim(i), &format!("r{i}"), &[])));
    }
    // A new class per create: each starts its daemon. Fewer: each leaves a daemon running.
    let m = count("BENCH_MPS_STARTS", 30);
    let mut start_t = Vec::new();
    for i in 0..m {
        let mem = format!("GPU_SHARE_MEMORY={}MiB", 1024 + i);
        start_t.push(timed(&mut capped.create(
            shim(i),
            &format!("s{i}"),
            &[&mem],
        )));
    }

    let (f, none, up, trip, start) = (
        ms(median(floor_t)),
        ms(median(none_t)),
        ms(median(up_t)),
        ms(median(trip_t)),
        ms(median(start_t)),
    );
    println!("isolation.mode = \"mps\" on create (runc = /bin/true, fake MPS control), medians:");
    println!("  exec floor (C, static)       {f:7.3} ms   ({n} runs)");
    println!("  create, mode none            {none:7.3} ms");
    println!("  create, mps, daemon up       {up:7.3} ms");
    println!("  create, mps, round trip      {trip:7.3} ms   (once per daemon per 10 s)");
    println!("  create, mps, first use       {start:7.3} ms   ({m} runs; starts the daemon)");
    let verdict = |added: f64| if added <= TARGET_MS { "ok" } else { "OVER" };
    for (what, t) in [
        ("daemon up", up),
        ("round trip", trip),
        ("first use", start),
    ] {
        println!(
            "  mps create minus floor ({what}): {:6.3} ms; mps minus none: {:6.3} ms (target <= {TARGET_MS} ms: {})",
            t - f,
            t - none,
            verdict(t - none)
        );
    }
    // The fake host lives inside `tmp`, which removes it.
    std::mem::forget(gpu);
}
