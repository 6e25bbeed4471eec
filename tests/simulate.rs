//! `make simulate` (scripts/simulate.py): a day of a GPU service scaled the way deploy/ scales
//! it. The script runs whole (under a second) without its plot, and these tests hold the
//! stack's promises on its JSON summary: tasks follow load, instances follow tasks, nothing
//! oscillates, a lower target buys headroom, and a target above a full GPU's share per task
//! starves the service.

use std::process::Command;

use serde_json::Value;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/simulate.py");

/// The summaries of one run per target, in order.
fn simulate(args: &[&str]) -> Vec<Value> {
    let out = Command::new("python3")
        .arg(SCRIPT)
        .arg("--json")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "simulate.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array().unwrap().clone()
}

fn phase<'a>(run: &'a Value, name: &str) -> &'a Value {
    run["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["phase"] == name)
        .unwrap_or_else(|| panic!("no phase {name}"))
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap()
}

#[test]
fn tasks_follow_load_through_the_day() {
    for run in simulate(&["--targets", "20", "15"]) {
        let t = |p: &str| f(&phase(&run, p)["tasks"]);
        assert!(t("peak") > 5.0 * t("night"), "{run:#}");
        assert!(t("night") < t("day") && t("day") < t("peak"), "{run:#}");
        assert!(t("late trough") < t("afternoon"), "{run:#}");
        assert!(f(&run["peak_tasks"]) > f(&run["trough_tasks"]), "{run:#}");
        // Each phase's mean GPU use per task stays near the target, never far above it.
        for p in run["phases"].as_array().unwrap() {
            let use_ = f(&p["task_gpu_use"]);
            assert!(use_ < f(&run["target"]) * 1.25, "{p:#}");
        }
        assert!(f(&run["served_percent"]) > 98.0, "{run:#}");
    }
}

#[test]
fn instances_follow_tasks_within_the_admission_limit() {
    for run in simulate(&["--targets", "20", "15"]) {
        assert!(f(&run["max_tasks_per_gpu"]) <= 4.0, "{run:#}");
        // Settled, every running task has a slot and no idle instance is kept.
        assert!(f(&run["settled_minutes"]) > 600.0, "{run:#}");
        assert_eq!(f(&run["settled_instances_short"]), 0.0, "{run:#}");
        assert_eq!(f(&run["settled_instances_spare_max"]), 0.0, "{run:#}");
        // A task waits in PROVISIONING about an instance's start-up (5 minutes), not longer.
        assert!(f(&run["longest_provisioning_minutes"]) <= 7.0, "{run:#}");
        let i = |p: &str| f(&phase(&run, p)["instances"]);
        assert!(i("peak") > 4.0 * i("night"), "{run:#}");
    }
}

#[test]
fn desired_counts_do_not_oscillate() {
    for run in simulate(&["--targets", "20", "15"]) {
        assert!(f(&run["desired_reversals"]) <= 3.0, "{run:#}");
        assert!(f(&run["instance_reversals"]) <= 3.0, "{run:#}");
    }
}

#[test]
fn lower_target_runs_more_tasks_on_more_instances_at_lower_gpu_use() {
    let runs = simulate(&["--targets", "20", "15"]);
    let (high, low) = (phase(&runs[0], "peak"), phase(&runs[1], "peak"));
    assert!(f(&low["tasks"]) > f(&high["tasks"]), "{low:#} vs {high:#}");
    assert!(f(&low["instances"]) > f(&high["instances"]));
    assert!(f(&low["gpu_use"]) < f(&high["gpu_use"]));
    // The headroom shows in the spike: the lower target serves all of it.
    let spike = |r: &Value| f(&phase(r, "spike")["served"]);
    assert!(spike(&runs[1]) > spike(&runs[0]));
}

#[test]
fn target_above_a_full_gpus_share_starves_the_service() {
    let runs = simulate(&["--targets", "50"]);
    let run = &runs[0];
    assert!(run["warning"]
        .as_str()
        .unwrap()
        .contains("100 / max_per_gpu = 25"));
    assert!(f(&run["served_percent"]) < 50.0, "{run:#}");
    assert!(f(&phase(run, "peak")["served"]) < 25.0, "{run:#}");
}

#[test]
fn short_scale_out_cooldown_overshoots() {
    let runs = simulate(&["--targets", "20", "--scale-out-cooldown", "1"]);
    let tuned = simulate(&["--targets", "20"]);
    assert!(f(&runs[0]["peak_tasks"]) > 1.5 * f(&tuned[0]["peak_tasks"]));
    assert!(f(&runs[0]["desired_reversals"]) > f(&tuned[0]["desired_reversals"]));
}

#[test]
fn bad_arguments_are_refused_before_simulating() {
    let out = Command::new("python3")
        .args([SCRIPT, "--max-per-gpu", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--max-per-gpu 0: must be at least 1"), "{err}");
}
