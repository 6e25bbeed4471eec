//! `gpu-share doctor` and `doctor --fix` on the `/dev/char/<major>:<minor>` links of the NVIDIA
//! device nodes, over fake hosts made with `mknod`: plain doctor reports and writes nothing,
//! `--fix` makes the links as udev does, only ever replaces a symlink, and says what it did.

mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{cli_bin, require, snapshot, FakeGpuHost, FakeRunc, ShimHost, NO_NVML, UVM_MAJOR};
use nix::sys::stat::{makedev, mknod, Mode, SFlag};

/// A fake host with its config (no NVML) and a stand-in runc, so that every check but the
/// `dev/char` ones is OK or WARN and doctor's exit status is the links' alone.
struct Host {
    host: FakeGpuHost,
    shim: ShimHost,
    runc: FakeRunc,
}

impl Host {
    fn new(gpus: u32) -> Host {
        let host = FakeGpuHost::new(gpus);
        let shim = ShimHost::on_root(host.root(), NO_NVML);
        Host {
            host,
            shim,
            runc: FakeRunc::new(),
        }
    }

    fn root(&self) -> &Path {
        self.host.root()
    }

    fn dev_char(&self) -> PathBuf {
        self.root().join("dev/char")
    }

    /// A character device under the host's `dev`.
    fn mknod(&self, rel: &str, major: u64, minor: u64) {
        let path = self.root().join("dev").join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        mknod(
            &path,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            makedev(major, minor),
        )
        .unwrap();
    }

