//! The AMI: the Packer template read by a real HCL parser, and its provisioning script run against
//! a temp root laid out like an ECS GPU-optimized AMI, after which a real dockerd is started
//! from exactly what the script wrote.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::dockerd::{Dockerd, IMAGE};
use common::{cli_bin, require, shim_bin, FakeGpuHost};
use gpu_share::config::{Config, Placement};
use hcl::eval::Evaluate;
use hcl::{Block, Body, Expression};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn packer_dir() -> PathBuf {
    Path::new(ROOT).join("packer")
}

fn template() -> Body {
    let text = std::fs::read_to_string(packer_dir().join("gpu-share.pkr.hcl")).unwrap();
    hcl::parse(&text).expect("the template is valid HCL")
}

fn blocks<'a>(body: &'a Body, ident: &str) -> Vec<&'a Block> {
    body.blocks()
        .filter(|b| b.identifier.as_str() == ident)
        .collect()
}

fn labels(b: &Block) -> Vec<String> {
    b.labels.iter().map(|l| l.clone().into_inner()).collect()
}

fn attr<'a>(body: &'a Body, key: &str) -> Option<&'a Expression> {
    body.attributes()
        .find(|a| a.key.as_str() == key)
        .map(|a| &a.expr)
}

fn text(e: &Expression) -> String {
    hcl::format::to_string(e).unwrap()
}

#[test]
fn template_requires_the_amazon_plugin() {
    let t = template();
    let packer = blocks(&t, "packer");
    assert_eq!(packer.len(), 1);
    let plugins = blocks(&packer[0].body, "required_plugins");
    let amazon = attr(&plugins[0].body, "amazon").expect("required_plugins.amazon");
    assert!(
        text(amazon).contains("\"github.com/hashicorp/amazon\""),
        "{}",
        text(amazon)
    );
}

