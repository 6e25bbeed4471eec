//! NVIDIA CDI fixtures: a spec written as `nvidia-ctk cdi generate` writes one for a fake host,
//! the driver files it mounts (real ELF shared libraries with sonames, built with `cc`), and a
//! stand-in for `nvidia-cdi-hook` that runs as a real OCI hook.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use super::FakeGpuHost;

/// The driver version the fixture's files carry (a 570 branch driver, as on the ECS GPU AMI).
pub const DRIVER_VERSION: &str = "570.172.08";

/// The libraries of a 4×T4 host's spec: (file name stem, soname suffix). The file is
/// `<stem>.so.<DRIVER_VERSION>`; its soname `<stem>.so.<suffix>`, or the file name where the
/// driver gives none shorter.
const LIBRARIES: &[(&str, Option<&str>)] = &[
    ("libcuda", Some("1")),
    ("libcudadebugger", Some("1")),
    ("libnvcuvid", Some("1")),
    ("libnvidia-allocator", Some("1")),
    ("libnvidia-cfg", Some("1")),
    ("libnvidia-eglcore", None),
    ("libnvidia-encode", Some("1")),
    ("libnvidia-fbc", Some("1")),
    ("libnvidia-glcore", None),
    ("libnvidia-glsi", None),
    ("libnvidia-glvkspirv", None),
    ("libnvidia-gpucomp", None),
    ("libnvidia-ml", Some("1")),
    ("libnvidia-ngx", Some("1")),
    ("libnvidia-nvvm", Some("4")),
    ("libnvidia-opencl", Some("1")),
    ("libnvidia-opticalflow", Some("1")),
    ("libnvidia-pkcs11-openssl3", None),
    ("libnvidia-ptxjitcompiler", Some("1")),
    ("libnvidia-rtcore", None),
    ("libnvidia-tls", None),
    ("libnvoptix", Some("1")),
    ("libEGL_nvidia", Some("0")),
    ("libGLESv1_CM_nvidia", Some("1")),
    ("libGLESv2_nvidia", Some("2")),
    ("libGLX_nvidia", Some("0")),
];

/// Other driver files the spec mounts (container path; the host's is the same under the root).
fn other_files() -> Vec<String> {
    let v = DRIVER_VERSION;
    let mut files: Vec<String> = [
        "nvidia-smi",
        "nvidia-debugdump",
        "nvidia-persistenced",
        "nvidia-cuda-mps-control",
        "nvidia-cuda-mps-server",
    ]
    .iter()
    .map(|b| format!("/usr/bin/{b}"))
    .collect();
    files.extend([
        format!("/lib/firmware/nvidia/{v}/gsp_ga10x.bin"),
        format!("/lib/firmware/nvidia/{v}/gsp_tu10x.bin"),
        "/etc/vulkan/icd.d/nvidia_icd.json".to_owned(),
        "/usr/share/glvnd/egl_vendor.d/10_nvidia.json".to_owned(),
        "/usr/share/nvidia/nvoptix.bin".to_owned(),
        "/usr/lib64/xorg/modules/drivers/nvidia_drv.so".to_owned(),
        format!("/usr/lib64/xorg/modules/extensions/libglxserver_nvidia.so.{v}"),
    ]);
    files
}

/// The GPUs of `host`: the N of each `dev/nvidiaN`, sorted.
fn gpu_minors(host: &FakeGpuHost) -> Vec<u32> {
    let mut minors: Vec<u32> = std::fs::read_dir(host.root().join("dev"))
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let digits = name.strip_prefix("nvidia")?.to_owned();
            digits.parse().ok()
        })
        .collect();
    minors.sort_unstable();
    minors
}

