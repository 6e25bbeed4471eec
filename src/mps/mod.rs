//! MPS control daemons gpu-share owns: one per (GPU, cap class), whose limits a container
//! cannot lift (docs/isolation.md).
//!
//! `control` runs `nvidia-cuda-mps-control` (daemon or front-end) with a deadline; `daemon`
//! names a daemon, starts it with its limits, asks whether it answers and stops it;
//! `defaults` starts the default daemon on each GPU; `ready` is the create path's cheap check
//! (and start on first use) of one container's daemon. This
//! module never edits a spec (that is `plan/`) and never decides which GPU a container gets
//! (that is `placement/`); it only talks to daemons under `isolation.dir`.

mod control;
mod daemon;
mod defaults;
mod ready;

pub use control::ControlError;
pub use daemon::{
    owned, Daemon, DaemonError, Limits, Started, Stopped, CONTROL_SOCKET, PID_FILE, UNIT,
};
pub use defaults::{start_defaults, DefaultsError};
pub use ready::{Ready, FRESH};
