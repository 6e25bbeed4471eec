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

use super::attribution;
use super::cloudwatch;
use super::emf;
use super::mps_faults;
use super::pipeline::{Render, Rendered};
use super::publication::Publication;
use super::sample::ContainerInfo;
use super::xid_records::{describe_xid, json_of, records, SeenXid};
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
                XidSource::Nvml => nvml_events::watch(nvml, send.clone(), log),
                XidSource::Kmsg => {
                    kmsg::watch(&config.health.kmsg, send.clone(), log).map_err(|e| {
                        std::io::Error::new(
                            e.kind(),
                            format!("{}: {e}", config.health.kmsg.display()),
                        )
                    })
                }
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
                log(&format!(
                    "Xid {} on {:?}: no such GPU here; not counted",
                    e.xid, e.gpu
                ));
                continue;
            };
            let copy = |s: &SeenXid| {
                s.gpu == gpu && s.xid == e.xid && s.source != e.source && gap(s.at, e.at) < SAME_XID
            };
            if let Some(first) = seen.iter_mut().find(|s| copy(s)) {
                // The same Xid from the other source: keep what only the kernel log tells.
                if first.pid.is_none() && e.pid.is_some() {
                    first.pid = e.pid;
                    first.container_id =
                        e.pid.and_then(|p| attribution::container_of(&self.root, p));
                    first.info = first
                        .container_id
                        .as_deref()
                        .map(describe)
                        .unwrap_or_default();
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
                mps_server: mps_faults::server_of(&self.root, e.pid, e.process.as_deref()),
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
                    self.gpus
                        .iter()
                        .find(|g| g.index == *index)
                        .and_then(|g| g.uuid.clone())
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
    a.saturating_duration_since(b)
        .max(b.saturating_duration_since(a))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn watch(dir: &std::path::Path) -> (XidWatch, std::sync::mpsc::Sender<XidEvent>) {
        let (send, receiver) = channel();
        let w = XidWatch {
            receiver,
            gpus: (0..2)
                .map(|i| KnownGpu {
                    index: i,
                    uuid: Some(format!("GPU-{i}")),
                    bus: PciAddr::parse(&format!("0000:00:{:02x}", 0x1b + i)),
                })
                .collect(),
            health: HealthSection::default(),
            state_dir: dir.join("state"),
            root: dir.to_owned(),
            recent: Vec::new(),
        };
        (w, send)
    }

    fn event(gpu: XidGpu, xid: u64, source: XidSource, pid: Option<u32>) -> XidEvent {
        XidEvent {
            gpu,
            xid,
            pid,
            process: None,
            message: String::new(),
            source,
            at: Instant::now(),
        }
    }

    #[test]
    fn one_xid_heard_from_both_sources_counts_once_with_the_kernel_logs_pid() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, _send) = watch(dir.path());
        let nvml = XidGpu::Device {
            index: 1,
            uuid: None,
        };
        let bus = XidGpu::Bus(PciAddr::parse("0000:00:1c").unwrap());
        let seen = w.take(
            vec![
                event(nvml.clone(), 79, XidSource::Nvml, None),
                event(bus.clone(), 79, XidSource::Kmsg, Some(42)),
                event(bus.clone(), 13, XidSource::Kmsg, Some(42)),
            ],
            &|_| ContainerInfo::default(),
        );
        let got: Vec<String> = seen
            .iter()
            .map(|s| {
                format!(
                    "{} {} {:?} {} {:?}",
                    s.gpu, s.xid, s.pid, s.critical, s.uuid
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                "1 79 Some(42) true Some(\"GPU-1\")",
                "1 13 Some(42) false Some(\"GPU-1\")"
            ]
        );
        // The kernel log's copy arriving a tick later is still the same Xid.
        let later = w.take(vec![event(bus, 79, XidSource::Kmsg, None)], &|_| {
            ContainerInfo::default()
        });
        assert!(later.is_empty(), "{later:?}");
        // An Xid on a PCI address that is no GPU here is not counted.
        let stray = XidGpu::Bus(PciAddr::parse("0000:00:99").unwrap());
        assert!(w
            .take(vec![event(stray, 79, XidSource::Kmsg, None)], &|_| {
                ContainerInfo::default()
            })
            .is_empty());
    }

    #[test]
    fn only_critical_xids_mark_the_gpu() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, _send) = watch(dir.path());
        let gpu = |i| XidGpu::Device {
            index: i,
            uuid: None,
        };
        let seen = w.take(
            vec![
                event(gpu(0), 31, XidSource::Nvml, None),
                event(gpu(1), 48, XidSource::Nvml, None),
            ],
            &|_| ContainerInfo::default(),
        );
        w.mark(&seen);
        let f = file::read(&dir.path().join("state")).unwrap();
        let marked: Vec<(u32, u64)> = f.gpus.iter().map(|u| (u.index, u.xid)).collect();
        assert_eq!(marked, vec![(1, 48)]);
        let recs = records(&seen, &[]);
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[1].metrics[0].name, "GPUXidErrors");
        assert_eq!(recs[1].dimensions, vec![("GpuIndex".into(), "1".into())]);
    }
}