    fn doctor(&self, fix: bool) -> Output {
        let mut c = Command::new(cli_bin());
        c.arg("doctor");
        if fix {
            c.arg("--fix");
        }
        c.arg("--config")
            .arg(&self.shim.config)
            .arg("--daemon-json")
            .arg(self.shim.path("daemon.json"))
            // No docker CLI: doctor reads the (absent) daemon.json instead of a dockerd.
            .env("PATH", "/nonexistent")
            .env("GPU_SHARE_RUNC", self.runc.path())
            .env_remove("GPU_SHARE_CONFIG");
        c.output().unwrap()
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// doctor's `dev/char` lines.
fn dev_char_lines(o: &Output) -> Vec<String> {
    stdout(o)
        .lines()
        .filter(|l| l.get(5..).is_some_and(|r| r.starts_with("dev/char ")))
        .map(str::to_owned)
        .collect()
}

/// The device a path resolves to, as systemd's stat of `/dev/char/M:m` sees it.
fn char_device_numbers(path: &Path) -> Option<(u64, u64)> {
    let m = std::fs::metadata(path).ok()?;
    m.file_type()
        .is_char_device()
        .then(|| (libc::major(m.rdev()) as u64, libc::minor(m.rdev()) as u64))
}

/// The links a fake host with one GPU and an `nvidia-caps` node wants, as udev would write them.
const ONE_GPU_LINKS: &[(&str, &str)] = &[
    ("195:0", "../nvidia0"),
    ("195:254", "../nvidia-modeset"),
    ("195:255", "../nvidiactl"),
    ("234:1", "../nvidia-caps/nvidia-cap1"),
];

fn one_gpu_host() -> Host {
    let h = Host::new(1);
    h.mknod("nvidia-caps/nvidia-cap1", 234, 1);
    h
}

#[test]
fn doctor_reports_each_missing_link_and_writes_nothing() {
    if !require("doctor_reports_each_missing_link_and_writes_nothing", &[]) {
        return;
    }
    let h = one_gpu_host();
    let before = snapshot(h.root());
    let out = h.doctor(false);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let lines = dev_char_lines(&out);
    // One line per node (4 + the two nvidia-uvm nodes) and the hint.
    assert_eq!(lines.len(), 7, "{}", stdout(&out));
    for (name, target) in ONE_GPU_LINKS {
        let node = h.root().join("dev").join(&target[3..]);
        let want = format!(
            "WARN dev/char         {} is missing (for {})",
            h.dev_char().join(name).display(),
            node.display()
        );
        assert!(lines.contains(&want), "{want}\n{}", stdout(&out));
    }
    let hint = lines.last().unwrap();
    assert!(hint.contains("6 of 6 link(s) missing or wrong"), "{hint}");
    assert!(hint.contains("daemon-reload"), "{hint}");
    assert!(hint.contains("gpu-share doctor --fix"), "{hint}");
    assert_eq!(
        snapshot(h.root()),
        before,
        "plain doctor wrote under the root"
    );
    assert!(!h.dev_char().exists());
}

#[test]
fn doctor_fix_links_every_nvidia_node_to_its_node() {
    if !require("doctor_fix_links_every_nvidia_node_to_its_node", &[]) {
        return;
    }
    let h = one_gpu_host();
    // The toolkit does not link NVSwitch nodes; neither does doctor.
    h.mknod("nvidia-nvswitch0", 240, 0);
    let out = h.doctor(true);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let uvm = [
        (format!("{UVM_MAJOR}:0"), "../nvidia-uvm"),
        (format!("{UVM_MAJOR}:1"), "../nvidia-uvm-tools"),
    ];
    let all: Vec<(String, &str)> = ONE_GPU_LINKS
        .iter()
        .map(|(n, t)| (n.to_string(), *t))
        .chain(uvm)
        .collect();
    for (name, target) in &all {
        let link = h.dev_char().join(name);
        assert_eq!(
            std::fs::read_link(&link).unwrap(),
            Path::new(target),
            "{name}"
        );
        let (major, minor) = name.split_once(':').unwrap();
        assert_eq!(
            char_device_numbers(&link),
            Some((major.parse().unwrap(), minor.parse().unwrap())),
            "{name} does not resolve to its node"
        );
        let said = format!("fix: made {} -> {target}", link.display());
        assert!(stdout(&out).contains(&said), "{said}\n{}", stdout(&out));
    }
    let mut made: Vec<String> = std::fs::read_dir(h.dev_char())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    made.sort();
    let mut want: Vec<String> = all.iter().map(|(n, _)| n.clone()).collect();
    want.sort();
    assert_eq!(made, want, "links other than the NVIDIA GPU nodes'");
    let lines = dev_char_lines(&out);
    assert_eq!(lines.len(), 1, "{}", stdout(&out));
    assert!(
        lines[0].starts_with("OK   dev/char         6 NVIDIA device node(s) linked"),
        "{}",
        lines[0]
    );
}

#[test]
fn doctor_fix_makes_dev_char_when_it_is_missing() {
    if !require("doctor_fix_makes_dev_char_when_it_is_missing", &[]) {
        return;
    }
    let h = Host::new(2);
    assert!(!h.dev_char().exists());
    let out = h.doctor(true);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let meta = std::fs::symlink_metadata(h.dev_char()).unwrap();
    assert!(meta.is_dir());
    assert_eq!(meta.permissions().mode() & 0o7777, 0o755);
    assert_eq!(
        std::fs::read_link(h.dev_char().join("195:1")).unwrap(),
        Path::new("../nvidia1")
    );
}

#[test]
fn doctor_fix_a_second_time_changes_nothing() {
    if !require("doctor_fix_a_second_time_changes_nothing", &[]) {
        return;
    }
    let h = one_gpu_host();
    assert!(h.doctor(true).status.success());
    let before = snapshot(h.root());
    let out = h.doctor(true);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).starts_with("fix: 6 /dev/char link(s) in place: nothing to change\n"),
        "{}",
        stdout(&out)
    );
    assert!(!stdout(&out).contains("fix: made"), "{}", stdout(&out));
    assert_eq!(snapshot(h.root()), before);
}

#[test]
fn doctor_fix_replaces_a_symlink_to_the_wrong_node() {
    if !require("doctor_fix_replaces_a_symlink_to_the_wrong_node", &[]) {
        return;
    }
    let h = Host::new(2);
    std::fs::create_dir(h.dev_char()).unwrap();
    let link = h.dev_char().join("195:1");
    // Left over from before a reboot renumbered the nodes, or plain wrong: it leads to GPU 0.
    std::os::unix::fs::symlink("../nvidia0", &link).unwrap();
    // A dangling one is as wrong.
    let dangling = h.dev_char().join("195:255");
    std::os::unix::fs::symlink("../gone", &dangling).unwrap();
    let out = h.doctor(false);
    let lines = dev_char_lines(&out);
    let wrong = format!(
        "WARN dev/char         {} points at ../nvidia0, not {}",
        link.display(),
        h.root().join("dev/nvidia1").display()
    );
    assert!(lines.contains(&wrong), "{wrong}\n{}", stdout(&out));
    let out = h.doctor(true);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let said = format!(
        "fix: replaced {} -> ../nvidia0 with -> ../nvidia1",
        link.display()
    );
    assert!(stdout(&out).contains(&said), "{said}\n{}", stdout(&out));
    assert_eq!(std::fs::read_link(&link).unwrap(), Path::new("../nvidia1"));
    assert_eq!(char_device_numbers(&link), Some((195, 1)));
    assert_eq!(
        std::fs::read_link(&dangling).unwrap(),
        Path::new("../nvidiactl")
    );
    // No temp link is left beside them.
    let names: Vec<String> = std::fs::read_dir(h.dev_char())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
}

