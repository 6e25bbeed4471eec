//! What goes into the spec: the edits one container gets, as plain data, and applying them.
//!
//! A `Plan` is a list of `Edit`s, each owned by one file here (`devices`, `cgroup_rules`, `env`,
//! `hook`, `cdi`). The driver reaches the container one of two ways (`Driver`): NVIDIA's legacy
//! hook, or a CDI spec's edits (its device nodes through `devices`/`cgroup_rules`, the rest
//! through `cdi`); never both. Every edit owns one part of the spec and only appends to it or sets one entry, so
//! every field it does not own stays exactly as it was, known to oci-spec or not. Each is
//! idempotent: what is already there (docker's `--gpus` hook, a device, a rule) is not added
//! again, so editing twice gives the same spec as editing once.
//!
//! Pure: a plan is built from an `Assignment` and the inventory, and applied to a JSON value.
//! Each entry an edit adds is rendered once as JSON text (`build`); where it goes, built into
//! the value or kept as text for the write, is `spec::Appender`'s. It never decides which GPUs
//! (that is `placement`) and never reads or writes a file.

mod build;
pub mod cdi;
pub mod cgroup_rules;
pub mod devices;
pub mod env;
pub mod hook;
pub mod mps;

use serde_json::{Map, Value};

use crate::cdi::edits::{CdiHook, CdiMount, Injected};
use crate::gpu::{DeviceNode, Inventory};
use crate::placement::Assignment;
use crate::request::VISIBLE_DEVICES;
use crate::spec::{as_object, Appender, SpecPath};

pub use build::PlanError;
pub use hook::Hook;

/// One change to the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// `linux.devices`: these nodes.
    Devices(Vec<DeviceNode>),
    /// `linux.resources.devices`: an allow rule for each of these nodes.
    CgroupRules(Vec<DeviceNode>),
    /// `process.env`: `name=value`.
    Env { name: &'static str, value: String },
    /// `hooks.prestart`: the NVIDIA hook at this path.
    Hook(std::path::PathBuf),
    /// `isolation.mode = "mps"`: the container is a client of this daemon only (`mps`).
    Mps(mps::MpsClient),
    /// A CDI spec's mounts, hooks and env.
    Cdi {
        mounts: Vec<CdiMount>,
        hooks: Vec<CdiHook>,
        env: Vec<String>,
    },
}

/// How the driver's libraries and tools reach the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Driver {
    /// NVIDIA's legacy prestart hook, where the host has it; the inventory's nodes.
    Legacy(Hook),
    /// What NVIDIA's CDI spec gives the assigned GPUs, nodes included.
    Cdi(Injected),
}

/// The edits for one container, in the order they are applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub edits: Vec<Edit>,
}

impl Plan {
    /// The plan for `assignment` (decided, never empty) on `inventory`. Legacy: its GPU nodes
    /// and the control nodes, their cgroup rules, `NVIDIA_VISIBLE_DEVICES`, and the hook where
    /// the host has it. CDI: the spec's nodes for those GPUs, their cgroup rules,
    /// `NVIDIA_VISIBLE_DEVICES`, and the spec's mounts, hooks and env.
    pub fn new(assignment: &Assignment, inventory: &Inventory, driver: Driver) -> Plan {
        let visible = Edit::Env {
            name: VISIBLE_DEVICES,
            value: env::visible_value(&assignment.gpus),
        };
        let hook = match driver {
            Driver::Legacy(hook) => hook,
            Driver::Cdi(cdi) => {
                let edits = vec![
                    Edit::Devices(cdi.nodes.clone()),
                    Edit::CgroupRules(cdi.nodes),
                    visible,
                    Edit::Cdi {
                        mounts: cdi.mounts,
                        hooks: cdi.hooks,
                        env: cdi.env,
                    },
                ];
                return Plan { edits };
            }
        };
        let mut nodes: Vec<DeviceNode> = assignment
            .gpus
            .iter()
            .filter_map(|&i| inventory.gpu(i))
            .map(|g| g.node.clone())
            .collect();
        nodes.extend(inventory.controls.iter().cloned());
        let mut edits = vec![
            Edit::Devices(nodes.clone()),
            Edit::CgroupRules(nodes),
            visible,
        ];
        if let Hook::Present(path) = hook {
            edits.push(Edit::Hook(path));
        }
        Plan { edits }
    }

