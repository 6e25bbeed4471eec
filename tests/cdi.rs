//! NVIDIA's driver injected through its CDI spec (`devices.injection`): real runc over a fake
//! host whose spec is written as `nvidia-ctk cdi generate` writes it, with real ELF libraries
//! and a stand-in `nvidia-cdi-hook` that runs `ldconfig` in the container's root.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::cdi::{set_injection, write_nvidia_spec};
use common::{require, snapshot, Bundle, FakeGpuHost, FakeRunc, ShimHost};
use serde_json::Value;

/// A shim over a fake host of `gpus` GPUs, and the host's spec in `var/run/cdi` (or none).
fn host_with_spec(gpus: u32, spec: bool) -> (ShimHost, Option<PathBuf>) {
    let host = FakeGpuHost::new(gpus);
    let path = spec.then(|| write_nvidia_spec(&host, "var/run/cdi"));
    (ShimHost::on(host, ""), path)
}

/// A busybox bundle of its own (the hook writes into its root) running `script`, with the
/// host's static `ldconfig` bound in so the container can list its cache.
fn bundle(s: &ShimHost, name: &str, script: &str, env: &[&str]) -> PathBuf {
    let path = Bundle::busybox()
        .args(&["sh", "-c", script])
        .env(env)
        .write(&s.path(name));
    let mut spec: Value =
        serde_json::from_slice(&std::fs::read(path.join("config.json")).unwrap()).unwrap();
    spec["mounts"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "destination": "/sbin/ldconfig", "type": "bind", "source": "/sbin/ldconfig",
            "options": ["rbind", "ro"]
        }));
    std::fs::write(path.join("config.json"), serde_json::to_vec(&spec).unwrap()).unwrap();
    path
}

fn run(s: &ShimHost, bundle: &Path, id: &str) -> Output {
    s.shim().root(s.path("runc-state")).run(bundle, id).output()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn log(s: &ShimHost) -> String {
    std::fs::read_to_string(&s.log).unwrap_or_default()
}

/// The `/dev/nvidiaN` names a container's `ls /dev` printed.
fn gpu_nodes(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| {
            l.strip_prefix("nvidia")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(str::to_owned)
        .collect()
}

fn spec_of(bundle: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap()
}

#[test]
fn create_mounts_cdi_libraries_and_the_hook_fills_the_ld_cache() {
    if !require(
        "create_mounts_cdi_libraries_and_the_hook_fills_the_ld_cache",
        &["runc", "cc"],
    ) {
        return;
    }
    let (s, spec) = host_with_spec(2, true);
    let spec = spec.unwrap();
    let b = bundle(
        &s,
        "b",
        "ls /dev; echo env=$NVIDIA_VISIBLE_DEVICES; ldconfig -p; readlink /usr/lib64/libcuda.so; /usr/bin/nvidia-smi",
        &[],
    );
    let out = run(&s, &b, "cdi-libs");
    assert!(out.status.success(), "{out:?}\n{}", log(&s));
    let text = stdout(&out);
    assert_eq!(gpu_nodes(&text), ["nvidia0", "nvidia1"], "{text}");
    for control in [
        "nvidiactl",
        "nvidia-uvm",
        "nvidia-uvm-tools",
        "nvidia-modeset",
    ] {
        assert!(
            text.lines().any(|l| l == control),
            "{control} missing: {text}"
        );
    }
    assert!(text.contains("env=0,1\n"), "{text}");
    for soname in [
        "libcuda.so.1",
        "libnvidia-ml.so.1",
        "libnvidia-ptxjitcompiler.so.1",
    ] {
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with(soname) && l.contains("=> /usr/lib64/")),
            "{soname} not in the container's ld cache: {text}"
        );
    }
    assert!(
        text.contains("libcuda.so.1\n"),
        "create-symlinks did not run: {text}"
    );
    assert!(text.contains("fake /usr/bin/nvidia-smi"), "{text}");
    let line = log(&s);
    assert!(
        line.contains(&format!("injection=cdi cdi_spec={}", spec.display())),
        "{line}"
    );
    // The legacy hook is not added on top of CDI, and CDI's `void` never reaches the env.
    let edited = spec_of(&b);
    assert!(edited["hooks"].get("prestart").is_none(), "{edited}");
    assert!(
        !edited["process"]["env"].to_string().contains("=void"),
        "{edited}"
    );
}

