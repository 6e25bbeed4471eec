//! What a place dockerd reads config from can do, and the draft of the files that planning
//! edits in memory.
//!
//! `daemon_json.rs`, `sysconfig.rs` and `runtimes_dir.rs` each implement [`Place`]; `plan.rs`
//! picks one per [`Location`](super::model::Location) and calls it, once for the runtimes and
//! once for the default. Nothing here touches the filesystem: a place changes the draft, and the
//! runtimes directory, whose entries are files of their own, adds edits to it.

use std::path::Path;

use serde_json::{Map, Value};

use super::model::{Current, Edit, Paths, Previous, Record};
use super::options::Options;

/// One place dockerd reads its runtimes, and maybe its default runtime, from.
pub(super) trait Place {
    /// How `nvidia` is defined here now.
    fn nvidia(&self, draft: &Draft) -> Previous;
    /// The default runtime named here now.
    fn default_runtime(&self, draft: &Draft) -> Option<String>;
    /// Whether runtimes here are paths written into a file (daemon.json, a flag) rather than
    /// entries of their own. Then `nvidia`'s path must be a link of that name made elsewhere
    /// (`channel.rs`): dockerd runs a runtime with argv[0] = its path, and the runtime tells
    /// `nvidia` by argv[0]'s file name.
    fn names_runtimes_by_path(&self) -> bool;
    /// Defines `gpu-share` here as `runtime` and `nvidia` as `nvidia`: the channel link where
    /// runtimes are named by path, else `runtime` itself.
    fn set_runtimes(&self, draft: &mut Draft, runtime: &Path, nvidia: &Path);
    /// Makes `gpu-share` the default here.
    fn set_default(&self, draft: &mut Draft);
    /// Drops `gpu-share` and puts `nvidia` back as `previous` says it was.
    fn restore_runtimes(&self, draft: &mut Draft, record: &Record);
    /// Puts the default back to `previous`, or to none.
    fn restore_default(&self, draft: &mut Draft, previous: Option<&str>);
}

/// The files as planning is changing them: daemon.json's object and the sysconfig flags, edited
/// in memory and compared with [`Current`] at the end, and the edits of the runtimes directory.
pub(super) struct Draft<'a> {
    pub(super) paths: &'a Paths,
    pub(super) current: &'a Current,
    /// daemon.json's settings (empty where there is no file).
    pub(super) daemon: Map<String, Value>,
    /// The sysconfig file's flags, where there is one.
    pub(super) options: Option<Options>,
    /// Edits other than the rewrite of daemon.json or the sysconfig file, in order.
    pub(super) edits: Vec<Edit>,
}

impl<'a> Draft<'a> {
    pub(super) fn new(paths: &'a Paths, current: &'a Current) -> Draft<'a> {
        Draft {
            paths,
            current,
            daemon: current.daemon.clone().unwrap_or_default(),
            options: current.sysconfig.as_deref().map(Options::parse),
            edits: Vec::new(),
        }
    }
}
