//! `[health]`: which Xid errors the metrics agent hears of, and which of them make a GPU
//! unhealthy (docs/health.md). Plain data, like `sections`; only the agent reads it.

use std::path::PathBuf;

use serde::Deserialize;

/// Where the metrics agent hears of Xid errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XidSource {
    /// NVML's critical-Xid events (`nvmlDeviceRegisterEvents`).
    Nvml,
    /// The kernel log (`health.kmsg`): the driver's `NVRM: Xid` lines, which also name the pid.
    Kmsg,
}

/// Which Xids make a GPU unhealthy: every one not in `ignore_xids`, or only those listed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum CriticalXids {
    /// `"all-but-ignored"`, the only string accepted (checked in `config`).
    Named(String),
    List(Vec<u64>),
}

/// The value of `critical_xids` that makes every Xid not ignored critical.
pub const ALL_BUT_IGNORED: &str = "all-but-ignored";

/// The Xids NVIDIA's k8s device plugin treats as application errors (the GPU stays healthy):
/// `internal/rm/health.go`, `ignoredXids`, at NVIDIA/k8s-device-plugin commit 1b826ac
/// (August 2026); NVIDIA/k8s-dra-driver-gpu's `xidsToSkip` (commit 2240711, May 2026) has the
/// same six. 13 graphics engine exception, 31 GPU memory page fault, 43 GPU stopped
/// processing, 45 preemptive cleanup, 68 video processor exception, 109 context switch timeout.
pub const NVIDIA_APPLICATION_XIDS: [u64; 6] = [13, 31, 43, 45, 68, 109];

/// GPU health, for the metrics agent (`gpu-share metrics`), which watches for Xid errors.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthSection {
    /// Where Xids are heard from; an empty list turns the watch off.
    pub sources: Vec<XidSource>,
    /// The kernel log device (or a file or FIFO in tests).
    pub kmsg: PathBuf,
    /// Xids that are the application's fault: counted, never marking the GPU unhealthy.
    pub ignore_xids: Vec<u64>,
    /// Which Xids mark the GPU unhealthy.
    pub critical_xids: CriticalXids,
}

impl Default for HealthSection {
    fn default() -> Self {
        HealthSection {
            sources: vec![XidSource::Nvml, XidSource::Kmsg],
            kmsg: PathBuf::from("/dev/kmsg"),
            ignore_xids: NVIDIA_APPLICATION_XIDS.to_vec(),
            critical_xids: CriticalXids::Named(ALL_BUT_IGNORED.to_owned()),
        }
    }
}

impl HealthSection {
    /// Whether Xid `xid` marks its GPU unhealthy.
    pub fn is_critical(&self, xid: u64) -> bool {
        if self.ignore_xids.contains(&xid) {
            return false;
        }
        match &self.critical_xids {
            CriticalXids::Named(_) => true,
            CriticalXids::List(list) => list.contains(&xid),
        }
    }
}
