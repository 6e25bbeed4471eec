//! The `create`/`run` path: the I/O of one create, in order, and nothing else.
//!
//! runc → spec → request → inventory → claim → injection → lock → decide → plan → save →
//! record. Each question is answered elsewhere ("which GPUs?" in `placement`, "how does the
//! driver get in?" in `cdi`, "what goes into the spec?" in `plan`, JSON in `spec`); this module
//! only calls them in turn and touches the world between.
//!
//! Everything that can fail fails before the spec is written: the bundle is either left
//! byte-for-byte as it was or replaced whole by the edited spec.

use std::path::{Path, PathBuf};

use crate::capping::Capping;
use crate::caps::CapsError;
use crate::cdi::{self, Injection, Required};
use crate::config::{Config, ConfigError, LogLevel};
use crate::decision::{Decision, Given, Injected, Outcome};
use crate::gpu::{self, devfs::DiscoveryError, Inventory};
use crate::mps::DaemonError;
use crate::placement::state::{self, Entry, Locked, StateError};
use crate::placement::{self, Claim, Decided, MemoryError, PlacementError, SelectError};
use crate::plan::{Driver, Hook, Plan, PlanError};
use crate::request::{Channel, Request, RequestError};
use crate::runc_call::RuncCall;
use crate::runc_exec::{self, ExecError};
use crate::shim_log::ShimLog;
use crate::spec::{SpecError, SpecFile};

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Runc(#[from] ExecError),
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Select(#[from] SelectError),
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    #[error(transparent)]
    Placement(#[from] PlacementError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Cdi(#[from] Required),
    #[error(transparent)]
    Caps(#[from] CapsError),
    #[error(transparent)]
    Memory(#[from] MemoryError),
    #[error(transparent)]
    Mps(#[from] DaemonError),
}

/// Runs the create path and logs the decision (or the failure) to the shim's log.
/// Returns the runc to exec. `channel` is how the shim was started (argv[0]).
pub fn prepare(call: &RuncCall, channel: Channel) -> Result<PathBuf, CreateError> {
    let config = Config::load_for_runtime(&Config::path_from_env())?;
    let log = ShimLog::new(&config.log);
    let id = call.container_label();
    match edit_bundle(call, channel, &config) {
        Ok(decision) => {
            if let Some(rebuilt) = &decision.state_rebuilt {
                log.write(LogLevel::Warn, &format!("create id={id} {rebuilt}"));
            }
            log.write(LogLevel::Info, &format!("create id={id} {decision}"));
            Ok(decision.runc)
        }
        Err(e) => {
            log.write(LogLevel::Error, &format!("create id={id} failed: {e}"));
            Err(e)
        }
    }
}

/// Edits the bundle's spec for the GPUs this container gets.
pub fn edit_bundle(
    call: &RuncCall,
    channel: Channel,
    config: &Config,
) -> Result<Decision, CreateError> {
    let runc = runc_exec::resolve(config.runtime.path.as_deref())?;
    let mut spec = SpecFile::load(&call.bundle_dir())?;
    let request = Request::from_spec(&spec.value, &config.sharing, channel)?;
    // `isolation.mode = "mps"` only: the caps, checked before any lock is taken.
    let capping = Capping::read(&spec.value, config, &request)?;
    let reason = request.reason(config.sharing.default);
    let mut inventory = if request.wants_gpus() {
        gpu::discover(&config.devices.root)?
    } else {
        Inventory::default()
    };
    // Named GPUs are checked before the lock is taken: a bad request never waits on others.
    let claim = placement::claim(&request, &inventory)?;
    if let Claim::Nothing(why) = claim {
        return Ok(Decision::no_gpu(runc, reason, why, config, None));
    }
    // Before the lock: a stale or changed CDI spec is digested without holding up other creates.
    // Its refusal waits for placement: a container that gets no GPU is not refused for CDI.
    let injection = cdi::choose(&config.devices, &config.state.dir, &inventory);
    if claim.reads_free_memory(&config.sharing) || capping.is_some() {
        gpu::cache::fill(&mut inventory, &config.state.dir);
    }
    let load_decides = claim.load_decides(&config.sharing) || capping.is_some();
    let truth = state::Truth::for_create(call.root, &inventory);
    let (mut state, mut unrecorded) = lock_state(config, load_decides, &truth)?;
    let reconciled = state.as_mut().map_or(0, Locked::reconcile);
    let state_rebuilt = state
        .as_ref()
        .and_then(|s| s.rebuilt_from.as_ref())
        .map(ToString::to_string);
    let load = state.as_ref().map(Locked::load).unwrap_or_default();
    let unhealthy = crate::health::gate::for_create(&config.state.dir, &inventory, &config.log);
    let room = match (&capping, &state) {
        (Some(c), Some(s)) => Some(c.room(&inventory, config, &s.assignments)?),
        _ => None,
    };
    let (sharing, room) = (&config.sharing, room.as_ref());
    let decided = placement::decide_within(claim, &inventory, sharing, &load, &unhealthy, room);
    let assignment = match decided? {
        Decided::Gpus(a) => a,
        Decided::Nothing(why) => {
            return Ok(Decision::no_gpu(runc, reason, why, config, state_rebuilt))
        }
    };
    let (driver, injected) = driver_for(injection?, &assignment.gpus, &config.hook.path);
    let mut plan = Plan::new(&assignment, &inventory, driver);
    // Under the lock, so that two creates never both start one daemon; before anything is
    // written, so that a daemon that is down leaves the bundle as it was. A capped assignment
    // holds exactly one GPU (`Room::admit`).
    let mps = match &capping {
        Some(c) => Some(c.client(config, &inventory, assignment.gpus[0])?),
        None => None,
    };
    if let Some(m) = &mps {
        plan = plan.with_mps(m.client.clone());
    }
    // The GPUs the spec holds besides those placed (a privileged spec's nodes) are recorded too.
    // Read before the plan adds the placed ones: the same set, without rereading our own nodes.
    let held = crate::plan::devices::held_gpus(&spec.value, &inventory)?;
    spec.expand(&plan.paths())?;
    let (value, mut appender) = spec.appender();
    let spec_changed = plan.apply_with(value, &mut appender)?;
    // The state is written before the spec: a state that cannot be saved then stops the create
    // with the bundle as it was, and an entry whose spec could not be saved dies with this
    // process (its pid is how `reconcile` knows).
    if let Some(state) = state.as_mut() {
        let id = call.container_label();
        let entry = Entry::for_this_create(id, call.root, &assignment).also_holding(&held);
        state.record(entry.with_caps(capping.as_ref().map(|c| c.caps)));
        match state.save() {
            Err(e) if !load_decides => unrecorded = Some(e.to_string()),
            other => other?,
        }
    }
    if spec_changed {
        match state {
            Some(_) => spec.save_under_lock()?,
            None => spec.save()?,
        }
    }
    // The process becomes runc next: freeing the spec's tree would only cost time.
    std::mem::forget(spec);
    if state.is_some() {
        pause_for_tests();
    }
    // The lock file is close-on-exec: exec'ing runc releases the lock, so unlocking and closing
    // it here would only cost two syscalls (and a failed exec's exit releases it too).
    std::mem::forget(state);
    let given = Given {
        visible: plan.visible().to_owned(),
        kind: assignment.kind,
        placement: config.sharing.placement,
        source: inventory.source,
        devices: plan.devices().len(),
        injected,
        spec_changed,
        reconciled,
        unrecorded,
        mps: mps.as_ref().map(crate::capping::Client::describe),
    };
    // As the spec: the process becomes runc next, and walking these to free them costs time.
    std::mem::forget(plan);
    std::mem::forget(inventory);
    Ok(Decision {
        runc,
        reason,
        outcome: Outcome::Gpus(given),
        state_rebuilt,
    })
}

/// The plan's driver for the GPUs assigned, and how the log shows it.
fn driver_for(injection: Injection, gpus: &[u32], hook_path: &Path) -> (Driver, Injected) {
    match injection {
        Injection::Cdi(resolved) => {
            let (edits, spec) = resolved.for_gpus(gpus);
            (Driver::Cdi(edits), Injected::Cdi { spec })
        }
        Injection::Legacy { why } => {
            let hook = Hook::at(hook_path);
            (Driver::Legacy(hook.clone()), Injected::Legacy { hook, why })
        }
    }
}

/// The placement state under its lock. Where the load does not decide placement, a state that
/// cannot be locked does not stop the container: the reason is kept for the log instead.
fn lock_state(
    config: &Config,
    load_decides: bool,
    truth: &state::Truth,
) -> Result<(Option<Locked>, Option<String>), StateError> {
    match state::lock(&config.state.dir, truth) {
        Ok(s) => Ok((Some(s), None)),
        Err(e) if !load_decides => Ok((None, Some(e.to_string()))),
        Err(e) => Err(e),
    }
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
