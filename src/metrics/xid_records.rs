//! What the Xids of one tick publish: `GPUXidErrors` (Count) records, dimensioned as the
//! per-GPU metrics are, with the Xid and the container as properties; the agent's log line for
//! each; and the JSON sink's line.
//!
//! Owns the wording and the records. Never drains, matches or marks (that is `xid`).

use std::time::Instant;

use serde_json::json;

use super::mps_faults::MpsServer;
use super::records::{Metric, Record};
use super::sample::ContainerInfo;
use crate::config::XidSource;

/// One Xid, matched to its GPU and container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenXid {
    pub gpu: u32,
    pub uuid: Option<String>,
    pub xid: u64,
    pub critical: bool,
    pub pid: Option<u32>,
    /// The MPS server the Xid names, where its process is one.
    pub mps_server: Option<MpsServer>,
    pub container_id: Option<String>,
    pub info: ContainerInfo,
    pub message: String,
    pub source: XidSource,
    pub at: Instant,
}

pub fn describe_xid(s: &SeenXid) -> String {
    let mut t = format!("Xid {} on GPU {}", s.xid, s.gpu);
    if let Some(pid) = s.pid {
        t.push_str(&format!(" (pid {pid}"));
        if let Some(c) = &s.container_id {
            t.push_str(&format!(", container {}", c.get(..12).unwrap_or(c)));
        }
        t.push(')');
    }
    if !s.message.is_empty() {
        t.push_str(&format!(": {}", s.message));
    }
    t.push_str(if s.critical {
        "; critical: the GPU is marked unhealthy"
    } else {
        "; an application error: the GPU stays healthy"
    });
    t
}

/// `GPUXidErrors` (Count) per GPU, as the per-GPU metrics are dimensioned; one record per GPU,
/// Xid and container, with the Xid and the container as properties.
pub fn records(seen: &[SeenXid], base: &[(String, String)]) -> Vec<Record> {
    let mut out = xid_records(seen, base);
    out.extend(mps_fault_records(seen, base));
    out
}

/// `MPSServerFaults` (Count) per GPU and MPS daemon: the Xids whose process is an MPS server,
/// a fault every client of that server shares (docs/isolation.md, "How a fault spreads").
fn mps_fault_records(seen: &[SeenXid], base: &[(String, String)]) -> Vec<Record> {
    let mut groups: Vec<(u32, Option<&str>, u64)> = Vec::new();
    for s in seen {
        let Some(server) = &s.mps_server else {
            continue;
        };
        let daemon = server.daemon.as_deref();
        match groups
            .iter_mut()
            .find(|(g, d, _)| *g == s.gpu && *d == daemon)
        {
            Some((_, _, n)) => *n += 1,
            None => groups.push((s.gpu, daemon, 1)),
        }
    }
    groups
        .into_iter()
        .map(|(gpu, daemon, n)| {
            let mut dimensions = base.to_vec();
            dimensions.push(("GpuIndex".to_owned(), gpu.to_string()));
            let properties = daemon
                .map(|d| vec![("MpsDaemon".to_owned(), json!(d))])
                .unwrap_or_default();
            Record {
                dimension_sets: vec![dimensions.iter().map(|(k, _)| k.clone()).collect()],
                dimensions,
                metrics: vec![Metric {
                    name: "MPSServerFaults",
                    unit: "Count",
                    value: json!(n),
                }],
                properties,
            }
        })
        .collect()
}

fn xid_records(seen: &[SeenXid], base: &[(String, String)]) -> Vec<Record> {
    let mut groups: Vec<(&SeenXid, u64)> = Vec::new();
    for s in seen {
        match groups
            .iter_mut()
            .find(|(g, _)| g.gpu == s.gpu && g.xid == s.xid && g.container_id == s.container_id)
        {
            Some((_, n)) => *n += 1,
            None => groups.push((s, 1)),
        }
    }
    groups
        .into_iter()
        .map(|(s, n)| {
            let mut dimensions = base.to_vec();
            dimensions.push(("GpuIndex".to_owned(), s.gpu.to_string()));
            let mut properties = vec![
                ("Xid".to_owned(), json!(s.xid)),
                ("XidCritical".to_owned(), json!(s.critical)),
            ];
            if let Some(u) = &s.uuid {
                properties.push(("GpuUuid".to_owned(), json!(u)));
            }
            if let Some(c) = &s.container_id {
                properties.push(("ContainerId".to_owned(), json!(c)));
            }
            if let Some(t) = &s.info.task_arn {
                properties.push(("TaskArn".to_owned(), json!(t)));
            }
            if let Some(n) = &s.info.container_name {
                properties.push(("ContainerName".to_owned(), json!(n)));
            }
            Record {
                dimension_sets: vec![dimensions.iter().map(|(k, _)| k.clone()).collect()],
                dimensions,
                metrics: vec![Metric {
                    name: "GPUXidErrors",
                    unit: "Count",
                    value: json!(n),
                }],
                properties,
            }
        })
        .collect()
}

pub fn json_of(seen: &[SeenXid]) -> String {
    let xids: Vec<_> = seen
        .iter()
        .map(|s| {
            json!({"gpu_index": s.gpu, "gpu_uuid": s.uuid, "xid": s.xid, "critical": s.critical,
                   "pid": s.pid, "container_id": s.container_id, "message": s.message,
                   "mps_server": s.mps_server.as_ref().map(|m| json!({"pid": m.pid, "daemon": m.daemon}))})
        })
        .collect();
    json!({ "xid_errors": xids }).to_string()
}
