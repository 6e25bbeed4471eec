//! The configuration's sections: one struct per `[section]`, its keys and their defaults.
//!
//! Plain data. Reading the file and checking the values across keys is `config`'s job.

use std::path::PathBuf;

use serde::de::IgnoredAny;
use serde::Deserialize;

use super::size::ByteSize;

/// The file as a create reads it: the sections it uses, and the others only as TOML.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeSections {
    pub runtime: RuntimeSection,
    pub devices: DevicesSection,
    pub sharing: SharingSection,
    pub hook: HookSection,
    pub log: LogSection,
    pub state: StateSection,
    pub isolation: IsolationSection,
    nvml: IgnoredAny,
    metrics: IgnoredAny,
    health: IgnoredAny,
}

/// `gpu-share metrics`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    /// Seconds between samples; under 60 publishes at 1-second storage resolution.
    pub interval_seconds: u64,
    pub namespace: String,
    /// Dimensions, where known; unset ones are left out.
    pub instance_id: Option<String>,
    pub auto_scaling_group_name: Option<String>,
    pub cluster_name: Option<String>,
    /// dockerd's API, for the ECS labels of the containers using a GPU.
    pub docker_host: String,
    /// CloudWatch endpoint override (else `AWS_ENDPOINT_URL`, else the region's).
    pub endpoint_url: Option<String>,
    /// Region override (else the SDK's default chain: env, profile, instance metadata).
    pub region: Option<String>,
    /// Datums kept while CloudWatch cannot be reached; past it the oldest are dropped.
    pub buffer_max_datums: usize,
    /// Look up unset dimensions: instance metadata (instance id, group) and the ECS agent
    /// (cluster).
    pub discover: bool,
    /// Instance metadata endpoint override (else the SDK's: 169.254.169.254 or its env).
    pub imds_endpoint: Option<String>,
    /// The ECS agent's introspection API.
    pub ecs_agent_endpoint: String,
    /// The ECS agent's task metadata server as the host reaches it, for each task's service;
    /// empty: never asked.
    pub task_metadata_endpoint: String,
    /// Per-task series too (`TaskArn` or `ContainerId` as a dimension: one series per task ever
    /// run); off, tasks are published per service and task family only.
    pub task_dimensions: bool,
}

