//! One sample, start to finish: NVML's figures, each process attributed to its container, and
//! the sample rendered for the sink it goes to. The agent calls `sample_once` every tick and
//! `benches/agent.rs` calls the same function, so what is measured is what runs.
//!
//! Owns the order of the per-sample steps and the sample's timestamp. Never loops, sleeps,
//! prints or sends, and never decides what an error means: that is the agent's.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_cloudwatch::types::MetricDatum;

use super::attribution;
use super::cloudwatch;
use super::emf;
use super::publication::Publication;
use super::records;
use super::sample::{ContainerInfo, Sample};
use super::sampler::{GpuSampler, SampleError};

/// What a sample is rendered as: one per sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Render {
    /// PutMetricData datums.
    Datums,
    /// Embedded Metric Format lines.
    Emf,
    /// The sample as it is; `pretty` for a person reading one sample, one line for a stream.
    Json { pretty: bool },
}

/// One sample, rendered.
#[derive(Debug)]
pub enum Rendered {
    Datums(Vec<MetricDatum>),
    Emf(Vec<String>),
    Json(String),
}

/// What one sample needs, borrowed: the agent keeps ownership across ticks.
pub struct Pipeline<'a> {
    pub sampler: &'a dyn GpuSampler,
    /// The host's root: `<root>/proc/<pid>/cgroup` names a process's container.
    pub root: &'a Path,
    /// What is known of a container beyond its id (its ECS labels, or nothing).
    pub describe: &'a dyn Fn(&str) -> ContainerInfo,
    pub publication: &'a Publication,
    pub render: Render,
}

impl Pipeline<'_> {
    /// Samples NVML, attributes processes to containers, builds the records and renders them.
    pub fn sample_once(&self) -> Result<Rendered, SampleError> {
        let sample = collect(self.sampler, self.root, self.describe)?;
        let p = self.publication;
        Ok(match self.render {
            Render::Datums => Rendered::Datums(cloudwatch::datums(
                &records::records_with(&sample, &p.dimensions, p.task_dimensions),
                sample.timestamp_ms,
                p.storage_resolution,
            )),
            Render::Emf => Rendered::Emf(emf::lines(&sample, p)),
            // Plain structs of strings and numbers: serialising cannot fail, and an empty line
            // is what the agent has always printed were it ever to.
            Render::Json { pretty: true } => {
                Rendered::Json(serde_json::to_string_pretty(&sample).unwrap_or_default())
            }
            Render::Json { pretty: false } => {
                Rendered::Json(serde_json::to_string(&sample).unwrap_or_default())
            }
        })
    }
}

/// Takes one sample: NVML's figures, processes mapped to containers through `<root>/proc`.
pub fn collect(
    sampler: &dyn GpuSampler,
    root: &Path,
    info: impl Fn(&str) -> ContainerInfo,
) -> Result<Sample, SampleError> {
    let (gpus, processes) = sampler.sample()?;
    let (containers, host_processes) =
        attribution::by_container(&processes, |pid| attribution::container_of(root, pid), info);
    Ok(Sample {
        timestamp_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
        gpus,
        containers,
        host_processes,
    })
}
