//! Xid errors in the metrics agent: the watchers (`health::kmsg`, `health::nvml_events`) send
//! each Xid they hear on a channel; every tick the agent drains it here. Each Xid is matched to
//! its GPU (the kernel log's PCI address through the inventory; NVML's device as it is) and,
//! where the driver names a pid, to its container (`attribution`); one heard from both sources
//! within `SAME_XID` counts once. A critical Xid (`health.ignore_xids`, `health.critical_xids`)
//! marks the GPU unhealthy in `health.json`; every Xid is published as `GPUXidErrors`.
//!
//! Owns the draining, matching, marking and the `GPUXidErrors` records. Never reads the kernel
//! log or NVML events itself, and never decides placement.

use std::path::PathBuf;
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;

use super::attribution;
use super::cloudwatch;
use super::emf;
use super::pipeline::{Render, Rendered};
use super::publication::Publication;
use super::records::{Metric, Record};
use super::sample::ContainerInfo;
use crate::config::{Config, HealthSection, XidSource};
use crate::gpu::nvml::{GpuQuery, Nvml};
use crate::health::event::{PciAddr, XidEvent, XidGpu};
use crate::health::file::{self, Unhealthy};
use crate::health::{kmsg, nvml_events};
use crate::timestamp::now_rfc3339;

/// One Xid heard from NVML and from the kernel log within this long is one Xid.
const SAME_XID: Duration = Duration::from_secs(5);

fn log(message: &str) {
    eprintln!("gpu-share metrics: {message}");
}

/// A GPU as the agent knows it at start, to match the kernel log's PCI addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownGpu {
    pub index: u32,
    pub uuid: Option<String>,
    pub bus: Option<PciAddr>,
}

/// One Xid, matched to its GPU and container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenXid {
    pub gpu: u32,
    pub uuid: Option<String>,
    pub xid: u64,
    pub critical: bool,
    pub pid: Option<u32>,
    pub container_id: Option<String>,
    pub info: ContainerInfo,
    pub message: String,
    source: XidSource,
    at: Instant,
}

/// The watchers' channel and what draining it needs.
pub struct XidWatch {
    receiver: Receiver<XidEvent>,
    gpus: Vec<KnownGpu>,
    health: HealthSection,
    state_dir: PathBuf,
    root: PathBuf,
    /// Xids counted within the last `SAME_XID`, to drop the other source's copy.
    recent: Vec<SeenXid>,
}

impl XidWatch {
    /// Starts the watchers `health.sources` names. One that cannot start is logged, and the
    /// agent goes on without it.
    pub fn start(config: &Config, nvml: &'static Nvml) -> XidWatch {
        let (send, receiver) = channel();
        for source in &config.health.sources {
            let started = match source {
                XidSource::Nvml => {
                    nvml_events::watch(nvml, send.clone(), log)
                }
                XidSource::Kmsg => kmsg::watch(&config.health.kmsg, send.clone(), log).map_err(
                    |e| std::io::Error::new(e.kind(), format!("{}: {e}", config.health.kmsg.display())),
                ),
            };
            if let Err(e) = started {
                log(&format!("Xids from {source:?} not watched: {e}"));
            }
        }
        XidWatch {
            receiver,
            gpus: known_gpus(config, nvml),
            health: config.health.clone(),
            state_dir: config.state.dir.clone(),
            root: config.devices.root.clone(),
            recent: Vec::new(),
        }
    }

    /// Drains what the watchers heard since the last tick: each Xid matched and logged, the
    /// critical ones marked in `health.json`, and the `GPUXidErrors` records rendered for the
    /// sink; `None` on a tick without Xids.
    pub fn tick(
        &mut self,
        describe: &dyn Fn(&str) -> ContainerInfo,
        render: Render,
        publication: &Publication,
    ) -> Option<Rendered> {
        let events: Vec<XidEvent> = self.receiver.try_iter().collect();
        let seen = self.take(events, describe);
        if seen.is_empty() {
            return None;
        }
        self.mark(&seen);
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let recs = records(&seen, &publication.dimensions);
        Some(match render {
            Render::Datums => Rendered::Datums(cloudwatch::datums(
                &recs,
                now_ms,
                publication.storage_resolution,
            )),
            Render::Emf => Rendered::Emf(
                recs.iter()
                    .map(|r| emf::render(r, publication, now_ms))
                    .collect(),
            ),
            Render::Json { .. } => Rendered::Json(json_of(&seen)),
        })
    }

