//! `gpu-share doctor`: one line per check, OK / WARN / FAIL; a FAIL means containers will not
//! get GPUs (or will not start) on this host as configured.
//!
//! Read-only: a health check never changes the state it reports on (no cache refresh, no state
//! file or directory created). Each check asks the same function the runtime uses.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::config::Config;
use crate::gpu::{self, devfs::CONTROL_DEVICES};
use crate::host;
use crate::placement::state;
use crate::runc_exec::{self, is_executable, NotRunc};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub status: Status,
    pub name: &'static str,
    pub detail: String,
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self.status {
            Status::Ok => "OK  ",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        };
        write!(f, "{s} {:<16} {}", self.name, self.detail)
    }
}

fn check(status: Status, name: &'static str, detail: impl Into<String>) -> Check {
    Check {
        status,
        name,
        detail: detail.into(),
    }
}

/// Where doctor looks beyond the config.
pub struct Inputs {
    pub config_path: PathBuf,
    /// dockerd's daemon.json, read when `docker info` cannot answer.
    pub daemon_json: PathBuf,
}

/// Runs every check. The config is checked first; without a valid one the rest use defaults.
pub fn run(inputs: &Inputs) -> Vec<Check> {
    let mut checks = Vec::new();
    let config = match Config::load(&inputs.config_path) {
        Ok(c) => {
            let how = if inputs.config_path.exists() {
                "valid"
            } else {
                "absent: defaults"
            };
            checks.push(check(
                Status::Ok,
                "config",
                format!("{} ({how})", inputs.config_path.display()),
            ));
            c
        }
        Err(e) => {
            checks.push(check(Status::Fail, "config", e.to_string()));
            Config::default()
        }
    };
    checks.push(policy(&config));
    checks.push(driver_devices(&config));
    checks.push(driver_proc(&config));
    checks.push(nvml(&config));
    checks.push(persistence(&config.devices.root));
    checks.push(runc(&config));
    checks.push(hook(&config));
    checks.push(cdi(&config));
    checks.push(docker_default_runtime(&inputs.daemon_json));
    checks.push(state_file(&config));
    checks
}

/// The sharing policy in force, as one line an operator can compare with what tenants expect.
fn policy(config: &Config) -> Check {
    let s = &config.sharing;
    let limit = s
        .max_per_gpu
        .map_or_else(|| "none".to_owned(), |m| m.to_string());
    let detail = format!(
        "placement={} max_per_gpu={limit} default={} container_requests={} reserved={}",
        s.placement.as_str(),
        s.default.as_str(),
        s.container_requests.as_str(),
        s.reserved.as_str(),
    );
    check(Status::Ok, "policy", detail)
}

fn driver_devices(config: &Config) -> Check {
    let root = &config.devices.root;
    match gpu::devfs::discover(root) {
        Ok(inv) if inv.gpus.is_empty() => check(
            Status::Fail,
            "driver devices",
            format!(
                "no /dev/nvidiaN under {}: is the NVIDIA driver loaded?",
                root.display()
            ),
        ),
        Ok(inv) => {
            let missing: Vec<&str> = CONTROL_DEVICES
                .iter()
                .copied()
                .filter(|c| !inv.controls.iter().any(|n| n.path.ends_with(c)))
                .collect();
            let gpus = format!("{} GPU node(s)", inv.gpus.len());
            if missing.contains(&"nvidiactl") {
                check(
                    Status::Fail,
                    "driver devices",
                    format!("{gpus}, but no /dev/nvidiactl"),
                )
            } else if missing.is_empty() {
                check(
                    Status::Ok,
                    "driver devices",
                    format!("{gpus}, all control devices"),
                )
            } else {
                check(
                    Status::Warn,
                    "driver devices",
                    format!("{gpus}; missing {}", missing.join(", ")),
                )
            }
        }
        Err(e) => check(Status::Fail, "driver devices", e.to_string()),
    }
}

/// An entry the runtime cannot read is a FAIL: that GPU is never given (a container naming it
/// does not start, and `all` silently gets one fewer), and a healthy driver's entries are
/// always readable, so it needs a person.
fn driver_proc(config: &Config) -> Check {
    let entries = gpu::procfs::read(&config.devices.root);
    let unreadable: Vec<String> = entries
        .iter()
        .filter_map(|e| {
            let why = e.unreadable.as_ref()?;
            Some(format!("{} ({why})", e.pci_bus_id))
        })
        .collect();
    if entries.is_empty() {
        check(
            Status::Warn,
            "driver /proc",
            "no proc/driver/nvidia/gpus entries: GPU UUIDs cannot be selected without NVML",
        )
    } else if !unreadable.is_empty() {
        check(
            Status::Fail,
            "driver /proc",
            format!(
                "{} GPU(s); cannot read the information of {}: containers cannot be given {}",
                entries.len(),
                unreadable.join(", "),
                if unreadable.len() == 1 { "it" } else { "them" }
            ),
        )
    } else {
        check(
            Status::Ok,
            "driver /proc",
            format!("{} GPU(s) with UUIDs", entries.len()),
        )
    }
}