#[test]
fn visible_devices_by_index_and_uuid_get_exactly_those_cdi_devices() {
    if !require(
        "visible_devices_by_index_and_uuid_get_exactly_those_cdi_devices",
        &["runc", "cc"],
    ) {
        return;
    }
    let (s, _) = host_with_spec(4, true);
    let uuid3 = FakeGpuHost::uuid(3);
    let cases = [
        ("0,2", vec!["nvidia0", "nvidia2"]),
        (uuid3.as_str(), vec!["nvidia3"]),
        ("1", vec!["nvidia1"]),
    ];
    for (i, (visible, want)) in cases.iter().enumerate() {
        let id = format!("sub{i}");
        let b = bundle(
            &s,
            &id,
            "ls /dev",
            &[&format!("NVIDIA_VISIBLE_DEVICES={visible}")],
        );
        let out = run(&s, &b, &id);
        assert!(out.status.success(), "{visible}: {out:?}\n{}", log(&s));
        assert_eq!(gpu_nodes(&stdout(&out)), *want, "{visible}");
    }
    assert_eq!(log(&s).matches("injection=cdi ").count(), 3, "{}", log(&s));
}

/// A create through a recording stand-in for runc: the shim's edit alone.
fn create(s: &ShimHost, name: &str) -> (Output, PathBuf) {
    let runc = FakeRunc::new();
    let b = Bundle::busybox().write(&s.path(name));
    let out = s.shim().runc(runc.path()).create(&b, name).output();
    (out, b)
}

/// Renames the devices GPU 1 is known by, as a spec written before GPU 1 was there would be.
fn drop_gpu1(spec: &Path) {
    let text = std::fs::read_to_string(spec).unwrap();
    let text = text
        .replace("name: \"1\"", "name: \"91\"")
        .replace(&FakeGpuHost::uuid(1), "GPU-gone");
    std::fs::write(spec, text).unwrap();
}

#[test]
fn auto_falls_back_to_the_legacy_hook_without_a_spec_and_says_why() {
    let (s, _) = host_with_spec(1, false);
    let (out, b) = create(&s, "nospec");
    assert!(out.status.success(), "{out:?}");
    let line = log(&s);
    assert!(
        line.contains("injection=legacy (cdi: no CDI spec of kind nvidia.com/gpu in "),
        "{line}"
    );
    assert!(line.contains("etc/cdi or "), "{line}");
    assert!(spec_of(&b)["linux"]["devices"]
        .to_string()
        .contains("/dev/nvidia0"));
}

#[test]
fn auto_falls_back_when_the_spec_does_not_cover_a_gpu() {
    if !require(
        "auto_falls_back_when_the_spec_does_not_cover_a_gpu",
        &["cc"],
    ) {
        return;
    }
    let (s, spec) = host_with_spec(2, true);
    drop_gpu1(&spec.unwrap());
    let (out, b) = create(&s, "stale");
    assert!(out.status.success(), "{out:?}");
    let line = log(&s);
    assert!(line.contains("injection=legacy (cdi: GPU 1 ("), "{line}");
    assert!(line.contains("the spec is stale"), "{line}");
    // The legacy path, exactly: no CDI mounts.
    assert!(!spec_of(&b)["mounts"].to_string().contains("libcuda"));
}

#[test]
fn cdi_mode_refuses_a_stale_spec_and_leaves_the_bundle_as_it_was() {
    if !require("cdi_mode_refuses_a_stale_spec", &["cc"]) {
        return;
    }
    let (s, spec) = host_with_spec(2, true);
    drop_gpu1(&spec.unwrap());
    set_injection(&s.config, "cdi");
    let runc = FakeRunc::new();
    let b = Bundle::busybox().write(&s.path("b"));
    let before = snapshot(&b);
    let out = s.shim().runc(runc.path()).create(&b, "stale").output();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("devices.injection = \"cdi\": GPU 1 ("),
        "{err}"
    );
    assert!(err.contains("var/run/cdi/nvidia.yaml"), "{err}");
    assert!(runc.argv().is_none(), "runc ran after a refusal");
    assert_eq!(snapshot(&b), before, "the bundle changed");
}

#[test]
fn cdi_mode_without_a_spec_names_both_spec_dirs() {
    let (s, _) = host_with_spec(1, false);
    set_injection(&s.config, "cdi");
    let (out, _) = create(&s, "nospec");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/etc/cdi or "), "{err}");
    assert!(err.contains("/var/run/cdi"), "{err}");
}

