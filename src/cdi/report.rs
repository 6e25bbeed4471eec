//! `gpu-share doctor`'s view of CDI: which spec a create would use, whether it covers every GPU
//! discovered, and whether the digest is current. Read-only: it builds a digest in memory to
//! judge the specs but never writes one (the next create does).

use std::fmt;
use std::path::{Path, PathBuf};

use super::digest::{Digest, DigestError};
use super::inject::{no_spec, CdiError};
use super::packed::{self, Packed};
use super::{select, store};
use crate::config::{DevicesSection, InjectionMode};
use crate::gpu::Inventory;

/// How bad what the report found is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Ok,
    /// `auto` falls back to the legacy hook.
    Warn,
    /// `cdi`: creates fail.
    Fail,
}

#[derive(Debug)]
pub struct Report {
    pub mode: InjectionMode,
    /// The specs the GPUs' devices come from, where CDI is usable.
    pub specs: Vec<PathBuf>,
    /// Why CDI is not usable.
    pub problem: Option<String>,
    /// Whether the saved digest matches the specs.
    pub digest_current: bool,
    pub gpus: usize,
}

impl Report {
    /// Looks at the specs under `devices.root` and the digest in `state_dir`, for `inventory`.
    pub fn new(devices: &DevicesSection, state_dir: &Path, inventory: &Inventory) -> Report {
        let root = &devices.root;
        let digest_current = store::saved(state_dir).is_some_and(|d| store::is_current(&d, root));
        let mut report = Report {
            mode: devices.injection,
            specs: Vec::new(),
            problem: None,
            digest_current,
            gpus: inventory.gpus.len(),
        };
        match usable(root, inventory) {
            Ok(specs) => report.specs = specs,
            Err(e) => report.problem = Some(e.to_string()),
        }
        report
    }

    pub fn severity(&self) -> Severity {
        match (self.mode, &self.problem) {
            (InjectionMode::Legacy, _) | (_, None) => Severity::Ok,
            (InjectionMode::Auto, Some(_)) => Severity::Warn,
            (InjectionMode::Cdi, Some(_)) => Severity::Fail,
        }
    }
}

fn usable(root: &Path, inventory: &Inventory) -> Result<Vec<PathBuf>, CdiError> {
    let encoded = packed::encode(&Digest::build(root)?);
    let damaged = || DigestError::Damaged("(built in memory)".to_owned());
    let digest = Packed::parse(encoded.bytes).ok_or_else(damaged)?;
    if digest.specs.is_empty() {
        return Err(no_spec(root));
    }
    let covered = select::cover(&digest, inventory)?;
    let mut specs: Vec<PathBuf> = Vec::new();
    for (_, device) in covered {
        let path = &digest.specs[digest.devices[device].spec].path;
        if !specs.contains(path) {
            specs.push(path.clone());
        }
    }
    Ok(specs)
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = self.mode.as_str();
        if self.mode == InjectionMode::Legacy {
            return write!(f, "injection=legacy: the legacy hook, CDI specs not read");
        }
        match &self.problem {
            Some(why) if self.mode == InjectionMode::Auto => {
                write!(f, "injection=auto: legacy hook, since {why}")
            }
            Some(why) => write!(f, "injection=cdi: creates fail: {why}"),
            None => {
                let specs: Vec<String> =
                    self.specs.iter().map(|p| p.display().to_string()).collect();
                let digest = if self.digest_current {
                    "digest current"
                } else {
                    "digest out of date (the next create rebuilds it)"
                };
                write!(
                    f,
                    "injection={mode}: CDI spec {} covers all {} GPU(s); {digest}",
                    specs.join(", "),
                    self.gpus
                )
            }
        }
    }
}