/// Writes `<host root>/<dir>/nvidia.yaml` (`dir`: "var/run/cdi" or "etc/cdi") as
/// `nvidia-ctk cdi generate --dev-root <root> --driver-root <root>` writes it for the host's
/// GPUs: devices by index and by UUID and `all`; common edits with the control nodes, the
/// driver's libraries, binaries and firmware as mounts, and the createContainer hooks. The
/// files it mounts are made under the host root (the libraries as real ELF shared objects),
/// and `usr/bin/nvidia-cdi-hook` is [`write_cdi_hook`]'s stand-in. Returns the spec's path.
pub fn write_nvidia_spec(host: &FakeGpuHost, dir: &str) -> PathBuf {
    let root = host.root();
    let r = root.display().to_string();
    let v = DRIVER_VERSION;
    let node = |path: &str, indent: &str| {
        format!("{indent}- path: {path}\n{indent}  hostPath: {r}{path}\n")
    };
    let minors = gpu_minors(host);
    let mut y = String::from("---\ncdiVersion: 0.5.0\nkind: nvidia.com/gpu\ndevices:\n");
    for &m in &minors {
        for name in [m.to_string(), FakeGpuHost::uuid(m)] {
            y += &format!(
                "- name: \"{name}\"\n  containerEdits:\n    deviceNodes:\n{}",
                node(&format!("/dev/nvidia{m}"), "    ")
            );
        }
    }
    y += "- name: all\n  containerEdits:\n    deviceNodes:\n";
    for &m in &minors {
        y += &node(&format!("/dev/nvidia{m}"), "    ");
    }
    y += "containerEdits:\n  env:\n  - NVIDIA_VISIBLE_DEVICES=void\n  - NVIDIA_CTK_LIBCUDA_DIR=/usr/lib64\n  deviceNodes:\n";
    for c in [
        "nvidiactl",
        "nvidia-modeset",
        "nvidia-uvm",
        "nvidia-uvm-tools",
    ] {
        y += &node(&format!("/dev/{c}"), "  ");
    }
    let hook_path = format!("{r}/usr/bin/nvidia-cdi-hook");
    y += "  hooks:\n";
    let links = [
        "libcuda.so.1::/usr/lib64/libcuda.so".to_owned(),
        format!("libGLX_nvidia.so.{v}::/usr/lib64/libGLX_indirect.so.0"),
        "libnvidia-opticalflow.so.1::/usr/lib64/libnvidia-opticalflow.so".to_owned(),
    ];
    let mut args = vec!["nvidia-cdi-hook".to_owned(), "create-symlinks".to_owned()];
    for l in &links {
        args.push("--link".into());
        args.push(l.clone());
    }
    for hook_args in [
        args,
        vec![
            "nvidia-cdi-hook".into(),
            "enable-cuda-compat".into(),
            format!("--host-driver-version={v}"),
        ],
        vec![
            "nvidia-cdi-hook".into(),
            "update-ldcache".into(),
            "--folder".into(),
            "/usr/lib64".into(),
        ],
    ] {
        y += &format!(
            "  - hookName: createContainer\n    path: {hook_path}\n    args:\n{}    env:\n    - NVIDIA_CTK_DEBUG=false\n",
            hook_args
                .iter()
                .map(|a| format!("    - {a}\n"))
                .collect::<String>()
        );
    }
    y += "  mounts:\n";
    let libs = driver_libraries(root);
    let mut containers: Vec<String> = libs
        .iter()
        .map(|p| format!("/usr/lib64/{}", p.file_name().unwrap().to_string_lossy()))
        .collect();
    for f in other_files() {
        let host_file = root.join(f.trim_start_matches('/'));
        std::fs::create_dir_all(host_file.parent().unwrap()).unwrap();
        if f.starts_with("/usr/bin/") {
            std::fs::write(&host_file, format!("#!/bin/sh\necho fake {f} {v}\n")).unwrap();
            std::fs::set_permissions(&host_file, std::fs::Permissions::from_mode(0o755)).unwrap();
        } else {
            std::fs::write(&host_file, format!("fake {f}\n")).unwrap();
        }
        containers.push(f);
    }
    for c in &containers {
        y += &format!(
            "  - hostPath: {r}{c}\n    containerPath: {c}\n    options:\n    - ro\n    - nosuid\n    - nodev\n    - rbind\n    - rprivate\n"
        );
    }
    write_cdi_hook(&root.join("usr/bin/nvidia-cdi-hook"));
    let path = root.join(dir).join("nvidia.yaml");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, y).unwrap();
    path
}

/// The driver's libraries under `root/usr/lib64`, copied from ones built once per process.
fn driver_libraries(root: &Path) -> Vec<PathBuf> {
    let dir = root.join("usr/lib64");
    std::fs::create_dir_all(&dir).unwrap();
    built_libraries()
        .iter()
        .map(|lib| {
            let to = dir.join(lib.file_name().unwrap());
            std::fs::copy(lib, &to).unwrap();
            to
        })
        .collect()
}

