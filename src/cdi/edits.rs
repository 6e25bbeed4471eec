//! CDI `containerEdits` as plain data: the shapes a CDI spec gives them in, which the digest
//! (`packed`) keeps field for field and the plan applies.
//!
//! A leaf: it imports nothing else of the crate's, so `cdi` (which reads specs) and `plan`
//! (which applies edits) can both use it. Only the fields create applies are kept; a spec's
//! other fields are read past, never refused.

use serde::Deserialize;

use crate::gpu::DeviceNode;

/// One `containerEdits` block, as the spec gives it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ContainerEdits {
    pub env: Vec<String>,
    pub device_nodes: Vec<CdiNode>,
    pub mounts: Vec<CdiMount>,
    pub hooks: Vec<CdiHook>,
}

/// A `deviceNodes` entry. `path` is where the container sees it; `hostPath` (else `path`) is
/// the node on the host. Type and numbers, when absent, are the host node's.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CdiNode {
    pub path: String,
    #[serde(default)]
    pub host_path: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub major: Option<u64>,
    #[serde(default)]
    pub minor: Option<u64>,
    #[serde(default)]
    pub file_mode: Option<u32>,
    #[serde(default)]
    pub uid: Option<u32>,
    #[serde(default)]
    pub gid: Option<u32>,
}

/// A `mounts` entry.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CdiMount {
    pub host_path: String,
    pub container_path: String,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub options: Vec<String>,
}

/// A `hooks` entry: `hookName` is the OCI stage (`createContainer`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CdiHook {
    pub hook_name: String,
    pub path: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub timeout: Option<i64>,
}

/// The OCI hook stages a CDI hook may name: the spec's own.
pub use crate::spec::HOOK_STAGES;

/// What one container gets through CDI, ready to apply: its device nodes with their numbers
/// (filled from the host where the spec left them out), and the spec's mounts, hooks and env.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Injected {
    pub nodes: Vec<DeviceNode>,
    pub mounts: Vec<CdiMount>,
    pub hooks: Vec<CdiHook>,
    pub env: Vec<String>,
}
