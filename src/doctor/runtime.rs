//! The container side of `doctor`: the policy in force, runc, the NVIDIA hook, dockerd's
//! default runtime and the placement state. Read-only, like every check.

use std::path::Path;
use std::process::Command;

use super::report::{check, Check, Status};
use crate::cdi::{Report, Severity};
use crate::config::Config;
use crate::gpu;
use crate::placement::state;
use crate::runc_exec::{self, is_executable, NotRunc};

/// The sharing policy in force, as one line an operator can compare with what tenants expect.
pub(crate) fn policy(config: &Config) -> Check {
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

/// The runtime's own resolution. doctor is not the runtime, so it says which binaries are the
/// shim: the runtime `configure docker` registers (beside this program) and the one on PATH.
pub(crate) fn runc(config: &Config) -> Check {
    let not_runc = NotRunc::installed_runtime();
    match runc_exec::resolve_with(config.runtime.path.as_deref(), &not_runc) {
        Ok(found) => check(Status::Ok, "runc", found.display().to_string()),
        Err(e) => check(Status::Fail, "runc", e.to_string()),
    }
}

pub(crate) fn hook(config: &Config) -> Check {
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

pub(crate) fn docker_default_runtime(daemon_json: &Path) -> Check {
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

pub(crate) fn state_file(config: &Config) -> Check {
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

/// The driver's injection (`devices.injection`): which CDI spec, and whether it is current.
pub fn cdi(config: &Config) -> Check {
    let inventory = gpu::discover(&config.devices.root).unwrap_or_default();
    let report = Report::new(&config.devices, &config.state.dir, &inventory);
    let status = match report.severity() {
        Severity::Ok => Status::Ok,
        Severity::Warn => Status::Warn,
        Severity::Fail => Status::Fail,
    };
    check(status, "cdi", report.to_string())
}