fn nvml(config: &Config) -> Check {
    match host::discover(config) {
        Ok(view) => match view.nvml_error {
            None => {
                let nodes = gpu::devfs::discover(&config.devices.root)
                    .map(|i| i.gpus.len())
                    .unwrap_or(0);
                let seen = view.inventory.gpus.len();
                if seen == nodes {
                    check(Status::Ok, "nvml", format!("{seen} GPU(s)"))
                } else {
                    check(
                        Status::Warn,
                        "nvml",
                        format!("NVML sees {seen} GPU(s) with device nodes, /dev has {nodes}"),
                    )
                }
            }
            Some(e) => check(
                Status::Warn,
                "nvml",
                format!("{e} (the runtime does not need NVML; list shows no memory)"),
            ),
        },
        Err(e) => check(Status::Fail, "nvml", e.to_string()),
    }
}

fn persistence(root: &Path) -> Check {
    let running = std::fs::read_dir(root.join("proc"))
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| {
            std::fs::read_to_string(e.path().join("comm"))
                .is_ok_and(|c| c.trim() == "nvidia-persistenced")
        });
    if running {
        check(Status::Ok, "persistenced", "nvidia-persistenced is running")
    } else {
        check(
            Status::Warn,
            "persistenced",
            "nvidia-persistenced is not running: the first use of a GPU can take seconds",
        )
    }
}

/// The runtime's own resolution. doctor is not the runtime, so it says which binaries are the
/// shim: the runtime `configure docker` registers (beside this program) and the one on PATH.
fn runc(config: &Config) -> Check {
    let not_runc = NotRunc::installed_runtime();
    match runc_exec::resolve_with(config.runtime.path.as_deref(), &not_runc) {
        Ok(found) => check(Status::Ok, "runc", found.display().to_string()),
        Err(e) => check(Status::Fail, "runc", e.to_string()),
    }
}

fn hook(config: &Config) -> Check {
    let p = &config.hook.path;
    if is_executable(p) {
        check(Status::Ok, "nvidia hook", p.display().to_string())
    } else {
        check(
            Status::Warn,
            "nvidia hook",
            format!(
                "{} not found: containers get the devices but not the driver libraries",
                p.display()
            ),
        )
    }
}

/// The driver's injection (`devices.injection`): which CDI spec, whether current; cdi::Report.
fn cdi(config: &Config) -> Check {
    let inventory = gpu::discover(&config.devices.root).unwrap_or_default();
    let report = crate::cdi::Report::new(&config.devices, &config.state.dir, &inventory);
    let status = [Status::Ok, Status::Warn, Status::Fail][report.severity() as usize];
    check(status, "cdi", report.to_string())
}

fn docker_default_runtime(daemon_json: &Path) -> Check {
    let from_docker = Command::new("docker")
        .args(["info", "--format", "{{.DefaultRuntime}}"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    let (runtime, from) = match from_docker {
        Some(r) => (Some(r), "docker info".to_owned()),
        None => {
            let runtime = std::fs::read(daemon_json)
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .and_then(|v| v.get("default-runtime")?.as_str().map(str::to_owned));
            (runtime, daemon_json.display().to_string())
        }
    };
    match runtime.as_deref() {
        Some("gpu-share") => check(Status::Ok, "docker runtime", format!("default is gpu-share ({from})")),
        Some(other) => check(
            Status::Warn,
            "docker runtime",
            format!("default is {other} ({from}): containers will not share GPUs; run gpu-share configure docker"),
        ),
        None => check(
            Status::Warn,
            "docker runtime",
            format!("cannot tell: docker info did not answer and {from} sets no default-runtime"),
        ),
    }
}

fn state_file(config: &Config) -> Check {
    let dir = config.state.dir.display();
    // Copies a create kept aside: the state was rebuilt from runc's, and someone should look.
    let kept: Vec<String> = state::kept_aside(&config.state.dir)
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    let kept_note = if kept.is_empty() {
        String::new()
    } else {
        format!(
            "; {} corrupt state file(s) kept aside ({}): the state was rebuilt from runc's, look at them, then remove them",
            kept.len(),
            kept.join(", ")
        )
    };
    let status = if kept.is_empty() {
        Status::Ok
    } else {
        Status::Warn
    };
    match state::peek(&config.state.dir) {
        Ok(None) => check(
            status,
            "state",
            format!("{dir}: no container recorded yet{kept_note}"),
        ),
        Ok(Some(l)) if l.was_corrupt => check(
            Status::Warn,
            "state",
            format!(
                "{dir}/placements.json is not valid: the next create keeps it aside and rebuilds \
                 it from runc's state{kept_note}"
            ),
        ),
        Ok(Some(l)) => {
            let total = l.assignments.containers.len();
            let dead = l
                .assignments
                .containers
                .iter()
                .filter(|e| !state::is_live(e))
                .count();
            check(
                status,
                "state",
                format!(
                    "{dir}: {} live container(s){}{kept_note}",
                    total - dead,
                    if dead > 0 {
                        format!(", {dead} gone (dropped at the next create)")
                    } else {
                        String::new()
                    }
                ),
            )
        }
        Err(e) => check(Status::Fail, "state", e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_read_as_status_name_detail() {
        let c = check(Status::Warn, "nvml", "not loaded");
        assert_eq!(c.to_string(), "WARN nvml             not loaded");
    }
}
