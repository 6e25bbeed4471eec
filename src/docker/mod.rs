//! Registering gpu-share-runtime in dockerd: `gpu-share configure docker` / `unconfigure docker`.
//!
//! The runtime is registered as `gpu-share` and made the default, and the runtime named `nvidia`
//! (which the ECS agent asks for, for tasks that reserve GPUs) is pointed at it too. What was
//! there before is kept in a record file so `unconfigure` puts it back.
//!
//! # The three places
//! dockerd is configured one of three ways on ECS hosts, and a setting given both as a flag and
//! in daemon.json stops dockerd from starting, so each setting is changed where it already is.
//! One module per place knows how to read its settings, set gpu-share there and put back what
//! the record says:
//! - `runtimes_dir.rs`: the ECS-optimized AMIs' docker unit turns every executable in
//!   `/etc/docker-runtimes.d/` into `--add-runtime NAME=PATH` (and adds `OPTIONS` from
//!   `/etc/sysconfig/docker`);
//! - `sysconfig.rs`: plain `--add-runtime` / `--default-runtime` flags in `OPTIONS`
//!   (`options.rs` parses and renders that line);
//! - `daemon_json.rs`: `/etc/docker/daemon.json` (`runtimes`, `default-runtime`).
//!
//! # How the runtime tells `nvidia` apart
//! dockerd runs a runtime with argv[0] = its configured path, so `nvidia`'s path is always a link
//! whose file name is `nvidia`, pointing at the runtime: the runtimes directory's own `nvidia`
//! entry, or, where daemon.json or a flag names runtimes by path, `<channel dir>/nvidia`
//! (`channel.rs`, default dir [`DEFAULT_CHANNEL_DIR`]), which unconfigure removes again.
//!
//! # The flow
//! 1. [`read_current`] (`read.rs`, the only module that reads files) gathers everything into a
//!    [`Current`].
//! 2. [`plan_configure`] / [`plan_unconfigure`] (`plan.rs`, pure) pick where the runtimes and
//!    the default live and let that place change an in-memory draft of the files (`place.rs`);
//!    out come the [`Edit`]s and, for configure, the [`Record`].
//! 3. [`describe()`] (`describe.rs`) renders the edits as the diff a person sees.
//! 4. [`apply()`] (`apply.rs`, the only module that writes files) carries them out, each file
//!    replaced atomically (through a symlink, mode and owner kept), all or none: the record is
//!    written first, and a failed edit puts back every path changed before it.
//!
//! The record keeps daemon.json's and the sysconfig file's original bytes, so unconfigure puts
//! back exactly what was there while a file is still as configure left it; a file changed since
//! is undone setting by setting instead.
//!
//! The types they share are in `model.rs`, which imports none of them.

mod apply;
mod channel;
mod daemon_json;
mod describe;
mod model;
mod options;
mod place;
mod plan;
mod read;
mod runtimes_dir;
pub mod sysconfig;

pub use apply::apply;
pub use describe::describe;
pub use model::{
    Current, DockerConfigError, Edit, Entry, Location, Original, Paths, Previous, Record,
    DEFAULT_CHANNEL_DIR, DEFAULT_DAEMON_JSON, DEFAULT_RECORD, DEFAULT_RUNTIMES_DIR,
    DEFAULT_SYSCONFIG, NAME, NVIDIA,
};
pub use plan::{plan_configure, plan_unconfigure};
pub use read::read_current;
