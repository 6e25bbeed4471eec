//! The `create`/`run` path: config → request → inventory → plan → spec, then hand back the runc
//! to exec.
//!
//! Everything that can fail fails here, before the spec is written: the bundle is either left
//! byte-for-byte as it was or replaced whole by the edited spec.

use std::path::PathBuf;

use crate::config::{Config, ConfigError, LogLevel};
use crate::gpu::{self, devfs::DiscoveryError};
use crate::plan::{env_value, HookPlan, Plan, ShapeError};
use crate::request::{Request, RequestError, VISIBLE_DEVICES};
use crate::runc_call::RuncCall;
use crate::runc_exec::{default_runc, is_executable, same_file, ExecError, RUNC_ENV};
use crate::shim_log::ShimLog;
use crate::spec::{SpecError, SpecFile};

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Runc(#[from] ExecError),
    #[error("runtime.path = {configured}: not an executable file")]
    RuntimeMissing { configured: String },
    #[error(
        "runtime.path = {configured} is not the runc other commands use ({passthrough}); \
         set {RUNC_ENV}={configured} in dockerd's environment so every command reaches the same runc"
    )]
    RuntimeMismatch {
        configured: String,
        passthrough: String,
    },
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Shape(#[from] ShapeError),
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
}

/// What was decided for one container, for the shim's log.
#[derive(Debug)]
pub struct Decision {
    pub runc: PathBuf,
    pub summary: String,
}

/// Runs the create path and logs the decision (or the failure) to the shim's log.
/// Returns the runc to exec.
pub fn prepare(call: &RuncCall) -> Result<PathBuf, CreateError> {
    let config = Config::load(&Config::path_from_env())?;
    let log = ShimLog::new(&config.log);
    let id = call.container_label();
    match edit_bundle(call, &config) {
        Ok(decision) => {
            log.write(
                LogLevel::Info,
                &format!("create id={id} {}", decision.summary),
            );
            Ok(decision.runc)
        }
        Err(e) => {
            log.write(LogLevel::Error, &format!("create id={id} failed: {e}"));
            Err(e)
        }
    }
}

/// The runc for create: the same one pass-through commands reach, which `runtime.path` (when
/// set) must agree with, so start/kill/delete never go to a different runc than create did.
fn runc_for_create(config: &Config) -> Result<PathBuf, CreateError> {
    let Some(configured) = &config.runtime.path else {
        return Ok(default_runc()?);
    };
    let shown = configured.display().to_string();
    if !is_executable(configured) {
        return Err(CreateError::RuntimeMissing { configured: shown });
    }
    let passthrough = default_runc()?;
    if !same_file(configured, &passthrough) {
        return Err(CreateError::RuntimeMismatch {
            configured: shown,
            passthrough: passthrough.display().to_string(),
        });
    }
    Ok(configured.clone())
}

/// Edits the bundle's spec for the GPUs this container gets.
pub fn edit_bundle(call: &RuncCall, config: &Config) -> Result<Decision, CreateError> {
    let runc = runc_for_create(config)?;
    let mut spec = SpecFile::load(&call.bundle_dir())?;
    let raw = env_value(&spec.value, VISIBLE_DEVICES).map(str::to_owned);
    let reason = match &raw {
        Some(v) => format!("{VISIBLE_DEVICES}={v}"),
        None => format!(
            "{VISIBLE_DEVICES} unset, sharing.default={}",
            config.sharing.default.as_str()
        ),
    };
    let request = Request::parse(raw.as_deref(), config.sharing.default)?;
    if request == Request::Nothing {
        return Ok(Decision {
            runc,
            summary: format!("gpus=none reason=\"{reason}\" spec=unchanged"),
        });
    }
    let inventory = gpu::discover(&config.devices.root)?;
    let gpus = request.resolve(raw.as_deref(), &inventory)?;
    if gpus.is_empty() {
        return Ok(Decision {
            runc,
            summary: format!(
                "gpus=none reason=\"{reason}; no NVIDIA GPU under {}\" spec=unchanged",
                config.devices.root.display()
            ),
        });
    }
    let hook_exists = is_executable(&config.hook.path);
    let plan = Plan::new(&gpus, &inventory, &config.hook.path, hook_exists);
    let changed = plan.apply(&mut spec.value)?;
    if changed {
        spec.save()?;
    }
    let hook = match &plan.hook {
        HookPlan::Add(p) => format!("hook={}", p.display()),
        HookPlan::Missing(p) => format!("hook=none ({} not found; devices only)", p.display()),
    };
    Ok(Decision {
        runc,
        summary: format!(
            "gpus={} reason=\"{reason}\" devices={} {hook} spec={}",
            plan.visible,
            plan.devices.len(),
            if changed { "updated" } else { "unchanged" }
        ),
    })
}