    /// The plan, with the container made a client of `client`'s daemon, last.
    pub fn with_mps(mut self, client: mps::MpsClient) -> Plan {
        self.edits.push(Edit::Mps(client));
        self
    }

    /// Applies every edit to `spec`, in order, its new entries built as `Value`s. Returns
    /// whether anything changed.
    pub fn apply(&self, spec: &mut Value) -> Result<bool, PlanError> {
        self.apply_with(spec, &mut Appender::Values)
    }

    /// [`Plan::apply`], with the new entries going where `to` puts them: a create keeps them as
    /// text (`SpecFile::appender`), which writes the same spec.
    pub fn apply_with(&self, spec: &mut Value, to: &mut Appender<'_>) -> Result<bool, PlanError> {
        let root = as_object(spec, "the document")?;
        to.reserve(self.edits.iter().map(Edit::added_len).sum());
        let mut changed = false;
        for edit in &self.edits {
            changed |= edit.apply(root, to)?;
        }
        Ok(changed)
    }

    /// The spec paths the edits read or write, for `SpecFile::expand` before [`Plan::apply`].
    pub fn paths(&self) -> Vec<SpecPath> {
        let mut paths: Vec<SpecPath> = Vec::with_capacity(8);
        for edit in &self.edits {
            for path in edit.paths() {
                if !paths.contains(path) {
                    paths.push(path);
                }
            }
        }
        paths
    }

    /// The device nodes the container gets.
    pub fn devices(&self) -> &[DeviceNode] {
        self.edits
            .iter()
            .find_map(|e| match e {
                Edit::Devices(nodes) => Some(nodes.as_slice()),
                _ => None,
            })
            .unwrap_or_default()
    }

    /// The `NVIDIA_VISIBLE_DEVICES` value written to the container.
    pub fn visible(&self) -> &str {
        self.edits
            .iter()
            .find_map(|e| match e {
                Edit::Env { name, value } if *name == VISIBLE_DEVICES => Some(value.as_str()),
                _ => None,
            })
            .unwrap_or_default()
    }
}

impl Edit {
    /// What this edit reads or writes (`spec::PARSED`): a new edit declares its paths here.
    fn paths(&self) -> &'static [SpecPath] {
        use crate::spec::{HOOKS, LINUX_DEVICES, LINUX_RESOURCES, MOUNTS, PROCESS_ENV};
        match self {
            Edit::Devices(_) => &[LINUX_DEVICES],
            Edit::CgroupRules(_) => &[LINUX_RESOURCES],
            Edit::Env { .. } => &[PROCESS_ENV],
            Edit::Hook(_) => &[HOOKS],
            Edit::Cdi { .. } => &[MOUNTS, HOOKS, PROCESS_ENV],
            Edit::Mps(_) => &[MOUNTS, PROCESS_ENV],
        }
    }

    /// About how many bytes of entries this edit adds (a node's entry is about 90, its rule's
    /// about 65), so that what a create adds is written into one buffer.
    fn added_len(&self) -> usize {
        match self {
            Edit::Devices(nodes) => 112 * nodes.len(),
            Edit::CgroupRules(nodes) => 80 * nodes.len(),
            Edit::Env { .. } => 0,
            Edit::Hook(path) => 128 + 2 * path.as_os_str().len(),
            Edit::Mps(_) => 512,
            Edit::Cdi { mounts, hooks, .. } => cdi::added_len(mounts, hooks),
        }
    }

    fn apply(
        &self,
        root: &mut Map<String, Value>,
        to: &mut Appender<'_>,
    ) -> Result<bool, PlanError> {
        match self {
            Edit::Devices(nodes) => devices::add(root, nodes, to),
            Edit::CgroupRules(nodes) => cgroup_rules::add(root, nodes, to),
            Edit::Env { name, value } => Ok(env::set(root, name, value)?),
            Edit::Hook(path) => hook::add(root, path, to),
            Edit::Mps(client) => mps::apply(root, client, to),
            Edit::Cdi { mounts, hooks, env } => Ok(cdi::add_mounts(root, mounts, to)?
                | cdi::add_hooks(root, hooks, to)?
                | cdi::add_env(root, env)?),
        }
    }
}

#[cfg(test)]
mod tests;