    /// Matches the events, drops the second source's copy of one Xid, logs each.
    fn take(
        &mut self,
        events: Vec<XidEvent>,
        describe: &dyn Fn(&str) -> ContainerInfo,
    ) -> Vec<SeenXid> {
        self.recent.retain(|s| s.at.elapsed() < SAME_XID);
        let mut seen: Vec<SeenXid> = Vec::new();
        for e in events {
            let Some((gpu, uuid)) = self.resolve(&e.gpu) else {
                log(&format!("Xid {} on {:?}: no such GPU here; not counted", e.xid, e.gpu));
                continue;
            };
            let copy = |s: &SeenXid| {
                s.gpu == gpu && s.xid == e.xid && s.source != e.source && gap(s.at, e.at) < SAME_XID
            };
            if let Some(first) = seen.iter_mut().find(|s| copy(s)) {
                // The same Xid from the other source: keep what only the kernel log tells.
                if first.pid.is_none() && e.pid.is_some() {
                    first.pid = e.pid;
                    first.container_id = e.pid.and_then(|p| attribution::container_of(&self.root, p));
                    first.info = first.container_id.as_deref().map(describe).unwrap_or_default();
                }
                if first.message.is_empty() {
                    first.message = e.message;
                }
                continue;
            }
            if self.recent.iter().any(copy) {
                continue;
            }
            let container_id = e.pid.and_then(|p| attribution::container_of(&self.root, p));
            let s = SeenXid {
                gpu,
                uuid,
                xid: e.xid,
                critical: self.health.is_critical(e.xid),
                pid: e.pid,
                info: container_id.as_deref().map(describe).unwrap_or_default(),
                container_id,
                message: e.message,
                source: e.source,
                at: e.at,
            };
            seen.push(s);
        }
        for s in &seen {
            log(&describe_xid(s));
        }
        self.recent.extend(seen.iter().cloned());
        seen
    }

    fn resolve(&self, gpu: &XidGpu) -> Option<(u32, Option<String>)> {
        match gpu {
            XidGpu::Bus(bus) => self
                .gpus
                .iter()
                .find(|g| g.bus == Some(*bus))
                .map(|g| (g.index, g.uuid.clone())),
            XidGpu::Device { index, uuid } => Some((
                *index,
                uuid.clone().or_else(|| {
                    self.gpus.iter().find(|g| g.index == *index).and_then(|g| g.uuid.clone())
                }),
            )),
        }
    }

    /// Marks the GPUs of critical Xids unhealthy (the first Xid stays the cause).
    fn mark(&self, seen: &[SeenXid]) {
        if !seen.iter().any(|s| s.critical) {
            return;
        }
        let result = file::lock(&self.state_dir).and_then(|mut locked| {
            let mut changed = false;
            for s in seen.iter().filter(|s| s.critical) {
                changed |= locked.mark(Unhealthy {
                    index: s.gpu,
                    uuid: s.uuid.clone(),
                    since: now_rfc3339(),
                    xid: s.xid,
                    message: if s.message.is_empty() {
                        format!("{:?} event", s.source)
                    } else {
                        s.message.clone()
                    },
                });
            }
            if changed {
                locked.save()?;
            }
            Ok(())
        });
        if let Err(e) = result {
            log(&format!("GPU health not recorded: {e}"));
        }
    }
}

fn gap(a: Instant, b: Instant) -> Duration {
    a.saturating_duration_since(b).max(b.saturating_duration_since(a))
}

/// The GPUs with their PCI addresses: NVML's answer, else the driver's `/proc` entries.
fn known_gpus(config: &Config, nvml: &Nvml) -> Vec<KnownGpu> {
    if let Ok(gpus) = nvml.gpus() {
        return gpus
            .into_iter()
            .map(|g| KnownGpu {
                index: g.index,
                bus: PciAddr::parse(&g.pci_bus_id),
                uuid: Some(g.uuid),
            })
            .collect();
    }
    crate::gpu::discover(&config.devices.root)
        .map(|inv| {
            inv.gpus
                .into_iter()
                .map(|g| KnownGpu {
                    index: g.index,
                    bus: g.info.pci_bus_id.as_deref().and_then(PciAddr::parse),
                    uuid: g.info.uuid,
                })
                .collect()
        })
        .unwrap_or_default()
}

fn describe_xid(s: &SeenXid) -> String {
    let mut t = format!("Xid {} on GPU {}", s.xid, s.gpu);
    if let Some(pid) = s.pid {
        t.push_str(&format!(" (pid {pid}"));
        if let Some(c) = &s.container_id {
            t.push_str(&format!(", container {}", &c[..c.len().min(12)]));
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
    let mut groups: Vec<(&SeenXid, u64)> = Vec::new();
    for s in seen {
        match groups.iter_mut().find(|(g, _)| {
            g.gpu == s.gpu && g.xid == s.xid && g.container_id == s.container_id
        }) {
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

fn json_of(seen: &[SeenXid]) -> String {
    let xids: Vec<_> = seen
        .iter()
        .map(|s| {
            json!({"gpu_index": s.gpu, "gpu_uuid": s.uuid, "xid": s.xid, "critical": s.critical,
                   "pid": s.pid, "container_id": s.container_id, "message": s.message})
        })
        .collect();
    json!({ "xid_errors": xids }).to_string()
}
