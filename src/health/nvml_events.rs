//! Xids from NVML: every GPU that supports it is registered for `nvmlEventTypeXidCriticalError`
//! in one event set, and a thread of its own waits on the set (`nvmlEventSetWait_v2`) as
//! NVIDIA's k8s device plugin does (`internal/rm/health.go`). NVML reports the device and the
//! Xid; it names no process.
//!
//! Owns the event set and its thread. A GPU that does not support events is skipped with one
//! log line. Never decides what an Xid means.

use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use nvml_wrapper::bitmasks::event::EventTypes;
use nvml_wrapper::enums::event::XidError;
use nvml_wrapper::error::NvmlError as Cause;
use nvml_wrapper::{Device, EventSet};

use super::event::{XidEvent, XidGpu};
use crate::config::XidSource;
use crate::gpu::nvml::Nvml;

/// How long one wait lasts before the thread checks that the agent still listens.
const WAIT_MS: u32 = 5_000;

/// Starts the thread: it registers the GPUs, and sends each
/// critical-Xid event to `send` until the receiver is gone. What goes wrong is told through
/// `log`, once.
pub fn watch(nvml: &'static Nvml, send: Sender<XidEvent>, log: fn(&str)) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("xid-nvml".into())
        .spawn(move || run(nvml, &send, log))?;
    Ok(())
}

/// Registers and waits. The agent's own NVML handle, which lives as long as the process:
/// NVML is thread-safe, and the event set borrows it.
fn run(nvml: &'static Nvml, send: &Sender<XidEvent>, log: fn(&str)) {
    let nvml = nvml.handle();
    let Some(set) = register(nvml, log) else {
        return;
    };
    let mut told = false;
    loop {
        match set.wait(WAIT_MS) {
            Ok(data) => {
                let xid = match data.event_data {
                    Some(XidError::Value(v)) => v,
                    // 999: the driver could not tell which; still a critical error.
                    Some(XidError::Unknown) => 999,
                    None => continue,
                };
                let Some(gpu) = device_of(&data.device) else {
                    log(&format!("Xid {xid} on a GPU NVML cannot name; not counted"));
                    continue;
                };
                let event = XidEvent {
                    gpu,
                    xid,
                    pid: None,
                    process: None,
                    message: String::new(),
                    source: XidSource::Nvml,
                    at: Instant::now(),
                };
                if send.send(event).is_err() {
                    return;
                }
            }
            Err(Cause::Timeout) => {}
            Err(e) => {
                if !told {
                    log(&format!(
                        "Xid events: waiting failed: {e}; retrying every second"
                    ));
                    told = true;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

fn device_of(d: &Device) -> Option<XidGpu> {
    Some(XidGpu::Device {
        index: d.index().ok()?,
        uuid: d.uuid().ok(),
    })
}

/// One event set holding every GPU that supports critical-Xid events; `None` when none does.
fn register(nvml: &nvml_wrapper::Nvml, log: fn(&str)) -> Option<EventSet<'_>> {
    let count = match nvml.device_count() {
        Ok(c) => c,
        Err(e) => {
            log(&format!("Xid events: device count: {e}"));
            return None;
        }
    };
    let mut set = Some(nvml.create_event_set().ok()?);
    let mut registered = 0;
    for index in 0..count {
        let Ok(d) = nvml.device_by_index(index) else {
            log(&format!("Xid events: GPU {index}: no handle; skipped"));
            continue;
        };
        let supported = d
            .supported_event_types()
            .is_ok_and(|t| t.contains(EventTypes::CRITICAL_XID_ERROR));
        if !supported {
            log(&format!(
                "Xid events: GPU {index} does not report Xid events; skipped (the kernel log still may)"
            ));
            continue;
        }
        let current = set.take().or_else(|| nvml.create_event_set().ok())?;
        match d.register_events(EventTypes::CRITICAL_XID_ERROR, current) {
            Ok(s) => {
                set = Some(s);
                registered += 1;
            }
            // A failed registration frees the set (nvml-wrapper): the next GPU starts a new
            // one, and the GPUs already in the lost set are registered again below.
            Err(e) => {
                log(&format!("Xid events: GPU {index}: {}; skipped", e.error));
                return reregister(nvml, index, log);
            }
        }
    }
    if registered == 0 {
        log("Xid events: no GPU reports them; NVML is not watched");
        return None;
    }
    set
}

/// After GPU `failed` could not be registered: a new set with every other GPU that can be.
fn reregister(nvml: &nvml_wrapper::Nvml, failed: u32, log: fn(&str)) -> Option<EventSet<'_>> {
    let count = nvml.device_count().ok()?;
    let mut set = nvml.create_event_set().ok()?;
    let mut registered = 0;
    for index in (0..count).filter(|&i| i != failed) {
        let Ok(d) = nvml.device_by_index(index) else {
            continue;
        };
        if !d
            .supported_event_types()
            .is_ok_and(|t| t.contains(EventTypes::CRITICAL_XID_ERROR))
        {
            continue;
        }
        match d.register_events(EventTypes::CRITICAL_XID_ERROR, set) {
            Ok(s) => {
                set = s;
                registered += 1;
            }
            Err(e) => {
                log(&format!(
                    "Xid events: GPU {index}: {}; NVML is not watched",
                    e.error
                ));
                return None;
            }
        }
    }
    (registered > 0).then_some(set)
}
