//! What the agent publishes under, whichever sink carries it: the namespace, the dimensions
//! every instance and GPU series carries, the storage resolution, and whether tasks get series
//! of their own. EMF lines and PutMetricData datums read the
//! same `Publication`, so a series is the same series whether it goes through the CloudWatch
//! agent or straight to CloudWatch.
//!
//! Owns these facts and how the config and the identity give them. Never holds how a sink
//! is reached (endpoint, region, buffer: `cloudwatch`) and never renders anything.

use super::identity::Identity;
use crate::config::MetricsSection;

/// How finely CloudWatch stores the series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageResolution {
    /// 1-second resolution (high-resolution metrics).
    High,
    /// 60-second resolution (standard metrics).
    Standard,
}

impl StorageResolution {
    /// Sampling more often than once a minute is only worth it if CloudWatch keeps the seconds.
    pub fn for_interval(interval_seconds: u64) -> StorageResolution {
        if interval_seconds < 60 {
            StorageResolution::High
        } else {
            StorageResolution::Standard
        }
    }

    /// The value of CloudWatch's `StorageResolution`: 1 or 60.
    pub fn seconds(self) -> i32 {
        match self {
            StorageResolution::High => 1,
            StorageResolution::Standard => 60,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    pub namespace: String,
    /// `InstanceId`, `AutoScalingGroupName`, `ClusterName`, ...: those known, in this order.
    pub dimensions: Vec<(String, String)>,
    pub storage_resolution: StorageResolution,
    /// `metrics.task_dimensions`: per-task series (`TaskArn` a dimension) beside the services'.
    pub task_dimensions: bool,
}

impl Publication {
    /// The config's namespace, the dimensions of `identity`, the resolution its interval asks for.
    pub fn new(config: &MetricsSection, identity: &Identity) -> Publication {
        Publication {
            namespace: config.namespace.clone(),
            dimensions: identity.dimensions(),
            storage_resolution: StorageResolution::for_interval(config.interval_seconds),
            task_dimensions: config.task_dimensions,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_under_a_minute_are_stored_by_the_second() {
        assert_eq!(StorageResolution::for_interval(1).seconds(), 1);
        assert_eq!(StorageResolution::for_interval(59).seconds(), 1);
        assert_eq!(StorageResolution::for_interval(60).seconds(), 60);
        assert_eq!(StorageResolution::for_interval(300).seconds(), 60);
    }
}
