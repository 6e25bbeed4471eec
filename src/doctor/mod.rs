//! `gpu-share doctor`: one line per check, OK / WARN / FAIL; a FAIL means containers will not
//! get GPUs (or will not start) on this host as configured.
//!
//! Plain `doctor` is read-only: a health check never changes the state it reports on (no cache
//! refresh, no state file or directory created). Each check asks the same function the runtime
//! uses. `doctor --fix` ([`fix`]) is the one writer, and it writes only the `/dev/char` links
//! (`dev_char_fix.rs`).
//!
//! Each family of checks has its file: `driver.rs` (device nodes, /proc, NVML, persistenced),
//! `dev_char.rs` (the /dev/char links), `runtime.rs` (policy, runc, hook, dockerd, state). The
//! report line is `report.rs`, a leaf every family builds on.

mod dev_char;
mod dev_char_fix;
mod driver;
mod report;
mod runtime;

use std::path::PathBuf;

use crate::config::{Config, ConfigError};

pub use dev_char_fix::{Done, FixError as LinkError, Fixed};
pub use report::{Check, Status};

/// Where doctor looks beyond the config.
pub struct Inputs {
    pub config_path: PathBuf,
    /// dockerd's daemon.json, read when `docker info` cannot answer.
    pub daemon_json: PathBuf,
}

/// Runs every check, in the order the report shows them. The config is checked first; without
/// a valid one the rest use defaults. A new check is one line here.
pub fn run(inputs: &Inputs) -> Vec<Check> {
    let mut checks = Vec::new();
    let config = match Config::load(&inputs.config_path) {
        Ok(c) => {
            let how = if inputs.config_path.exists() {
                "valid"
            } else {
                "absent: defaults"
            };
            checks.push(report::check(
                Status::Ok,
                "config",
                format!("{} ({how})", inputs.config_path.display()),
            ));
            c
        }
        Err(e) => {
            checks.push(report::check(Status::Fail, "config", e.to_string()));
            Config::default()
        }
    };
    let root = &config.devices.root;
    checks.push(runtime::policy(&config));
    checks.push(driver::driver_devices(&config));
    checks.extend(dev_char::check_links(root));
    checks.push(driver::driver_proc(&config));
    checks.push(driver::nvml(&config));
    checks.push(driver::persistence(root));
    checks.push(runtime::runc(&config));
    checks.push(runtime::hook(&config));
    checks.push(runtime::cdi(&config));
    checks.push(runtime::docker_default_runtime(&inputs.daemon_json));
    checks.push(runtime::state_file(&config));
    checks.push(gpu_health(&config));
    checks
}

/// The GPUs the metrics agent marked unhealthy after a critical Xid (docs/health.md).
fn gpu_health(config: &Config) -> Check {
    let health = crate::health::report::Summary::read(&config.state.dir);
    let status = if health.healthy() {
        Status::Ok
    } else {
        Status::Warn
    };
    report::check(status, "gpu health", health.to_string())
}

#[derive(Debug, thiserror::Error)]
pub enum FixError {
    /// The devices root comes from the config: with a config that does not load, the links
    /// would go under a root the operator did not choose.
    #[error("{0}: --fix changes nothing while the config does not load")]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Links(#[from] LinkError),
}

/// `doctor --fix`: makes the missing or wrong `/dev/char` links of the NVIDIA device nodes
/// under the config's `devices.root`, and nothing else.
pub fn fix(inputs: &Inputs) -> Result<Fixed, FixError> {
    let config = Config::load(&inputs.config_path)?;
    Ok(dev_char_fix::fix_links(&config.devices.root)?)
}
