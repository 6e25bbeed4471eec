//! End to end under real dockerd: a fake 4-GPU host with `sharing.placement = "spread"`.
//! One private dockerd for this test binary.

mod common;

use common::dockerd::{Dockerd, IMAGE};
use common::{require, shim_bin, NO_NVML};

#[test]
fn four_containers_land_on_four_different_gpus() {
    if !require(
        "four_containers_land_on_four_different_gpus",
        &["dockerd", "containerd", "runc"],
    ) {
        return;
    }
    let d = Dockerd::start(
        &shim_bin(),
        4,
        &format!("[sharing]\nplacement = \"spread\"\n{NO_NVML}"),
    );
    let names: Vec<String> = (0..4).map(|i| format!("spread-{i}")).collect();
    for name in &names {
        d.docker_ok(&[
            "run",
            "-d",
            "--network",
            "none",
            "--name",
            name,
            IMAGE,
            "sleep",
            "60",
        ]);
    }
    let mut gpus: Vec<String> = names
        .iter()
        .map(|name| {
            let ls = d.docker_ok(&["exec", name, "ls", "/dev"]);
            let mine: Vec<&str> = ls
                .lines()
                .filter(|l| {
                    l.strip_prefix("nvidia")
                        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                })
                .collect();
            assert_eq!(mine.len(), 1, "{name} sees {mine:?}");
            mine[0].to_owned()
        })
        .collect();
    gpus.sort();
    assert_eq!(gpus, ["nvidia0", "nvidia1", "nvidia2", "nvidia3"]);
    let mut args = vec!["rm", "-f"];
    args.extend(names.iter().map(String::as_str));
    d.docker_ok(&args);
    d.stop();
}
