//! The metrics agent behind `gpu-share metrics`: sets up NVML, the dockerd label lookup, the
//! identity and the sink, then takes a sample every `metrics.interval_seconds`, on a fixed
//! rate (tick n is due n intervals after start, so a slow sample does not shift the rest).
//!
//! Owns the set-up, the one async runtime every client runs on, the tick, once vs forever,
//! what an error means (in `--once` it fails the command; in the long-running agent it is
//! logged and the next sample goes on), and the agent's stdout and stderr lines. Never parses
//! the command line or loads the config (the binary does), and never samples, renders or sends
//! by itself: that is `pipeline` and `cloudwatch`.

use std::time::{Duration, Instant};

use aws_sdk_cloudwatch::types::MetricDatum;
use tokio::runtime::Runtime;

use super::cloudwatch::{Buffer, CloudWatchError, Endpoint, Publisher};
use super::docker_labels::DockerLabels;
use super::identity;
use super::mps_caps::CapsByContainer;
use super::pipeline::{Pipeline, Render, Rendered};
use super::publication::Publication;
use super::sampler::{NvmlSampler, SampleError};
use super::task_metadata::TaskServices;
use crate::config::{Config, MetricsSection};
use crate::gpu::nvml::{Nvml, NvmlError};

/// The prefix of the agent's own log lines on stderr.
const LOG: &str = "gpu-share metrics";

/// Where samples go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    /// PutMetricData, through a bounded buffer.
    CloudWatch,
    /// Embedded Metric Format lines on stdout, for the CloudWatch agent.
    Emf,
    /// The sample as it is, on stdout.
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One sample; any error fails the command.
    Once,
    /// Every interval until killed; errors are logged and the agent goes on.
    Forever,
}

/// Why the agent stopped (in `Mode::Forever`, only ever a set-up error).
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Nvml(#[from] NvmlError),
    #[error("async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error(transparent)]
    Sample(#[from] SampleError),
    #[error(transparent)]
    CloudWatch(#[from] CloudWatchError),
}

/// Runs the agent. Returns in `Mode::Once`, or when set-up fails.
pub fn run(config: &Config, sink: Sink, mode: Mode) -> Result<(), AgentError> {
    // Kept for the life of the process: the Xid event thread waits on it too.
    let nvml: &'static Nvml = Box::leak(Box::new(Nvml::load(config.nvml.library.as_os_str())?));
    // One current-thread runtime for every async client (dockerd, IMDS, CloudWatch): the agent
    // does one thing at a time, so more threads or runtimes would only cost memory.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(AgentError::Runtime)?;
    let labels = match DockerLabels::connect(&config.metrics.docker_host, &runtime) {
        Ok(l) => Some(l),
        Err(e) => {
            eprintln!("{LOG}: {e}; containers are reported by id alone");
            None
        }
    };
    let services = TaskServices::new(&config.metrics.task_metadata_endpoint);
    let caps = CapsByContainer::new(config.state.dir.clone());
    let describe = |id: &str| {
        let mut info = labels.as_ref().map(|l| l.describe(id)).unwrap_or_default();
        services.fill(&mut info);
        info.gpu_memory_limit_bytes = caps.memory_limit(id);
        info
    };
    let identity = identity::resolve(&config.metrics, &runtime);
    let publication = Publication::new(&config.metrics, &identity);
    let mut outbox = match sink {
        Sink::CloudWatch => Some(Outbox::new(&runtime, &config.metrics, &publication)),
        Sink::Emf | Sink::Json => None,
    };
    let sampler = NvmlSampler::new(nvml);
    let pipeline = Pipeline {
        sampler: &sampler,
        root: &config.devices.root,
        describe: &describe,
        publication: &publication,
        render: match sink {
            Sink::CloudWatch => Render::Datums,
            Sink::Emf => Render::Emf,
            Sink::Json => Render::Json {
                pretty: mode == Mode::Once,
            },
        },
    };
    let mut xids = super::xid::XidWatch::start(config, nvml);
    let interval = Duration::from_secs(config.metrics.interval_seconds);
    let started = Instant::now();
    let mut tick: u32 = 0;
    loop {
        // Xids first, and whatever the sample does: a GPU that fell off the bus may fail it.
        if let Some(r) = xids.tick(&describe, pipeline.render, &publication) {
            if let Err(e) = deliver(r, outbox.as_mut()) {
                eprintln!("{LOG}: {e}");
            }
        }
        let result = pipeline
            .sample_once()
            .map_err(AgentError::from)
            .and_then(|rendered| deliver(rendered, outbox.as_mut()));
        match (mode, result) {
            (Mode::Once, result) => return result,
            (Mode::Forever, Ok(())) => {}
            // A long-running agent keeps going: the next sample may succeed.
            (Mode::Forever, Err(e)) => eprintln!("{LOG}: {e}"),
        }
        tick += 1;
        let next = interval * tick;
        if let Some(wait) = next.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
    }
}

/// Prints a rendered sample, or hands its datums to CloudWatch.
fn deliver(rendered: Rendered, outbox: Option<&mut Outbox>) -> Result<(), AgentError> {
    match (rendered, outbox) {
        (Rendered::Datums(datums), Some(outbox)) => outbox.send(datums)?,
        // Datums are rendered only for the CloudWatch sink, which always has an outbox.
        (Rendered::Datums(_), None) => {}
        (Rendered::Emf(lines), _) => println!("{}", lines.join("\n")),
        (Rendered::Json(text), _) => println!("{text}"),
    }
    Ok(())
}

/// The CloudWatch sink: the publisher, its buffer, and how many drops have been told.
struct Outbox<'rt> {
    publisher: Publisher<'rt>,
    buffer: Buffer,
    /// As configured, for the notice (the buffer holds at least one datum whatever it says).
    capacity: usize,
    reported_drops: u64,
}

impl<'rt> Outbox<'rt> {
    fn new(runtime: &'rt Runtime, config: &MetricsSection, publication: &Publication) -> Self {
        let endpoint = Endpoint {
            url: config.endpoint_url.clone(),
            region: config.region.clone(),
        };
        Outbox {
            publisher: Publisher::new(runtime, &endpoint, &publication.namespace),
            buffer: Buffer::new(config.buffer_max_datums),
            capacity: config.buffer_max_datums,
            reported_drops: 0,
        }
    }

    /// Buffers the datums, says so when older ones had to go, and flushes.
    fn send(&mut self, datums: Vec<MetricDatum>) -> Result<(), CloudWatchError> {
        self.buffer.push(datums);
        if self.buffer.dropped > self.reported_drops {
            eprintln!(
                "{LOG}: buffer full ({} datums): {} oldest datums dropped so far",
                self.capacity, self.buffer.dropped
            );
            self.reported_drops = self.buffer.dropped;
        }
        self.publisher.flush(&mut self.buffer).map(|_sent| ())
    }
}