impl Default for MetricsSection {
    fn default() -> Self {
        MetricsSection {
            interval_seconds: 60,
            namespace: "GPUShare".to_owned(),
            instance_id: None,
            auto_scaling_group_name: None,
            cluster_name: None,
            docker_host: "unix:///var/run/docker.sock".to_owned(),
            endpoint_url: None,
            region: None,
            buffer_max_datums: 10_000,
            discover: true,
            imds_endpoint: None,
            ecs_agent_endpoint: "http://localhost:51678".to_owned(),
            task_metadata_endpoint: "http://127.0.0.1:51679".to_owned(),
            task_dimensions: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NvmlSection {
    /// The NVML library: a name for the dynamic loader or a path. Only the `gpu-share` commands
    /// load it, never the runtime's create path.
    pub library: PathBuf,
}

impl Default for NvmlSection {
    fn default() -> Self {
        NvmlSection {
            library: PathBuf::from("libnvidia-ml.so.1"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeSection {
    /// The real runc. Unset: `GPU_SHARE_RUNC`, else `runc` from PATH.
    pub path: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DevicesSection {
    /// The root under which `dev/nvidia*` (and the CDI specs, `etc/cdi`, `var/run/cdi`) are
    /// looked for.
    pub root: PathBuf,
    /// How the driver (libraries, hooks) reaches the container.
    pub injection: InjectionMode,
}

impl Default for DevicesSection {
    fn default() -> Self {
        DevicesSection {
            root: PathBuf::from("/"),
            injection: InjectionMode::Auto,
        }
    }
}

/// `devices.injection`: NVIDIA's CDI spec, or NVIDIA's legacy prestart hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InjectionMode {
    /// CDI where a spec covers every GPU discovered, else the legacy hook (and the log says why).
    #[default]
    Auto,
    /// CDI, or the create fails.
    Cdi,
    /// The legacy hook only.
    Legacy,
}

impl InjectionMode {
    pub fn as_str(self) -> &'static str {
        match self {
            InjectionMode::Auto => "auto",
            InjectionMode::Cdi => "cdi",
            InjectionMode::Legacy => "legacy",
        }
    }
}

/// What a container that does not set `NVIDIA_VISIBLE_DEVICES` gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DefaultGpus {
    /// Every GPU: the sharing behaviour.
    #[default]
    All,
    /// No GPU: containers opt in with `NVIDIA_VISIBLE_DEVICES`.
    None,
}

impl DefaultGpus {
    pub fn as_str(self) -> &'static str {
        match self {
            DefaultGpus::All => "all",
            DefaultGpus::None => "none",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SharingSection {
    pub default: DefaultGpus,
    /// Which GPUs a container that names none gets.
    pub placement: Placement,
    /// Admission limit: live containers per GPU past which a create fails.
    pub max_per_gpu: Option<u32>,
    /// Whether a container's own `NVIDIA_VISIBLE_DEVICES` may name GPUs.
    pub container_requests: ContainerRequests,
    /// Who else may use a GPU that ECS reserved for a task.
    pub reserved: Reserved,
}

/// What a container's own `NVIDIA_VISIBLE_DEVICES` may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerRequests {
    /// It names GPUs (indices, UUIDs, `all`), as with NVIDIA's runtime.
    #[default]
    Allow,
    /// It can only opt out (`none`, `void`, empty); any other value is ignored, and placement
    /// decides.
    Deny,
}

impl ContainerRequests {
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerRequests::Allow => "allow",
            ContainerRequests::Deny => "deny",
        }
    }
}

/// Who may use a GPU that ECS reserved for a task (through the trusted `nvidia` runtime).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reserved {
    /// Anyone: placement only prefers other GPUs while they have room.
    #[default]
    Shared,
    /// Containers of the same ECS task (its sidecars) only.
    Task,
    /// Nobody else.
    Exclusive,
}

impl Reserved {
    pub fn as_str(self) -> &'static str {
        match self {
            Reserved::Shared => "shared",
            Reserved::Task => "task",
            Reserved::Exclusive => "exclusive",
        }
    }
}

/// How containers that name no GPU are placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Placement {
    /// Every GPU.
    #[default]
    All,
    /// The one GPU with the fewest live containers.
    Spread,
    /// The lowest-index GPU under `max_per_gpu`.
    Pack,
}

impl Placement {
    pub fn as_str(self) -> &'static str {
        match self {
            Placement::All => "all",
            Placement::Spread => "spread",
            Placement::Pack => "pack",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateSection {
    /// Where the live GPU assignment (and its lock) is kept.
    pub dir: PathBuf,
}

impl Default for StateSection {
    fn default() -> Self {
        StateSection {
            dir: PathBuf::from("/run/gpu-share"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HookSection {
    /// The NVIDIA prestart hook that mounts the driver libraries.
    pub path: PathBuf,
}

impl Default for HookSection {
    fn default() -> Self {
        HookSection {
            path: PathBuf::from("/usr/bin/nvidia-container-runtime-hook"),
        }
    }
}

/// How much the shim writes to its own log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Off,
    Error,
    Warn,
    #[default]
    Info,
    Debug,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    pub path: PathBuf,
    pub level: LogLevel,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            path: PathBuf::from("/var/log/gpu-share-runtime.log"),
            level: LogLevel::Info,
        }
    }
}

/// How a container's use of its GPUs is capped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IsolationMode {
    /// No caps: containers share the GPU as they would with NVIDIA's runtime.
    #[default]
    None,
    /// Caps held by MPS control daemons gpu-share owns (docs/isolation.md).
    Mps,
}

impl IsolationMode {
    pub fn as_str(self) -> &'static str {
        match self {
            IsolationMode::None => "none",
            IsolationMode::Mps => "mps",
        }
    }
}

/// `[isolation]`: caps a container cannot lift (docs/isolation.md).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IsolationSection {
    pub mode: IsolationMode,
    /// `nvidia-cuda-mps-control`: a name looked up on `PATH`, or a path.
    pub control: PathBuf,
    /// Where each daemon gpu-share owns keeps its pipe and log directories.
    pub dir: PathBuf,
    /// The memory cap of a container that asks for none.
    pub memory: Option<ByteSize>,
    /// The compute cap (active thread percentage) of a container that asks for none.
    pub compute_percent: Option<u8>,
    /// The most a container may ask for; above it, create is refused.
    pub max_memory: Option<ByteSize>,
    pub max_compute_percent: Option<u8>,
    /// Memory on each GPU no cap may take (admission: the caps on a GPU sum to at most its
    /// memory less this).
    pub reserved_memory: ByteSize,
    /// How long a daemon has to answer one control command before it counts as down.
    pub answer_timeout_ms: u64,
}

impl Default for IsolationSection {
    fn default() -> Self {
        IsolationSection {
            mode: IsolationMode::None,
            control: PathBuf::from("nvidia-cuda-mps-control"),
            dir: PathBuf::from("/run/gpu-share/mps"),
            memory: None,
            compute_percent: None,
            max_memory: None,
            max_compute_percent: None,
            reserved_memory: ByteSize(0),
            answer_timeout_ms: 2000,
        }
    }
}