/// The values `var.os` may take: the list its validation accepts.
fn accepted_os_values(t: &Body) -> Vec<String> {
    let os = blocks(t, "variable")
        .into_iter()
        .find(|v| labels(v) == ["os"])
        .expect("variable os");
    let condition = text(attr(&blocks(&os.body, "validation")[0].body, "condition").unwrap());
    let list = condition
        .split_once('[')
        .and_then(|(_, rest)| rest.split_once(']'))
        .map(|(list, _)| list)
        .expect("contains([...], var.os)");
    list.split(',')
        .map(|s| s.trim().trim_matches('"').to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

#[test]
fn source_ami_comes_from_the_ecs_gpu_ssm_parameter() {
    let t = template();
    let data = blocks(&t, "data");
    let ssm = data
        .iter()
        .find(|b| labels(b) == ["amazon-parameterstore", "source_ami"])
        .expect("an amazon-parameterstore data source");
    // The parameter name, as Packer evaluates it for each OS the template accepts: from
    // variables alone (see data_sources_read_no_locals).
    let name = attr(&ssm.body, "name").unwrap();
    let os_values = accepted_os_values(&t);
    assert_eq!(os_values, ["amazon-linux-2", "amazon-linux-2023"]);
    for os in os_values {
        let mut ctx = hcl::eval::Context::new();
        ctx.declare_var(
            "var",
            hcl::value!({ os = (os.clone()), region = "us-east-1" }),
        );
        let value = name
            .evaluate(&ctx)
            .unwrap_or_else(|e| panic!("{}: {e}", text(name)));
        assert_eq!(
            value,
            hcl::Value::from(format!(
                "/aws/service/ecs/optimized-ami/{os}/gpu/recommended/image_id"
            ))
        );
    }
    let sources = blocks(&t, "source");
    let ebs = sources
        .iter()
        .find(|b| labels(b)[0] == "amazon-ebs")
        .expect("an amazon-ebs source");
    assert_eq!(
        text(attr(&ebs.body, "source_ami").unwrap()),
        "data.amazon-parameterstore.source_ami.value"
    );
    assert!(text(attr(&ebs.body, "instance_type").unwrap()).contains("var.instance_type"));
    let default = blocks(&t, "variable")
        .into_iter()
        .find(|v| labels(v) == ["instance_type"])
        .and_then(|v| attr(&v.body, "default").map(text));
    assert_eq!(default.as_deref(), Some("\"g4dn.xlarge\""));
}

/// Every attribute and nested block a block sets, as `block` and `block.attribute` paths.
fn attribute_paths(body: &Body, prefix: &str, out: &mut Vec<String>) {
    for a in body.attributes() {
        out.push(format!("{prefix}{}", a.key.as_str()));
    }
    for b in body.blocks() {
        out.push(format!("{prefix}{}", b.identifier.as_str()));
        attribute_paths(&b.body, &format!("{prefix}{}.", b.identifier.as_str()), out);
    }
}

fn block_text(b: &Block) -> String {
    hcl::format::to_string(b).unwrap()
}

/// Packer before 1.12.0 evaluates every data source before any local (hashicorp/packer#11011,
/// the DAG came with 1.12.0, GH-13155), so a data source that reads `local.` stops `validate`
/// and `build` with "Unsupported attribute" on the older versions the template accepts.
#[test]
fn data_sources_read_no_locals() {
    let t = template();
    let data = blocks(&t, "data");
    assert!(!data.is_empty());
    for d in data {
        let body = block_text(d);
        assert!(
            !body.contains("local."),
            "data {:?} reads a local, which Packer < 1.12 cannot evaluate:\n{body}",
            labels(d)
        );
    }
}

/// The Packer release each HCL function the template may call needs, from Packer's
/// CHANGELOG.md: `regex` 1.7.0 (GH-10601), `templatefile` 1.7.1 (GH-10776). The others are in
/// Debian's 1.6.6 (checked with `packer validate` there), older than any floor the template can
/// have. A function missing here fails the test: add it with the release that brought it. On a
/// Packer without `regex`, `can(regex(...))` is false rather than an error, so every
/// validation that uses it refuses its own default.
const PACKER_FUNCTIONS: &[(&str, [u64; 3])] = &[
    ("can", [1, 6, 6]),
    ("contains", [1, 6, 6]),
    ("floor", [1, 6, 6]),
    ("formatdate", [1, 6, 6]),
    ("merge", [1, 6, 6]),
    ("timestamp", [1, 6, 6]),
    ("regex", [1, 7, 0]),
    ("templatefile", [1, 7, 1]),
];

/// The names of the functions the template calls: an identifier right before `(`, outside
/// comments and variables' `type` constraints (`map(string)` is a type, not a call).
fn functions_called(raw: &str) -> std::collections::BTreeSet<String> {
    let mut called = std::collections::BTreeSet::new();
    let code = raw.lines().filter(|l| {
        let l = l.trim_start();
        !l.starts_with('#') && !l.starts_with("type ")
    });
    for line in code {
        let b = line.as_bytes();
        let mut i = 0;
        while i < b.len() {
            let starts = (b[i].is_ascii_alphabetic() || b[i] == b'_')
                && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'));
            if !starts {
                i += 1;
                continue;
            }
            let s = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            if b.get(i) == Some(&b'(') {
                called.insert(line[s..i].to_owned());
            }
        }
    }
    called
}

/// The Packer release that brought each construct the template uses, from Packer's
/// CHANGELOG.md: data sources and `required_plugins` (`packer init`) in 1.7.0, locals read by
/// data sources in 1.12.0 (GH-13155), and each function by `PACKER_FUNCTIONS`.
fn constructs_used(t: &Body, raw: &str) -> Vec<(String, [u64; 3])> {
    let mut used = Vec::new();
    if !blocks(t, "data").is_empty() {
        used.push(("data sources".to_owned(), [1, 7, 0]));
    }
    if blocks(t, "packer")
        .iter()
        .any(|p| !blocks(&p.body, "required_plugins").is_empty())
    {
        used.push(("required_plugins".to_owned(), [1, 7, 0]));
    }
    if blocks(t, "data")
        .iter()
        .any(|d| block_text(d).contains("local."))
    {
        used.push(("a local read by a data source".to_owned(), [1, 12, 0]));
    }
    for f in functions_called(raw) {
        let since = PACKER_FUNCTIONS
            .iter()
            .find(|(name, _)| *name == f)
            .unwrap_or_else(|| panic!("{f}(): add it to PACKER_FUNCTIONS with its Packer release"))
            .1;
        used.push((format!("{f}()"), since));
    }
    used
}

fn parse_version(v: &str) -> [u64; 3] {
    let mut parts = v.trim().split('.').map(|p| p.parse::<u64>().unwrap());
    [
        parts.next().unwrap(),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    ]
}

/// `required_version` admits exactly the releases that have every construct the template uses:
/// no older one (it would fail there), and no newer floor than needed.
#[test]
fn required_version_is_the_oldest_packer_with_every_construct_used() {
    let raw = std::fs::read_to_string(packer_dir().join("gpu-share.pkr.hcl")).unwrap();
    let t = template();
    let packer = &blocks(&t, "packer")[0];
    let required = text(attr(&packer.body, "required_version").unwrap());
    let floor = required
        .trim_matches('"')
        .strip_prefix(">=")
        .map(parse_version)
        .unwrap_or_else(|| panic!("required_version {required} is not \">= X.Y.Z\""));
    let used = constructs_used(&t, &raw);
    let (what, needed) = used.iter().max_by_key(|(_, v)| *v).unwrap();
    assert_eq!(
        floor, *needed,
        "required_version {required}, but {what} needs {needed:?} (all: {used:?})"
    );
}

/// The arguments of the amazon plugin's `amazon-ebs` builder, from its docs page
/// hashicorp/packer-plugin-amazon `docs/builders/ebs.mdx` and the partials it includes
/// (`docs-partials/builder/ebs/Config-not-required.mdx`,
/// `docs-partials/builder/common/{AMIConfig,SnapshotConfig,AccessConfig,RunConfig}-*.mdx`),
/// plus the SSH communicator's (packer-plugin-sdk `communicator/SSH-not-required.mdx`, which
/// ebs.mdx includes). Only a subset: add an argument here, from those pages, when the
/// template starts using it.
const EBS_ARGUMENTS: &[&str] = &[
    // AccessConfig
    "region",
    "access_key",
    "secret_key",
    // RunConfig
    "instance_type",
    "source_ami",
    "subnet_id",
    "vpc_id",
    "security_group_id",
    "security_group_ids",
    "iam_instance_profile",
    "associate_public_ip_address",
    "ebs_optimized",
    "run_tags",
    "user_data",
    "user_data_file",
    "metadata_options",
    "ssh_interface",
    // AMIConfig
    "ami_name",
    "ami_description",
    "ami_regions",
    "ami_users",
    "tags",
    "encrypt_boot",
    "kms_key_id",
    "force_deregister",
    "force_delete_snapshot",
    "imds_support",
    // SnapshotConfig
    "snapshot_tags",
    "snapshot_users",
    // ebs Config
    "launch_block_device_mappings",
    "ami_block_device_mappings",
    "run_volume_tags",
    "skip_create_ami",
    // BlockDevice (inside the two mappings)
    "launch_block_device_mappings.delete_on_termination",
    "launch_block_device_mappings.device_name",
    "launch_block_device_mappings.encrypted",
    "launch_block_device_mappings.iops",
    "launch_block_device_mappings.throughput",
    "launch_block_device_mappings.volume_type",
    "launch_block_device_mappings.volume_size",
    "launch_block_device_mappings.kms_key_id",
    // SSH communicator
    "ssh_username",
];

/// The arguments of the `amazon-parameterstore` data source, from
/// hashicorp/packer-plugin-amazon `docs/datasources/parameterstore.mdx`: its
/// `docs-partials/datasource/parameterstore/Config-{required,not-required}.mdx`, and the
/// builders' AccessConfig, which its "Authentication" section points to (the Config struct
/// squashes `awscommon.AccessConfig`).
const PARAMETERSTORE_ARGUMENTS: &[&str] = &[
    "name",
    "with_decryption",
    "region",
    "access_key",
    "secret_key",
];

#[test]
fn amazon_arguments_are_documented() {
    let t = template();
    let mut checked = 0;
    for (kind, block, documented) in [
        ("source", "amazon-ebs", EBS_ARGUMENTS),
        ("data", "amazon-parameterstore", PARAMETERSTORE_ARGUMENTS),
    ] {
        for b in blocks(&t, kind)
            .into_iter()
            .filter(|b| labels(b)[0] == block)
        {
            let mut set = Vec::new();
            attribute_paths(&b.body, "", &mut set);
            for a in set {
                assert!(
                    documented.contains(&a.as_str()),
                    "{kind} {block:?} sets {a}, which the amazon plugin's docs do not list"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 12, "{checked}");
}

/// `packer fmt -check` as CI's packer (Debian's 1.6.6) runs it. fmt reads syntax only, so the
/// template's newer blocks do not matter to it; `packer validate` on 1.6.6 cannot read them.
#[test]
fn template_is_packer_fmt_clean() {
    if !require("template_is_packer_fmt_clean", &["packer"]) {
        return;
    }
    let out = Command::new("packer")
        .args(["fmt", "-check", "-diff"])
        .arg(packer_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "packer fmt -check -diff packer/ (run `packer fmt packer/`):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_variable_is_typed_and_described() {
    let t = template();
    let vars = blocks(&t, "variable");
    assert!(vars.len() >= 8);
    for v in vars {
        let name = labels(v).join(".");
        assert!(attr(&v.body, "type").is_some(), "{name} has no type");
        let d = attr(&v.body, "description").map(text).unwrap_or_default();
        assert!(d.len() > 10, "{name} has no description");
    }
}

#[test]
fn every_file_a_provisioner_names_exists() {
    let t = template();
    let build = &blocks(&t, "build")[0];
    let makefile = std::fs::read_to_string(Path::new(ROOT).join("Makefile")).unwrap();
    let mut named = Vec::new();
    for p in blocks(&build.body, "provisioner") {
        for key in ["source", "sources", "content", "script", "scripts"] {
            if let Some(e) = attr(&p.body, key) {
                named.push(text(e));
            }
        }
    }
    let paths: Vec<String> = named
        .iter()
        .flat_map(|t| t.split('"').map(str::to_owned).collect::<Vec<_>>())
        .filter(|s| s.starts_with("${path.root}/") || s.starts_with("${local.dist_dir}/"))
        .collect();
    assert!(paths.len() >= 4, "{paths:?}");
    for p in paths {
        if let Some(rel) = p.strip_prefix("${path.root}/") {
            assert!(packer_dir().join(rel).is_file(), "{p} is not in packer/");
        } else if let Some(bin) = p.strip_prefix("${local.dist_dir}/") {
            // Release binaries: `make release` must put each into $(DIST).
            assert!(
                makefile.contains(&format!("$(DIST)/{bin}\n")),
                "make release does not build {bin}"
            );
        }
    }
    assert_eq!(blocks(&build.body, "post-processor").len(), 1);
    assert_eq!(
        labels(blocks(&build.body, "post-processor")[0]),
        ["manifest"]
    );
}

/// The config template as Packer's templatefile renders it, for the two shapes it has.
fn render_config(default: &str, placement: &str, max: u32) -> String {
    let tpl = std::fs::read_to_string(packer_dir().join("config.toml.pkrtpl")).unwrap();
    tpl.lines()
        .filter(|l| !l.starts_with("%{"))
        .filter(|l| max > 0 || !l.contains("${max_per_gpu}"))
        .map(|l| {
            l.replace("${sharing_default}", default)
                .replace("${sharing_placement}", placement)
                .replace("${max_per_gpu}", &max.to_string())
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn baked_config_is_valid() {
    let c = Config::parse(&render_config("all", "spread", 15)).unwrap();
    assert_eq!(c.sharing.placement, Placement::Spread);
    assert_eq!(c.sharing.max_per_gpu, Some(15));
    let c = Config::parse(&render_config("none", "all", 0)).unwrap();
    assert_eq!(c.sharing.max_per_gpu, None);
}

/// A temp root laid out like an ECS GPU-optimized AMI, the release files in SRC, and the
/// provisioning script run over it.
struct Ami {
    dir: tempfile::TempDir,
    host: FakeGpuHost,
    /// What provision.sh said on stderr (its warnings).
    stderr: String,
}

impl Ami {
    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn new(layout: &[(&str, &str, u32)]) -> Ami {
        let dir = tempfile::tempdir().unwrap();
        let host = FakeGpuHost::new(1);
        let mut ami = Ami {
            dir,
            host,
            stderr: String::new(),
        };
        for (path, body, mode) in layout {
            let p = ami.root().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, body).unwrap();
            std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(*mode))
                .unwrap();
        }
        let src = ami.dir.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::copy(shim_bin(), src.join("gpu-share-runtime")).unwrap();
        std::fs::copy(cli_bin(), src.join("gpu-share")).unwrap();
        std::fs::create_dir_all(src.join("systemd")).unwrap();
        // Every unit in systemd/, as the template uploads them.
        for unit in ["gpu-share-metrics.service", "gpu-share-mps.service"] {
            let from = Path::new(ROOT).join("systemd").join(unit);
            std::fs::copy(from, src.join("systemd").join(unit)).unwrap();
        }
        std::fs::create_dir_all(src.join("units")).unwrap();
        for unit in std::fs::read_dir(packer_dir().join("units")).unwrap() {
            let unit = unit.unwrap();
            std::fs::copy(unit.path(), src.join("units").join(unit.file_name())).unwrap();
        }
        // The baked config, pointed at the fake GPU host and a private state dir and log.
        let config = format!(
            "{}\n[devices]\nroot = {:?}\n[state]\ndir = {:?}\n[log]\npath = {:?}\n",
            render_config("all", "all", 0),
            ami.host.root().display().to_string(),
            ami.dir.path().join("state").display().to_string(),
            ami.dir.path().join("shim.log").display().to_string()
        );
        std::fs::write(src.join("config.toml"), config).unwrap();
        let out = Command::new("bash")
            .arg(packer_dir().join("provision.sh"))
            .env("SRC", &src)
            .env("ROOT", ami.root())
            .output()
            .unwrap();
        assert!(out.status.success(), "provision.sh: {out:?}");
        ami.stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        ami
    }

    /// dockerd's flags as the AMI's docker unit makes them: every executable in
    /// /etc/docker-runtimes.d as --add-runtime, then OPTIONS from /etc/sysconfig/docker; plus
    /// daemon.json when there is one.
    fn dockerd_flags(&self) -> Vec<String> {
        let mut flags = vec![
            "--iptables=false".to_owned(),
            "--ip-masq=false".to_owned(),
            "--bridge=none".to_owned(),
            "--storage-driver=vfs".to_owned(),
        ];
        let runtimes = self.root().join("etc/docker-runtimes.d");
        let mut names: Vec<_> = std::fs::read_dir(&runtimes)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| gpu_share::runc_exec::is_executable(&e.path()))
            .collect();
        names.sort_by_key(|e| e.file_name());
        for e in names {
            flags.push("--add-runtime".to_owned());
            flags.push(format!(
                "{}={}",
                e.file_name().to_string_lossy(),
                e.path().display()
            ));
        }
        let sysconfig =
            std::fs::read_to_string(self.root().join("etc/sysconfig/docker")).unwrap_or_default();
        let options = gpu_share::docker::sysconfig::Options::parse(&sysconfig);
        flags.extend(options.words.iter().cloned());
        let daemon_json = self.root().join("etc/docker/daemon.json");
        if daemon_json.exists() {
            flags.push("--config-file".to_owned());
            flags.push(daemon_json.display().to_string());
        }
        flags
    }

    fn start_dockerd(&self) -> Dockerd {
        Dockerd::start_configured(
            &self.dockerd_flags(),
            self.root().join("etc/gpu-share/config.toml"),
            self.dir.path().join("shim.log"),
        )
    }
}

/// Puts a recorder where provision.sh installed the runtime: it appends its argv, NUL-separated,
/// one call a line, to the file it returns, then execs the real runtime with that same argv. A
/// compiled program, because a script cannot see its argv[0] (the kernel puts the script's path
/// there).
fn record_runtime_argv(ami: &Ami) -> PathBuf {
    let installed = ami.root().join("usr/local/bin/gpu-share-runtime");
    let real = ami.dir.path().join("real-gpu-share-runtime");
    let calls = ami.dir.path().join("runtime-argv");
    std::fs::rename(&installed, &real).unwrap();
    let c = ami.dir.path().join("record.c");
    std::fs::write(
        &c,
        format!(
            r#"#include <stdio.h>
#include <unistd.h>
int main(int argc, char **argv) {{
    (void)argc;
    FILE *f = fopen({calls:?}, "a");
    if (f) {{
        for (char **a = argv; *a; a++) fprintf(f, "%s%c", *a, 0);
        fputc('\n', f);
        fclose(f);
    }}
    execv({real:?}, argv);
    perror("execv");
    return 127;
}}
"#
        ),
    )
    .unwrap();
    let out = Command::new("cc")
        .arg("-o")
        .arg(&installed)
        .arg(&c)
        .output()
        .unwrap();
    assert!(out.status.success(), "cc: {out:?}");
    calls
}

/// The argv[0] each `create` the runtime was called for had, in order.
fn create_argv0s(calls: &Path) -> Vec<String> {
    std::fs::read(calls)
        .unwrap_or_default()
        .split(|b| *b == b'\n')
        .map(|line| {
            line.split(|b| *b == 0)
                .map(|w| String::from_utf8_lossy(w).into_owned())
                .collect::<Vec<_>>()
        })
        .filter(|argv| argv.iter().any(|w| w == "create"))
        .map(|argv| argv[0].clone())
        .collect()
}

fn file_name(path: &str) -> &str {
    Path::new(path)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("")
}

/// A real dockerd from what provision.sh wrote: the default runtime and `--runtime nvidia` both
/// run gpu-share-runtime, and `nvidia` runs it with argv[0]'s file name `nvidia` (the channel
/// the runtime can tell it by); the default with `default_argv0`.
fn check_dockerd(ami: &Ami, default_argv0: &str) {
    let calls = record_runtime_argv(ami);
    let d = ami.start_dockerd();
    let info = d.docker_ok(&["info", "--format", "{{.DefaultRuntime}}"]);
    assert_eq!(info.trim(), "gpu-share", "{}", d.log());
    for (runtime, argv0) in [(None, default_argv0), (Some("nvidia"), "nvidia")] {
        let _ = std::fs::remove_file(&calls);
        let mut args = vec!["run", "--rm", "--network", "none"];
        if let Some(r) = runtime {
            args.extend(["--runtime", r]);
        }
        args.extend([IMAGE, "ls", "-l", "/dev/nvidia0"]);
        let out = d.docker_ok(&args);
        assert!(out.contains("195,   0"), "{runtime:?}: {out}");
        let created = create_argv0s(&calls);
        assert_eq!(created.len(), 1, "{runtime:?}: {created:?}");
        assert_eq!(file_name(&created[0]), argv0, "{runtime:?}: {created:?}");
    }
    let log = std::fs::read_to_string(&d.shim_log).unwrap();
    assert_eq!(
        log.lines().filter(|l| l.contains(" gpus=0 ")).count(),
        2,
        "{log}"
    );
    d.stop();
}

#[test]
fn amazon_linux_2_ami_runtimes_dir_and_sysconfig() {
    if !require(
        "amazon_linux_2_ami_runtimes_dir_and_sysconfig",
        &["dockerd", "containerd", "runc"],
    ) {
        return;
    }
    let ami = Ami::new(&[
        (
            "etc/docker-runtimes.d/nvidia",
            "#!/bin/sh\nexec /usr/bin/nvidia-container-runtime \"$@\"\n",
            0o755,
        ),
        (
            "etc/sysconfig/docker",
            // The AMI also raises nofile with --default-ulimit; this sandbox may not raise it,
            // so another unrelated flag stands in for it.
            "# Additional startup options for the Docker daemon\nOPTIONS=\"--log-level=warn --default-runtime nvidia\"\n",
            0o644,
        ),
    ]);
    // The metrics agent's unit is installed and enabled.
    let unit = ami
        .root()
        .join("etc/systemd/system/gpu-share-metrics.service");
    assert!(unit.is_file());
    let wanted = ami
        .root()
        .join("etc/systemd/system/multi-user.target.wants/gpu-share-metrics.service");
    assert!(std::fs::symlink_metadata(&wanted).is_ok(), "not enabled");
    // So is the MPS daemons' (it starts nothing while isolation.mode is "none").
    let mps = ami
        .root()
        .join("etc/systemd/system/multi-user.target.wants/gpu-share-mps.service");
    assert!(
        std::fs::symlink_metadata(&mps).is_ok(),
        "gpu-share-mps not enabled"
    );
    let runtimes = ami.root().join("etc/docker-runtimes.d");
    let runtime = ami.root().join("usr/local/bin/gpu-share-runtime");
    assert_eq!(
        std::fs::read_link(runtimes.join("nvidia")).unwrap(),
        runtime
    );
    assert_eq!(
        std::fs::read_link(runtimes.join("gpu-share")).unwrap(),
        runtime
    );
    assert!(!ami.root().join("etc/docker/daemon.json").exists());
    // The runtimes dir's entries are links named as the runtimes: no other link is made.
    assert!(!ami.root().join("usr/local/libexec").exists());
    check_dockerd(&ami, "gpu-share");
}

#[test]
fn amazon_linux_2023_ami_daemon_json() {
    if !require(
        "amazon_linux_2023_ami_daemon_json",
        &["dockerd", "containerd", "runc"],
    ) {
        return;
    }
    let ami = Ami::new(&[(
        "etc/docker/daemon.json",
        r#"{"runtimes": {"nvidia": {"path": "/usr/bin/nvidia-container-runtime", "runtimeArgs": []}}, "default-runtime": "nvidia", "log-driver": "json-file"}"#,
        0o644,
    )]);
    let j: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ami.root().join("etc/docker/daemon.json")).unwrap())
            .unwrap();
    assert_eq!(j["default-runtime"], "gpu-share");
    assert_eq!(j["log-driver"], "json-file");
    let runtime = ami.root().join("usr/local/bin/gpu-share-runtime");
    assert_eq!(
        j["runtimes"]["gpu-share"]["path"],
        runtime.display().to_string()
    );
    let nvidia = ami.root().join("usr/local/libexec/gpu-share/nvidia");
    assert_eq!(
        j["runtimes"]["nvidia"]["path"],
        nvidia.display().to_string()
    );
    assert_eq!(std::fs::read_link(&nvidia).unwrap(), runtime);
    check_dockerd(&ami, "gpu-share-runtime");
}

// ---- boot units: the /dev/char links and the CDI spec ----

/// The values of `key=` in a unit file, each split on whitespace (`After=a b` is two).
fn unit_values(unit: &str, key: &str) -> Vec<String> {
    unit.lines()
        .filter_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
        .flat_map(|v| v.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .collect()
}

fn unit_text(name: &str) -> String {
    std::fs::read_to_string(packer_dir().join("units").join(name)).unwrap()
}

#[test]
fn dev_char_unit_runs_doctor_fix_after_the_driver_and_before_docker_and_ecs() {
    let unit = unit_text("gpu-share-dev-char.service");
    assert_eq!(unit_values(&unit, "Type"), ["oneshot"]);
    assert_eq!(
        unit.lines()
            .find_map(|l| l.strip_prefix("ExecStart="))
            .unwrap(),
        "/usr/local/bin/gpu-share doctor --fix"
    );
    let after = unit_values(&unit, "After");
    for before_it in [
        "nvidia-persistenced.service",
        "nvidia-cdi-refresh.service",
        "gpu-share-cdi-generate.service",
    ] {
        assert!(
            after.iter().any(|a| a == before_it),
            "{before_it}: {after:?}"
        );
    }
    assert_eq!(
        unit_values(&unit, "Before"),
        ["docker.service", "ecs.service"]
    );
    // The uvm nodes exist before the links are made; a host without nvidia-modprobe goes on.
    assert_eq!(
        unit_values(&unit, "ExecStartPre").join(" "),
        "-/usr/bin/nvidia-modprobe -u -c=0"
    );
    assert_eq!(unit_values(&unit, "WantedBy"), ["multi-user.target"]);
}

#[test]
fn cdi_units_write_the_spec_before_docker_and_ecs() {
    let unit = unit_text("gpu-share-cdi-generate.service");
    assert_eq!(unit_values(&unit, "Type"), ["oneshot"]);
    assert_eq!(
        unit.lines()
            .find_map(|l| l.strip_prefix("ExecStart="))
            .unwrap(),
        "@NVIDIA_CTK@ cdi generate --output=/var/run/cdi/nvidia.yaml"
    );
    assert!(unit_values(&unit, "After").contains(&"nvidia-persistenced.service".to_owned()));
    assert_eq!(
        unit_values(&unit, "Before"),
        ["docker.service", "ecs.service"]
    );
    assert_eq!(unit_values(&unit, "WantedBy"), ["multi-user.target"]);
    let drop_in = unit_text("nvidia-cdi-refresh-before-docker.conf");
    assert_eq!(
        unit_values(&drop_in, "Before"),
        ["docker.service", "ecs.service"]
    );
}

/// Every file in packer/units/ goes to the instance, where provision.sh reads it.
#[test]
fn template_uploads_every_boot_unit() {
    let t = template();
    let build = &blocks(&t, "build")[0];
    let uploads: Vec<String> = blocks(&build.body, "provisioner")
        .into_iter()
        .filter(|p| labels(p) == ["file"])
        .filter(|p| {
            attr(&p.body, "destination").map(text).as_deref() == Some("\"/tmp/gpu-share/units/\"")
        })
        .filter_map(|p| attr(&p.body, "sources").map(text))
        .collect();
    assert_eq!(uploads.len(), 1, "{uploads:?}");
    let mut units: Vec<String> = std::fs::read_dir(packer_dir().join("units"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    units.sort();
    assert_eq!(units.len(), 3, "{units:?}");
    for u in units {
        assert!(
            uploads[0].contains(&format!("\"${{path.root}}/units/{u}\"")),
            "{u} is not uploaded: {}",
            uploads[0]
        );
    }
    // The directory exists before the file provisioner uploads into it.
    let mkdir = blocks(&build.body, "provisioner")
        .into_iter()
        .take_while(|p| labels(p) == ["shell"])
        .filter_map(|p| attr(&p.body, "inline").map(text))
        .find(|i| i.contains("mkdir"))
        .expect("a shell provisioner that makes /tmp/gpu-share/units first");
    assert!(mkdir.contains("/tmp/gpu-share/units"), "{mkdir}");
}

/// At bake time (no ROOT) the CDI unit is run as boot will run it, and a build whose unit wrote
/// no spec fails: this branch needs a GPU instance, so its commands are pinned here.
#[test]
fn provision_checks_at_bake_time_that_a_cdi_spec_was_written() {
    let script = std::fs::read_to_string(packer_dir().join("provision.sh")).unwrap();
    let at = |what: &str| {
        script
            .find(what)
            .unwrap_or_else(|| panic!("provision.sh does not run {what:?}"))
    };
    let bake = at("if [[ -z $ROOT && -n $CDI_UNIT ]]; then");
    let start = at("systemctl start \"$CDI_UNIT\"");
    let check = at("/var/run/cdi/nvidia*.yaml");
    let fail = script[check..].find("exit 1").expect("fails the build") + check;
    // The links are made after the CDI unit made the control nodes, as at boot.
    let fix = at("\"$BIN/gpu-share\" doctor --fix");
    let restart = at("systemctl restart docker");
    assert!(
        bake < start && start < check && check < fail && fail < fix && fix < restart,
        "{script}"
    );
}

fn enabled(ami: &Ami, unit: &str) -> bool {
    std::fs::symlink_metadata(
        ami.root()
            .join("etc/systemd/system/multi-user.target.wants")
            .join(unit),
    )
    .is_ok()
}

/// A toolkit's refresh units, as its package installs them (contents as in the toolkit's
/// deployments/systemd/), and its nvidia-ctk.
const TOOLKIT_1_18: &[(&str, &str, u32)] = &[
    (
        "usr/lib/systemd/system/nvidia-cdi-refresh.service",
        "[Unit]\nDescription=Refresh NVIDIA CDI specification file\n[Service]\nType=oneshot\nExecStart=/usr/bin/nvidia-ctk cdi generate\n[Install]\nWantedBy=multi-user.target\n",
        0o644,
    ),
    (
        "usr/lib/systemd/system/nvidia-cdi-refresh.path",
        "[Unit]\nDescription=Trigger CDI refresh\n[Path]\nPathChanged=/usr/bin/nvidia-ctk\n[Install]\nWantedBy=multi-user.target\n",
        0o644,
    ),
    ("usr/bin/nvidia-ctk", "#!/bin/sh\n", 0o755),
];

#[test]
fn provisioning_links_dev_char_and_enables_the_links_unit() {
    if !require(
        "provisioning_links_dev_char_and_enables_the_links_unit",
        &["runc", "systemctl"],
    ) {
        return;
    }
    let ami = Ami::new(TOOLKIT_1_18);
    let unit = ami
        .root()
        .join("etc/systemd/system/gpu-share-dev-char.service");
    assert_eq!(
        std::fs::read_to_string(unit).unwrap(),
        unit_text("gpu-share-dev-char.service")
    );
    assert!(enabled(&ami, "gpu-share-dev-char.service"));
    // doctor --fix ran over the devices root the baked config names.
    let dev_char = ami.host.root().join("dev/char");
    assert_eq!(
        std::fs::read_link(dev_char.join("195:0")).unwrap(),
        Path::new("../nvidia0")
    );
    assert_eq!(
        std::fs::read_link(dev_char.join("195:255")).unwrap(),
        Path::new("../nvidiactl")
    );
}

#[test]
fn provisioning_enables_the_toolkits_cdi_refresh_units_where_it_has_them() {
    if !require(
        "provisioning_enables_the_toolkits_cdi_refresh_units_where_it_has_them",
        &["runc", "systemctl"],
    ) {
        return;
    }
    let ami = Ami::new(TOOLKIT_1_18);
    assert!(enabled(&ami, "nvidia-cdi-refresh.service"));
    assert!(enabled(&ami, "nvidia-cdi-refresh.path"));
    let drop_in = ami
        .root()
        .join("etc/systemd/system/nvidia-cdi-refresh.service.d/gpu-share.conf");
    assert_eq!(
        std::fs::read_to_string(drop_in).unwrap(),
        unit_text("nvidia-cdi-refresh-before-docker.conf")
    );
    assert!(!ami
        .root()
        .join("etc/systemd/system/gpu-share-cdi-generate.service")
        .exists());
    assert!(!ami.stderr.contains("WARNING"), "{}", ami.stderr);
}

#[test]
fn provisioning_installs_its_own_cdi_unit_for_a_toolkit_without_refresh_units() {
    if !require(
        "provisioning_installs_its_own_cdi_unit_for_a_toolkit_without_refresh_units",
        &["runc", "systemctl"],
    ) {
        return;
    }
    let ami = Ami::new(&[("usr/bin/nvidia-ctk", "#!/bin/sh\n", 0o755)]);
    let unit = std::fs::read_to_string(
        ami.root()
            .join("etc/systemd/system/gpu-share-cdi-generate.service"),
    )
    .unwrap();
    assert!(!unit.contains("@NVIDIA_CTK@"), "{unit}");
    assert_eq!(
        unit.lines()
            .find_map(|l| l.strip_prefix("ExecStart="))
            .unwrap(),
        "/usr/bin/nvidia-ctk cdi generate --output=/var/run/cdi/nvidia.yaml"
    );
    assert_eq!(
        unit_values(&unit, "ConditionPathExists"),
        ["/usr/bin/nvidia-ctk"]
    );
    assert!(enabled(&ami, "gpu-share-cdi-generate.service"));
    assert!(!enabled(&ami, "nvidia-cdi-refresh.service"));
    assert!(!ami.stderr.contains("WARNING"), "{}", ami.stderr);
}

#[test]
fn provisioning_without_nvidia_ctk_warns_and_installs_no_cdi_unit() {
    if !require(
        "provisioning_without_nvidia_ctk_warns_and_installs_no_cdi_unit",
        &["runc", "systemctl"],
    ) {
        return;
    }
    let ami = Ami::new(&[]);
    assert!(
        ami.stderr
            .contains("provision.sh: WARNING: no nvidia-ctk on this AMI"),
        "{}",
        ami.stderr
    );
    assert!(!enabled(&ami, "gpu-share-cdi-generate.service"));
    assert!(!ami
        .root()
        .join("etc/systemd/system/gpu-share-cdi-generate.service")
        .exists());
    // The links are made all the same.
    assert!(enabled(&ami, "gpu-share-dev-char.service"));
}
