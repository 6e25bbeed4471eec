//! GPU health: Xid errors heard by the metrics agent mark a GPU unhealthy, placement gives an
//! unhealthy GPU no new containers, and an operator clears it.
//!
//! ```text
//! agent thread: nvml_events (NVML critical-Xid events) ─┐
//! agent thread: kmsg (the driver's `NVRM: Xid` lines) ──┴─► XidEvent ─► metrics::xid
//!      (attributed, counted as GPUXidErrors; a critical one is marked in file::HealthFile)
//! create: gate::for_create reads health.json once ─► placement::decide leaves the GPU out
//! gpu-share gpu clear N ─► clear ; gpu-share list / doctor ─► report
//! ```
//!
//! This module only names its parts; it holds no logic, so no part ever needs to import it.

pub mod clear;
pub mod event;
pub mod file;
pub mod gate;
pub mod kmsg;
pub mod nvml_events;
pub mod report;
