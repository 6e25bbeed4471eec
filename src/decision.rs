//! What one create decided, as a value: the runc to exec and the line the shim's log keeps.
//!
//! Built by `create` from what each step answered; rendered in one place, so the log's format
//! is defined here and nowhere else. It decides nothing itself.

use std::fmt;
use std::path::PathBuf;

use crate::config::Placement;
use crate::gpu::Source;
use crate::placement::{Kind, NoGpu};
use crate::plan::Hook;

/// How the driver reached the container, for the log.
#[derive(Debug)]
pub enum Injected {
    /// NVIDIA's legacy hook (or none where it is missing); `why` is why not CDI where `auto`
    /// fell back.
    Legacy { hook: Hook, why: Option<String> },
    /// The CDI spec the GPUs' devices came from.
    Cdi { spec: PathBuf },
}

/// One create's outcome.
#[derive(Debug)]
pub struct Decision {
    pub runc: PathBuf,
    /// Why the container gets what it gets (its `NVIDIA_VISIBLE_DEVICES`, or the default).
    pub reason: String,
    pub outcome: Outcome,
    /// The state file was corrupt and was rebuilt from runc's state: what was done, for a
    /// warning of its own in the log.
    pub state_rebuilt: Option<String>,
}

#[derive(Debug)]
pub enum Outcome {
    /// The spec was left alone.
    NoGpu { why: NoGpu, devices_root: PathBuf },
    /// The container got GPUs.
    Gpus(Given),
}

/// What a container that got GPUs was given, and how.
#[derive(Debug)]
pub struct Given {
    /// The `NVIDIA_VISIBLE_DEVICES` value written.
    pub visible: String,
    pub kind: Kind,
    pub placement: Placement,
    pub source: Source,
    pub devices: usize,
    pub injected: Injected,
    pub spec_changed: bool,
    /// Dead entries dropped from the state file.
    pub reconciled: usize,
    /// Why the container is not in the state file, where it could not be recorded.
    pub unrecorded: Option<String>,
    /// The MPS daemon it is a client of (`isolation.mode = "mps"`), and how it was found.
    pub mps: Option<String>,
}

impl Decision {
    /// A create that leaves the spec alone.
    pub fn no_gpu(
        runc: PathBuf,
        reason: String,
        why: NoGpu,
        config: &crate::config::Config,
        state_rebuilt: Option<String>,
    ) -> Decision {
        let devices_root = config.devices.root.clone();
        Decision {
            runc,
            reason,
            outcome: Outcome::NoGpu { why, devices_root },
            state_rebuilt,
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reason = &self.reason;
        let g = match &self.outcome {
            Outcome::NoGpu {
                why: NoGpu::Asked, ..
            } => return write!(f, "gpus=none reason=\"{reason}\" spec=unchanged"),
            Outcome::NoGpu {
                why: NoGpu::AllReserved,
                ..
            } => {
                return write!(
                    f,
                    "gpus=none reason=\"{reason}; every GPU is reserved for another ECS task\" spec=unchanged"
                )
            }
            Outcome::NoGpu {
                why: NoGpu::HostHasNone,
                devices_root,
            } => {
                return write!(
                    f,
                    "gpus=none reason=\"{reason}; no NVIDIA GPU under {}\" spec=unchanged",
                    devices_root.display()
                )
            }
            Outcome::Gpus(given) => given,
        };
        write!(
            f,
            "gpus={} kind={} placement={} source={} reason=\"{reason}\" devices={} ",
            g.visible,
            g.kind.as_str(),
            g.placement.as_str(),
            g.source.as_str(),
            g.devices
        )?;
        match &g.injected {
            Injected::Cdi { spec } => write!(f, "injection=cdi cdi_spec={}", spec.display())?,
            Injected::Legacy { hook, why } => {
                match why {
                    Some(why) => write!(f, "injection=legacy (cdi: {why}) ")?,
                    None => write!(f, "injection=legacy ")?,
                }
                match hook {
                    Hook::Present(p) => write!(f, "hook={}", p.display())?,
                    Hook::Missing(p) => {
                        write!(f, "hook=none ({} not found; devices only)", p.display())?
                    }
                }
            }
        }
        let spec = if g.spec_changed {
            "updated"
        } else {
            "unchanged"
        };
        write!(f, " spec={spec} reconciled={}", g.reconciled)?;
        if let Some(problem) = &g.unrecorded {
            write!(f, " state=unrecorded ({problem})")?;
        }
        if let Some(daemon) = &g.mps {
            write!(f, " mps={daemon}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_read_as_before() {
        let d = Decision {
            runc: PathBuf::from("/usr/bin/runc"),
            reason: "NVIDIA_VISIBLE_DEVICES=1".into(),
            state_rebuilt: None,
            outcome: Outcome::Gpus(Given {
                visible: "1".into(),
                kind: Kind::Pinned,
                placement: Placement::Spread,
                source: Source::Procfs,
                devices: 5,
                injected: Injected::Legacy {
                    hook: Hook::Missing(PathBuf::from("/h")),
                    why: None,
                },
                spec_changed: true,
                reconciled: 2,
                unrecorded: Some("state /x: denied".into()),
                mps: None,
            }),
        };
        assert_eq!(
            d.to_string(),
            "gpus=1 kind=pinned placement=spread source=procfs reason=\"NVIDIA_VISIBLE_DEVICES=1\" devices=5 injection=legacy hook=none (/h not found; devices only) spec=updated reconciled=2 state=unrecorded (state /x: denied)"
        );
        let d = Decision {
            runc: PathBuf::from("/usr/bin/runc"),
            reason: "NVIDIA_VISIBLE_DEVICES unset, sharing.default=all".into(),
            state_rebuilt: None,
            outcome: Outcome::NoGpu {
                why: NoGpu::HostHasNone,
                devices_root: PathBuf::from("/"),
            },
        };
        assert_eq!(
            d.to_string(),
            "gpus=none reason=\"NVIDIA_VISIBLE_DEVICES unset, sharing.default=all; no NVIDIA GPU under /\" spec=unchanged"
        );
    }

    fn given(injected: Injected) -> Decision {
        Decision {
            runc: PathBuf::from("/usr/bin/runc"),
            reason: "NVIDIA_VISIBLE_DEVICES=0".into(),
            state_rebuilt: None,
            outcome: Outcome::Gpus(Given {
                visible: "0".into(),
                kind: Kind::Pinned,
                placement: Placement::All,
                source: Source::Procfs,
                devices: 5,
                injected,
                spec_changed: true,
                reconciled: 0,
                unrecorded: None,
                mps: None,
            }),
        }
    }

    #[test]
    fn lines_say_how_the_driver_was_injected() {
        let cdi = given(Injected::Cdi {
            spec: PathBuf::from("/var/run/cdi/nvidia.yaml"),
        });
        assert!(
            cdi.to_string().contains(
                " devices=5 injection=cdi cdi_spec=/var/run/cdi/nvidia.yaml spec=updated "
            ),
            "{cdi}"
        );
        let fallback = given(Injected::Legacy {
            hook: Hook::Present(PathBuf::from("/usr/bin/h")),
            why: Some("no CDI spec of kind nvidia.com/gpu in /etc/cdi or /var/run/cdi".into()),
        });
        assert!(
            fallback.to_string().contains(
                " injection=legacy (cdi: no CDI spec of kind nvidia.com/gpu in /etc/cdi or /var/run/cdi) hook=/usr/bin/h "
            ),
            "{fallback}"
        );
    }
}