#[test]
fn a_corrupt_digest_is_rebuilt_and_a_changed_spec_redigested() {
    if !require("a_corrupt_digest_is_rebuilt", &["cc"]) {
        return;
    }
    let (s, spec) = host_with_spec(1, true);
    let spec = spec.unwrap();
    let digest = s.path("state/cdi-digest");
    let (out, _) = create(&s, "first");
    assert!(out.status.success(), "{out:?}");
    assert!(digest.is_file());
    let whole = std::fs::read(&digest).unwrap();
    // Cut short: a create rebuilds it rather than trusting what is left.
    std::fs::write(&digest, &whole[..whole.len() / 2]).unwrap();
    let (out, b) = create(&s, "second");
    assert!(out.status.success(), "{out:?}");
    assert!(
        log(&s).matches("injection=cdi ").count() == 2,
        "{}",
        log(&s)
    );
    assert_eq!(std::fs::read(&digest).unwrap(), whole);
    assert!(spec_of(&b)["mounts"].to_string().contains("libcuda.so"));
    // The spec changes (a new variable): the next create reads the new one.
    let text = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(
        &spec,
        text.replacen("\n  env:\n", "\n  env:\n  - NVIDIA_CTK_NEW=1\n", 1),
    )
    .unwrap();
    let (out, b) = create(&s, "third");
    assert!(out.status.success(), "{out:?}");
    assert!(spec_of(&b)["process"]["env"]
        .to_string()
        .contains("NVIDIA_CTK_NEW=1"));
}

#[test]
fn a_malformed_spec_falls_back_under_auto_and_is_refused_under_cdi() {
    let (s, _) = host_with_spec(1, false);
    let root = s.config.clone();
    let text = std::fs::read_to_string(&root).unwrap();
    let devices_root = text
        .lines()
        .find_map(|l| l.strip_prefix("root = "))
        .map(|r| PathBuf::from(r.trim_matches('"')))
        .unwrap();
    let spec = devices_root.join("etc/cdi/nvidia.yaml");
    std::fs::create_dir_all(spec.parent().unwrap()).unwrap();
    std::fs::write(
        &spec,
        "cdiVersion: 0.5.0\nkind: nvidia.com/gpu\ndevices: [\n",
    )
    .unwrap();
    let (out, _) = create(&s, "auto");
    assert!(out.status.success(), "{out:?}");
    let line = log(&s);
    assert!(line.contains("injection=legacy (cdi: CDI spec "), "{line}");
    assert!(line.contains("not a valid spec"), "{line}");
    set_injection(&s.config, "cdi");
    let (out, _) = create(&s, "cdi");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a valid spec"), "{err}");
}

#[test]
fn legacy_mode_reads_no_spec() {
    if !require("legacy_mode_reads_no_spec", &["cc"]) {
        return;
    }
    let (s, _) = host_with_spec(1, true);
    set_injection(&s.config, "legacy");
    let (out, b) = create(&s, "legacy");
    assert!(out.status.success(), "{out:?}");
    assert!(log(&s).contains("injection=legacy hook="), "{}", log(&s));
    assert!(!s.path("state/cdi-digest").exists());
    assert!(!spec_of(&b)["mounts"].to_string().contains("libcuda"));
}

/// `gpu-share doctor`'s `cdi` line for this host.
fn doctor_cdi_line(s: &ShimHost) -> String {
    let out = std::process::Command::new(common::cli_bin())
        .args(["doctor", "--config"])
        .arg(&s.config)
        .args(["--daemon-json", "/nonexistent/daemon.json"])
        .env_remove("GPU_SHARE_RUNC")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.get(5..).is_some_and(|l| l.starts_with("cdi ")))
        .unwrap_or_else(|| panic!("no cdi line in {out:?}"))
        .to_owned()
}

#[test]
fn doctor_shows_the_spec_in_use_and_whether_the_digest_is_current() {
    if !require("doctor_shows_the_spec_in_use", &["cc"]) {
        return;
    }
    let (s, spec) = host_with_spec(2, true);
    let spec = spec.unwrap();
    let line = doctor_cdi_line(&s);
    assert!(line.starts_with("OK"), "{line}");
    assert!(
        line.contains(&format!("CDI spec {} covers all 2 GPU(s)", spec.display())),
        "{line}"
    );
    assert!(line.contains("digest out of date"), "{line}");
    // Doctor writes nothing; a create digests the spec.
    assert!(!s.path("state/cdi-digest").exists());
    let (out, _) = create(&s, "c");
    assert!(out.status.success(), "{out:?}");
    assert!(doctor_cdi_line(&s).contains("digest current"));
    drop_gpu1(&spec);
    let line = doctor_cdi_line(&s);
    assert!(line.starts_with("WARN"), "{line}");
    assert!(line.contains("legacy hook, since GPU 1"), "{line}");
    set_injection(&s.config, "cdi");
    assert!(doctor_cdi_line(&s).starts_with("FAIL"));
}
