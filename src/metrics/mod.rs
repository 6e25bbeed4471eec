//! `gpu-share metrics`: what each GPU and each container on it is doing, for CloudWatch.
//!
//! One sample = NVML's per-GPU figures plus its per-process GPU memory and SM utilisation, with
//! every process mapped to the container (and, where dockerd tells it, the ECS task, and where
//! the ECS agent tells it, the task's service) it belongs to.
//!
//! ```text
//! agent ── set-up: Nvml, docker_labels, task_metadata, identity → publication,
//!          cloudwatch::Publisher
//!   └ every tick: pipeline::sample_once
//!        sampler (NVML, process_util cursors) → attribution (/proc, grouping) → sample::Sample
//!        → records (+ task_records) → emf lines | cloudwatch datums | JSON
//! ```
//!
//! This module only names its parts and re-exports the sample's data types; it holds no logic,
//! so no part ever needs to import it back.

pub mod agent;
pub mod attribution;
pub mod cloudwatch;
pub mod docker_labels;
pub mod emf;
pub mod identity;
pub mod mps_caps;
pub mod mps_faults;
pub mod pipeline;
pub mod process_util;
pub mod publication;
pub mod record;
pub mod records;
pub mod sample;
pub mod sampler;
pub mod task_metadata;
pub mod task_records;
pub mod xid;
pub mod xid_records;

pub use sample::{ContainerInfo, ContainerUse, GpuSample, ProcessUse, Sample};
pub use sampler::{GpuSampler, NvmlSampler, SampleError};
