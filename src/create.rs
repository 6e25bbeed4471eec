//! The `create`/`run` path: config → request → inventory → plan → spec, then hand back the runc
//! to exec.
//!
//! Everything that can fail fails here, before the spec is written: the bundle is either left
//! byte-for-byte as it was or replaced whole by the edited spec.

use std::path::PathBuf;

use crate::config::{Config, ConfigError, LogLevel, Placement};
use crate::gpu::{self, devfs::DiscoveryError, Gpu};
use crate::placement::state::{self, Entry, StateError};
use crate::placement::{self, FreeMemory, Kind, PlacementError};
use crate::plan::{env_value, HookPlan, Plan, ShapeError};
use crate::request::{Request, RequestError, VISIBLE_DEVICES};
use crate::runc_call::RuncCall;
use crate::runc_exec::{default_runc, is_executable, same_file, ExecError, RUNC_ENV};
use crate::shim_log::ShimLog;
use crate::spec::{SpecError, SpecFile};
use crate::timestamp::now_rfc3339;

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
    #[error(transparent)]
    Placement(#[from] PlacementError),
    #[error(transparent)]
    State(#[from] StateError),
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
    let mut inventory = gpu::discover(&config.devices.root)?;
    if inventory.gpus.is_empty() && request == (Request::All { explicit: false }) {
        return Ok(Decision {
            runc,
            summary: format!(
                "gpus=none reason=\"{reason}; no NVIDIA GPU under {}\" spec=unchanged",
                config.devices.root.display()
            ),
        });
    }
    let free = match request {
        Request::All { explicit: false } => free_memory(config, &mut inventory),
        _ => FreeMemory::new(),
    };
    // Named GPUs are checked before the lock is taken: a bad request never waits on others.
    let named = match request {
        Request::All { explicit: false } => None,
        _ => Some(request.resolve(raw.as_deref(), &inventory)?),
    };
    let kind = match &named {
        None => Kind::Shared,
        Some(_) if is_ecs_task(&spec.value) => Kind::Reserved,
        Some(_) => Kind::Pinned,
    };
    // The state decides placement under spread/pack or a limit. Otherwise it only counts
    // containers for `gpu-share list`, and a broken state dir must not stop containers.
    let state_decides = named.is_none()
        && (config.sharing.placement != Placement::All || config.sharing.max_per_gpu.is_some());
    let mut state_problem = None;
    let mut state = match state::lock(&config.state.dir) {
        Ok(s) => Some(s),
        Err(e) if !state_decides => {
            state_problem = Some(e.to_string());
            None
        }
        Err(e) => return Err(e.into()),
    };
    let dropped = state.as_mut().map_or(0, |s| s.reconcile());
    let gpus: Vec<&Gpu> = match named {
        Some(gpus) => gpus,
        None => {
            let load = state.as_ref().map(|s| s.load()).unwrap_or_default();
            let chosen = placement::choose(
                config.sharing.placement,
                config.sharing.max_per_gpu,
                &inventory,
                &load,
                &free,
            )?;
            chosen.iter().filter_map(|&i| inventory.gpu(i)).collect()
        }
    };
    // Named GPUs (ECS reservations above all) are given even past sharing.max_per_gpu: the
    // limit steers placement, it does not overrule a scheduler that already decided.
    let hook_exists = is_executable(&config.hook.path);
    let plan = Plan::new(&gpus, &inventory, &config.hook.path, hook_exists);
    let changed = plan.apply(&mut spec.value)?;
    if changed {
        spec.save()?;
    }
    if let Some(state) = state.as_mut() {
        state.record(Entry {
            id: call.container_label(),
            root: runc_root(call),
            gpus: plan.gpus.clone(),
            kind,
            pid: std::process::id() as i32,
            start_time: state::process_start_time(std::process::id() as i32).unwrap_or(0),
            created: now_rfc3339(),
        });
        match state.save() {
            Err(e) if !state_decides => state_problem = Some(e.to_string()),
            other => other?,
        }
        pause_for_tests();
    }
    drop(state);
    let state_note = state_problem
        .map(|p| format!(" state=unrecorded ({p})"))
        .unwrap_or_default();
    let hook = match &plan.hook {
        HookPlan::Add(p) => format!("hook={}", p.display()),
        HookPlan::Missing(p) => format!("hook=none ({} not found; devices only)", p.display()),
    };
    Ok(Decision {
        runc,
        summary: format!(
            "gpus={} kind={} placement={} source={} reason=\"{reason}\" devices={} {hook} spec={} reconciled={dropped}{state_note}",
            plan.visible,
            kind_name(kind),
            config.sharing.placement.as_str(),
            inventory.source.as_str(),
            plan.devices.len(),
            if changed { "updated" } else { "unchanged" }
        ),
    })
}

/// Free memory per GPU from the NVML cache, only where `spread` will use it for ties.
fn free_memory(config: &Config, inventory: &mut gpu::Inventory) -> FreeMemory {
    if config.sharing.placement != Placement::Spread {
        return FreeMemory::new();
    }
    gpu::cache::read(&config.state.dir)
        .map(|c| gpu::cache::overlay(inventory, &c))
        .unwrap_or_default()
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Shared => "shared",
        Kind::Pinned => "pinned",
        Kind::Reserved => "reserved",
    }
}

/// ECS puts its task metadata endpoint in every task container's env; a container of an ECS
/// task that names its GPUs had them reserved by ECS.
fn is_ecs_task(spec: &serde_json::Value) -> bool {
    [
        "ECS_CONTAINER_METADATA_URI_V4",
        "ECS_CONTAINER_METADATA_URI",
    ]
    .iter()
    .any(|k| env_value(spec, k).is_some())
}

/// runc's `--root` for this call, absolute, as the state file keys containers by it.
fn runc_root(call: &RuncCall) -> String {
    let root = call
        .root
        .filter(|r| !r.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(state::RUNC_DEFAULT_ROOT));
    let absolute = if root.is_absolute() {
        root
    } else {
        std::env::current_dir().unwrap_or_default().join(root)
    };
    absolute.display().to_string()
}

/// Debug builds only: hold the placement lock for `GPU_SHARE_TEST_HOLD_LOCK_MS`, so a test can
/// kill a create while it holds the lock.
fn pause_for_tests() {
    #[cfg(debug_assertions)]
    if let Some(ms) = std::env::var("GPU_SHARE_TEST_HOLD_LOCK_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}
