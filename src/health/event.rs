//! One Xid error as a watcher heard it, and the PCI address that names its GPU in the kernel
//! log. Plain data, shared by the watchers (`kmsg`, `nvml_events`) and the agent's counting
//! (`metrics::xid`); nothing here looks at the host.

use std::fmt;
use std::time::Instant;

use crate::config::XidSource;

/// A PCI address as far as the driver's Xid lines give it: domain, bus, device (no function).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PciAddr {
    pub domain: u32,
    pub bus: u8,
    pub device: u8,
}

impl PciAddr {
    /// Reads `0000:00:1e` (the kernel log's), `0000:00:1e.0` (procfs's) or `00000000:00:1E.0`
    /// (NVML's): hex, any case; a function number, if any, is ignored.
    pub fn parse(text: &str) -> Option<PciAddr> {
        let text = text.split('.').next()?;
        let mut parts = text.split(':');
        let (domain, bus, device) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || [domain, bus, device].iter().any(|p| p.is_empty()) {
            return None;
        }
        Some(PciAddr {
            domain: u32::from_str_radix(domain, 16).ok()?,
            bus: u8::from_str_radix(bus, 16).ok()?,
            device: u8::from_str_radix(device, 16).ok()?,
        })
    }
}

impl fmt::Display for PciAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}",
            self.domain, self.bus, self.device
        )
    }
}

/// Which GPU an Xid names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XidGpu {
    /// The kernel log names the PCI address.
    Bus(PciAddr),
    /// NVML's event carries the device: its index and, where it still answers, its UUID.
    Device { index: u32, uuid: Option<String> },
}

/// One Xid error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XidEvent {
    pub gpu: XidGpu,
    pub xid: u64,
    /// The process the driver names (kernel log only; `None` where it does not say).
    pub pid: Option<u32>,
    pub process: Option<String>,
    /// The driver's words after the Xid (kernel log), or empty.
    pub message: String,
    pub source: XidSource,
    /// When the watcher heard it, so one Xid heard from both sources counts once.
    pub at: Instant,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bus_id_spelling_reads_the_same() {
        let want = PciAddr {
            domain: 0,
            bus: 0,
            device: 0x1e,
        };
        for s in ["0000:00:1e", "0000:00:1e.0", "00000000:00:1E.0"] {
            assert_eq!(PciAddr::parse(s), Some(want), "{s}");
        }
        assert_eq!(want.to_string(), "0000:00:1e");
        for bad in [
            "",
            "00:1e",
            "0000:00:1e:00",
            "zz:00:1e",
            "0000::1e",
            "0000:100:1e",
        ] {
            assert_eq!(PciAddr::parse(bad), None, "{bad}");
        }
    }
}