/// Each of [`LIBRARIES`] as a real shared object with its soname, built with `cc` once per
/// process (one object compiled, linked once per library, in parallel).
fn built_libraries() -> Vec<PathBuf> {
    static BUILT: Mutex<Option<Vec<PathBuf>>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap();
    if let Some(libs) = built.as_ref() {
        return libs.clone();
    }
    let out = option_env!("CARGO_TARGET_TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("fake-nvidia-libs-{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    let src = out.join("driver.c");
    std::fs::write(
        &src,
        "int fake_nvidia_driver_version(void) { return 570; }\n",
    )
    .unwrap();
    let obj = out.join("driver.o");
    let ok = Command::new("cc")
        .args(["-c", "-fPIC", "-O1", "-o"])
        .arg(&obj)
        .arg(&src)
        .status()
        .expect("cc (gcc) to build the fake driver libraries");
    assert!(ok.success(), "compiling the fake driver library failed");
    let libs: Vec<PathBuf> = std::thread::scope(|s| {
        let handles: Vec<_> = LIBRARIES
            .iter()
            .map(|&(stem, suffix)| {
                let file = out.join(format!("{stem}.so.{DRIVER_VERSION}"));
                let soname = suffix.map_or_else(
                    || format!("{stem}.so.{DRIVER_VERSION}"),
                    |s| format!("{stem}.so.{s}"),
                );
                let obj = &obj;
                s.spawn(move || {
                    let ok = Command::new("cc")
                        .arg("-shared")
                        .arg(format!("-Wl,-soname,{soname}"))
                        .arg("-o")
                        .arg(&file)
                        .arg(obj)
                        .status()
                        .expect("cc to link a fake driver library");
                    assert!(ok.success(), "linking {} failed", file.display());
                    file
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    *built = Some(libs.clone());
    libs
}

/// Writes the stand-in for `nvidia-cdi-hook` at `path`: a shell script run by runc as an OCI
/// hook, with the container's state on stdin. Like the toolkit's hook it finds the container's
/// root from the state's bundle; `update-ldcache --folder D` writes
/// `/etc/ld.so.conf.d/00-nvcr-<pid>.conf` listing D inside the container's root and runs the
/// host's `ldconfig -r <root>`; `create-symlinks --link T::L` makes each link; anything else
/// (`enable-cuda-compat`) does nothing.
pub fn write_cdi_hook(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let script = r#"#!/bin/sh
set -eu
state=$(cat)
bundle=$(printf '%s' "$state" | sed -n 's/.*"bundle":"\([^"]*\)".*/\1/p')
[ -n "$bundle" ] || { echo "nvidia-cdi-hook: no bundle in the state" >&2; exit 1; }
rootfs=$(sed -n 's/.*"root":{"path":"\([^"]*\)".*/\1/p' "$bundle/config.json")
case "$rootfs" in /*) ;; *) rootfs="$bundle/$rootfs" ;; esac
cmd=$1; shift
case "$cmd" in
update-ldcache)
    mkdir -p "$rootfs/etc/ld.so.conf.d"
    conf="$rootfs/etc/ld.so.conf.d/00-nvcr-$$.conf"
    : > "$conf"
    while [ $# -gt 0 ]; do
        case "$1" in --folder) echo "$2" >> "$conf"; shift 2 ;; *) shift ;; esac
    done
    [ -e "$rootfs/etc/ld.so.conf" ] || echo 'include /etc/ld.so.conf.d/*.conf' > "$rootfs/etc/ld.so.conf"
    /sbin/ldconfig -r "$rootfs"
    ;;
create-symlinks)
    while [ $# -gt 0 ]; do
        case "$1" in
        --link)
            target=${2%%::*}; link=${2#*::}
            mkdir -p "$rootfs$(dirname "$link")"
            ln -sfn "$target" "$rootfs$link"
            shift 2 ;;
        *) shift ;;
        esac
    done
    ;;
*) ;;
esac
"#;
    std::fs::write(path, script).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The shim's config for `host` with `devices.injection = mode` (`write_shim_config` already
/// wrote a `[devices]` table; TOML allows one).
pub fn set_injection(config: &Path, mode: &str) {
    let text = std::fs::read_to_string(config).unwrap();
    let text = text.replacen(
        "[devices]\n",
        &format!("[devices]\ninjection = {mode:?}\n"),
        1,
    );
    std::fs::write(config, text).unwrap();
}