#[test]
fn doctor_fix_keeps_an_absolute_link_that_reaches_the_node() {
    if !require(
        "doctor_fix_keeps_an_absolute_link_that_reaches_the_node",
        &[],
    ) {
        return;
    }
    let h = Host::new(1);
    std::fs::create_dir(h.dev_char()).unwrap();
    // What `nvidia-ctk system create-dev-char-symlinks` writes: an absolute target, read under
    // the devices root as the host reads it under `/`.
    let link = h.dev_char().join("195:0");
    std::os::unix::fs::symlink("/dev/nvidia0", &link).unwrap();
    let out = h.doctor(true);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(!stdout(&out).contains("195:0 ->"), "{}", stdout(&out));
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        Path::new("/dev/nvidia0")
    );
}

#[test]
fn doctor_fix_leaves_a_regular_file_in_a_links_place() {
    if !require("doctor_fix_leaves_a_regular_file_in_a_links_place", &[]) {
        return;
    }
    let h = Host::new(1);
    std::fs::create_dir(h.dev_char()).unwrap();
    let file = h.dev_char().join("195:255");
    std::fs::write(&file, "someone's\n").unwrap();
    let out = h.doctor(true);
    assert!(!out.status.success(), "{}", stdout(&out));
    let err = stderr(&out);
    let want = format!(
        "gpu-share: {} is a regular file, not a link to {}: left as it is; remove it if nothing \
         needs it, then run gpu-share doctor --fix again\n",
        file.display(),
        h.root().join("dev/nvidiactl").display()
    );
    assert_eq!(err, want);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "someone's\n");
    // The other links are made all the same, and the report still shows the one left.
    assert_eq!(
        char_device_numbers(&h.dev_char().join("195:0")),
        Some((195, 0))
    );
    let lines = dev_char_lines(&out);
    assert_eq!(lines.len(), 2, "{}", stdout(&out));
    assert!(lines[0].contains("is a regular file"), "{}", lines[0]);
    assert!(
        lines[1].contains("remove what is in their place"),
        "{}",
        lines[1]
    );
}

#[test]
fn doctor_fix_refuses_a_config_that_does_not_load_and_writes_nothing() {
    if !require(
        "doctor_fix_refuses_a_config_that_does_not_load_and_writes_nothing",
        &[],
    ) {
        return;
    }
    let h = Host::new(1);
    let mut config = std::fs::read_to_string(&h.shim.config).unwrap();
    config.push_str("[sharing]\nplacement = \"random\"\n");
    std::fs::write(&h.shim.config, config).unwrap();
    let before = snapshot(h.root());
    let out = h.doctor(true);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.starts_with("gpu-share: config "), "{err}");
    assert!(err.contains("sharing.placement"), "{err}");
    assert!(
        err.ends_with("--fix changes nothing while the config does not load\n"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(snapshot(h.root()), before);
}

#[test]
fn doctor_fix_leaves_a_file_where_dev_char_should_be() {
    if !require("doctor_fix_leaves_a_file_where_dev_char_should_be", &[]) {
        return;
    }
    let h = Host::new(1);
    std::fs::write(h.dev_char(), "not a directory\n").unwrap();
    let out = h.doctor(false);
    let lines = dev_char_lines(&out);
    assert_eq!(
        lines,
        [format!(
            "WARN dev/char         {} is not a directory, so no link can be in it: remove it, \
             then run `gpu-share doctor --fix` (docs/dev-char.md)",
            h.dev_char().display()
        )]
    );
    let before = snapshot(h.root());
    let out = h.doctor(true);
    assert!(!out.status.success(), "{}", stdout(&out));
    assert_eq!(
        stderr(&out),
        format!(
            "gpu-share: {} is not a directory: left as it is; remove it, then run gpu-share \
             doctor --fix again\n",
            h.dev_char().display()
        )
    );
    assert_eq!(snapshot(h.root()), before);
}
