//! Publishing to CloudWatch with `PutMetricData` (official AWS SDK for Rust).
//!
//! Credentials and region come from the SDK's default chain, so an instance role just works; an
//! endpoint override (config `metrics.endpoint_url` or `AWS_ENDPOINT_URL`) points it elsewhere,
//! a local server in the tests. Datums wait in a bounded buffer: while CloudWatch cannot be
//! reached the agent keeps sampling, drops the oldest datums past the bound (and counts them),
//! and retries with exponential backoff; what is buffered is sent once it answers again.
//!
//! Owns the datum format, the buffer and its drop policy, the backoff, and how CloudWatch is
//! reached (`Endpoint`). Never builds its own async runtime (it runs on the agent's) and never
//! logs: a failed attempt is returned, and the agent decides what it means.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use aws_sdk_cloudwatch::error::{DisplayErrorContext, SdkError};
use aws_sdk_cloudwatch::operation::put_metric_data::PutMetricDataError;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use aws_sdk_cloudwatch::Client;
use tokio::runtime::Runtime;

use super::publication::StorageResolution;
use super::records::Record;

/// PutMetricData takes at most 1000 datums a request.
pub const MAX_BATCH: usize = 1000;
const MIN_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// A PutMetricData attempt failed; its datums stay buffered.
#[derive(Debug, thiserror::Error)]
pub enum CloudWatchError {
    #[error(
        "PutMetricData failed ({}); {buffered} datums buffered, next try in {} s",
        DisplayErrorContext(.source.as_ref()),
        .retry_in.as_secs()
    )]
    Put {
        // Boxed: the SDK's error is large, and this travels in every `Result` up to the agent.
        source: Box<SdkError<PutMetricDataError>>,
        buffered: usize,
        retry_in: Duration,
    },
}

/// Where PutMetricData goes: only this sink needs it (what it publishes is the `Publication`,
/// which EMF reads too). Unset fields fall back to the SDK's default chain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Endpoint {
    /// An endpoint override (else `AWS_ENDPOINT_URL`, else the region's).
    pub url: Option<String>,
    pub region: Option<String>,
}

/// The datums for records of one sample: one per metric per dimension set.
pub fn datums(
    records: &[Record],
    timestamp_ms: u64,
    resolution: StorageResolution,
) -> Vec<MetricDatum> {
    let storage_resolution = resolution.seconds();
    let mut out = Vec::new();
    for r in records {
        for set in &r.dimension_sets {
            let dims: Vec<Dimension> = set
                .iter()
                .filter_map(|k| r.dimensions.iter().find(|(name, _)| name == k))
                .map(|(k, v)| Dimension::builder().name(k).value(v).build())
                .collect();
            for m in &r.metrics {
                let Some(value) = m.value.as_f64() else {
                    continue;
                };
                out.push(
                    MetricDatum::builder()
                        .metric_name(m.name)
                        .unit(StandardUnit::from(m.unit))
                        .value(value)
                        .timestamp(DateTime::from_millis(timestamp_ms as i64))
                        .storage_resolution(storage_resolution)
                        .set_dimensions(Some(dims.clone()))
                        .build(),
                );
            }
        }
    }
    out
}

/// Datums not yet accepted, oldest first, never more than `capacity`.
#[derive(Debug)]
pub struct Buffer {
    capacity: usize,
    queue: VecDeque<MetricDatum>,
    /// Datums dropped because the buffer was full, since the agent started.
    pub dropped: u64,
}

impl Buffer {
    pub fn new(capacity: usize) -> Buffer {
        Buffer {
            capacity: capacity.max(1),
            queue: VecDeque::new(),
            dropped: 0,
        }
    }

    pub fn push(&mut self, datums: Vec<MetricDatum>) {
        for d in datums {
            if self.queue.len() == self.capacity {
                self.queue.pop_front();
                self.dropped += 1;
            }
            self.queue.push_back(d);
        }
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// The oldest batch, still in the buffer.
    fn batch(&self) -> Vec<MetricDatum> {
        self.queue.iter().take(MAX_BATCH).cloned().collect()
    }

    fn accepted(&mut self, n: usize) {
        self.queue.drain(..n.min(self.queue.len()));
    }
}

/// Sends buffered datums, backing off after failures, on the agent's runtime.
pub struct Publisher<'rt> {
    runtime: &'rt Runtime,
    client: Client,
    namespace: String,
    failures: u32,
    next_attempt: Instant,
}

impl<'rt> Publisher<'rt> {
    /// A client for `endpoint` that publishes under `namespace`. Nothing is sent yet.
    pub fn new(runtime: &'rt Runtime, endpoint: &Endpoint, namespace: &str) -> Publisher<'rt> {
        let shared = runtime.block_on(async {
            let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
                .timeout_config(
                    aws_config::timeout::TimeoutConfig::builder()
                        .operation_timeout(Duration::from_secs(20))
                        .build(),
                );
            if let Some(r) = &endpoint.region {
                loader = loader.region(aws_config::Region::new(r.clone()));
            }
            loader.load().await
        });
        let mut config = aws_sdk_cloudwatch::config::Builder::from(&shared);
        if let Some(url) = &endpoint.url {
            config = config.endpoint_url(url);
        }
        Publisher {
            runtime,
            client: Client::from_conf(config.build()),
            namespace: namespace.to_owned(),
            failures: 0,
            next_attempt: Instant::now(),
        }
    }

    /// Sends what the buffer holds, batch by batch, unless backing off. Returns the error of a
    /// failed attempt (the datums stay buffered).
    pub fn flush(&mut self, buffer: &mut Buffer) -> Result<usize, CloudWatchError> {
        if Instant::now() < self.next_attempt {
            return Ok(0);
        }
        let mut sent = 0;
        while !buffer.is_empty() {
            let batch = buffer.batch();
            let n = batch.len();
            let result = self.runtime.block_on(
                self.client
                    .put_metric_data()
                    .namespace(&self.namespace)
                    .set_metric_data(Some(batch))
                    .send(),
            );
            match result {
                Ok(_) => {
                    buffer.accepted(n);
                    sent += n;
                    self.failures = 0;
                }
                Err(e) => {
                    self.failures = self.failures.saturating_add(1);
                    let backoff = MIN_BACKOFF
                        .saturating_mul(1 << self.failures.min(9))
                        .min(MAX_BACKOFF);
                    self.next_attempt = Instant::now() + backoff;
                    return Err(CloudWatchError::Put {
                        source: Box::new(e),
                        buffered: buffer.len(),
                        retry_in: backoff,
                    });
                }
            }
        }
        Ok(sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::records::Metric;
    use serde_json::json;

    fn record() -> Record {
        Record {
            dimensions: vec![
                ("InstanceId".into(), "i-1".into()),
                ("AutoScalingGroupName".into(), "asg".into()),
            ],
            dimension_sets: vec![
                vec!["InstanceId".into(), "AutoScalingGroupName".into()],
                vec!["AutoScalingGroupName".into()],
            ],
            metrics: vec![
                Metric {
                    name: "GPUUtilization",
                    unit: "Percent",
                    value: json!(42.5),
                },
                Metric {
                    name: "GPUCount",
                    unit: "Count",
                    value: json!(4),
                },
            ],
            properties: vec![],
        }
    }

    #[test]
    fn one_datum_per_metric_per_dimension_set() {
        let d = datums(&[record()], 1_000, StorageResolution::High);
        assert_eq!(d.len(), 4);
        assert_eq!(d[0].metric_name(), Some("GPUUtilization"));
        assert_eq!(d[0].value(), Some(42.5));
        assert_eq!(d[0].unit(), Some(&StandardUnit::Percent));
        assert_eq!(d[0].storage_resolution(), Some(1));
        assert_eq!(d[0].dimensions().len(), 2);
        assert_eq!(d[2].metric_name(), Some("GPUUtilization"));
        let only: Vec<(&str, &str)> = d[2]
            .dimensions()
            .iter()
            .map(|x| (x.name().unwrap(), x.value().unwrap()))
            .collect();
        assert_eq!(only, vec![("AutoScalingGroupName", "asg")]);
    }

    #[test]
    fn a_full_buffer_drops_the_oldest_and_counts_them() {
        let mut b = Buffer::new(3);
        b.push(datums(&[record()], 1, StorageResolution::Standard));
        assert_eq!(b.len(), 3);
        assert_eq!(b.dropped, 1);
        b.push(datums(&[record()], 2, StorageResolution::Standard));
        assert_eq!(b.len(), 3);
        assert_eq!(b.dropped, 5);
        // The newest survive.
        assert!(b
            .queue
            .iter()
            .all(|d| d.timestamp() == Some(&DateTime::from_millis(2))));
    }
}
