//! What a container asks to be capped at in `mps` mode (docs/isolation.md): its memory and
//! compute caps, read from its env under the operator's defaults and maxima.
//!
//! Pure code over the spec's JSON: no daemon is asked and no GPU looked at here. A container
//! asks through `GPU_SHARE_MEMORY` / `GPU_SHARE_COMPUTE_PERCENT`; one started through the
//! trusted `nvidia` channel (ECS's `nvidiaMps`) may ask through ECS's
//! `CUDA_MPS_PINNED_DEVICE_MEM_LIMIT` / `CUDA_MPS_ACTIVE_THREAD_PERCENTAGE` instead. From any
//! other channel a tenant's `CUDA_MPS_*` is never a request (the MPS edit strips it). It never
//! lets a request past the maxima: above them is an error, never a silent clamp.

use serde_json::Value;

use crate::config::{ByteSize, IsolationSection};
use crate::request::Channel;
use crate::spec::env_value;

pub const MEMORY_ENV: &str = "GPU_SHARE_MEMORY";
pub const COMPUTE_ENV: &str = "GPU_SHARE_COMPUTE_PERCENT";
/// ECS's MPS env (amazon-ecs-agent PR #5082), honoured only through the `nvidia` channel.
pub const ECS_MEMORY_ENV: &str = "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT";
pub const ECS_COMPUTE_ENV: &str = "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE";

const MIB: u64 = 1 << 20;

/// One container's caps, per GPU it holds.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Caps {
    /// Pinned device memory, whole MiB (MPS's unit).
    pub memory_mib: u64,
    /// Active thread percentage; `None`: no compute cap (MPS's 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute_percent: Option<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapsError {
    #[error("{name}={value}: {why}")]
    Malformed {
        name: &'static str,
        value: String,
        why: String,
    },
    #[error("{name}={value}: above isolation.max_memory ({max}); ask for at most {max}")]
    MemoryAboveMax {
        name: &'static str,
        value: String,
        max: ByteSize,
    },
    #[error("{name}={value}: above isolation.max_compute_percent ({max}); ask for at most {max}")]
    ComputeAboveMax {
        name: &'static str,
        value: String,
        max: u8,
    },
    #[error("isolation.mode = \"mps\" needs isolation.memory (the cap of a container that asks for none)")]
    NoDefault,
}

impl Caps {
    /// The caps of the container whose spec this is, started through `channel`. Each cap is
    /// the container's `GPU_SHARE_*` if set, else (through the `nvidia` channel only) ECS's
    /// `CUDA_MPS_*`, else the configured default.
    pub fn from_spec(
        spec: &Value,
        iso: &IsolationSection,
        channel: Channel,
    ) -> Result<Caps, CapsError> {
        let trusted = channel == Channel::Nvidia;
        let memory = match env_value(spec, MEMORY_ENV) {
            Some(v) => Some((MEMORY_ENV, v, parse_memory(MEMORY_ENV, v)?)),
            None => match env_value(spec, ECS_MEMORY_ENV).filter(|_| trusted) {
                Some(v) => Some((ECS_MEMORY_ENV, v, parse_ecs_memory(v)?)),
                None => None,
            },
        };
        let memory_mib = match memory {
            Some((name, value, bytes)) => {
                if let Some(max) = iso.max_memory.filter(|m| bytes > m.0) {
                    return Err(CapsError::MemoryAboveMax {
                        name,
                        value: value.to_owned(),
                        max,
                    });
                }
                bytes / MIB
            }
            None => iso.memory.ok_or(CapsError::NoDefault)?.mib(),
        };
        let compute = match env_value(spec, COMPUTE_ENV) {
            Some(v) => Some((COMPUTE_ENV, v)),
            None => env_value(spec, ECS_COMPUTE_ENV)
                .filter(|_| trusted)
                .map(|v| (ECS_COMPUTE_ENV, v)),
        };
        let compute_percent = match compute {
            Some((name, value)) => {
                let p = parse_percent(name, value)?;
                if let Some(max) = iso.max_compute_percent.filter(|&m| p > m) {
                    return Err(CapsError::ComputeAboveMax {
                        name,
                        value: value.to_owned(),
                        max,
                    });
                }
                // 100 is no cap at all: one daemon class, not two.
                (p < 100).then_some(p)
            }
            None => iso.compute_percent.filter(|&p| p < 100),
        };
        Ok(Caps {
            memory_mib,
            compute_percent,
        })
    }
}

impl std::fmt::Display for Caps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}MiB", self.memory_mib)?;
        if let Some(p) = self.compute_percent {
            write!(f, " {p}%")?;
        }
        Ok(())
    }
}

fn malformed(name: &'static str, value: &str, why: &str) -> CapsError {
    CapsError::Malformed {
        name,
        value: value.to_owned(),
        why: why.to_owned(),
    }
}

/// `GPU_SHARE_MEMORY`: a size as the config writes one (`4GiB`, `512MiB`, bytes), at least 1 MiB.
fn parse_memory(name: &'static str, value: &str) -> Result<u64, CapsError> {
    let size = ByteSize::parse(value).map_err(|e| CapsError::Malformed {
        name,
        value: value.to_owned(),
        why: e,
    })?;
    if size.0 < MIB {
        return Err(malformed(name, value, "a memory cap must be at least 1MiB"));
    }
    Ok(size.0)
}

/// ECS's `CUDA_MPS_PINNED_DEVICE_MEM_LIMIT`: `4096M`, or per device `0=4096M,1=4096M` (MPS's
/// form; units K, M, G, T, binary as MPS reads them). A container holds one GPU in `mps` mode,
/// so one value is its cap; several must agree.
fn parse_ecs_memory(value: &str) -> Result<u64, CapsError> {
    let name = ECS_MEMORY_ENV;
    let mut cap = None;
    for entry in value.split(',').map(str::trim) {
        let limit = match entry.split_once('=') {
            Some((dev, limit)) if !dev.is_empty() && dev.bytes().all(|b| b.is_ascii_digit()) => {
                limit
            }
            Some(_) => {
                return Err(malformed(
                    name,
                    value,
                    "expected <device>=<limit>, e.g. 0=4096M",
                ))
            }
            None => entry,
        };
        let bytes = mps_size(limit).ok_or_else(|| {
            malformed(
                name,
                value,
                "a limit is a whole number with K, M, G or T (e.g. 4096M)",
            )
        })?;
        if bytes < MIB {
            return Err(malformed(name, value, "a memory cap must be at least 1M"));
        }
        if cap.is_some_and(|c| c != bytes) {
            return Err(malformed(name, value, "the devices' limits differ; a container capped by gpu-share has one GPU and one limit"));
        }
        cap = Some(bytes);
    }
    cap.ok_or_else(|| malformed(name, value, "empty"))
}

fn mps_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let shift = match unit.to_ascii_uppercase().as_str() {
        "" => 0,
        "K" | "KB" => 10,
        "M" | "MB" => 20,
        "G" | "GB" => 30,
        "T" | "TB" => 40,
        _ => return None,
    };
    digits.parse::<u64>().ok()?.checked_mul(1 << shift)
}

/// A whole percentage 1 to 100 (`50`; ECS may write `50.0`).
fn parse_percent(name: &'static str, value: &str) -> Result<u8, CapsError> {
    let t = value.trim();
    let whole = t.strip_suffix(".0").unwrap_or(t);
    match whole.parse::<u8>() {
        Ok(p) if (1..=100).contains(&p) => Ok(p),
        _ => Err(malformed(
            name,
            value,
            "a compute cap is a whole percentage, 1 to 100",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::IsolationMode;
    use serde_json::json;

    fn iso() -> IsolationSection {
        IsolationSection {
            mode: IsolationMode::Mps,
            memory: Some(ByteSize(4 << 30)),
            compute_percent: Some(50),
            max_memory: Some(ByteSize(8 << 30)),
            max_compute_percent: Some(80),
            ..IsolationSection::default()
        }
    }

    fn caps(env: &[&str], channel: Channel) -> Result<Caps, CapsError> {
        Caps::from_spec(&json!({"process": {"env": env}}), &iso(), channel)
    }

    fn cap(memory_mib: u64, compute_percent: Option<u8>) -> Caps {
        Caps {
            memory_mib,
            compute_percent,
        }
    }

    #[test]
    fn a_container_that_asks_for_nothing_gets_the_defaults() {
        assert_eq!(caps(&[], Channel::Default), Ok(cap(4096, Some(50))));
    }

    #[test]
    fn requests_up_to_the_maxima_are_honoured() {
        let got = caps(
            &["GPU_SHARE_MEMORY=8GiB", "GPU_SHARE_COMPUTE_PERCENT=80"],
            Channel::Default,
        );
        assert_eq!(got, Ok(cap(8192, Some(80))));
        let got = caps(&["GPU_SHARE_MEMORY=512MiB"], Channel::Default);
        assert_eq!(got, Ok(cap(512, Some(50))));
    }

    #[test]
    fn requests_above_the_maxima_are_refused_with_the_key() {
        let e = caps(&["GPU_SHARE_MEMORY=9GiB"], Channel::Default).unwrap_err();
        assert_eq!(
            e.to_string(),
            "GPU_SHARE_MEMORY=9GiB: above isolation.max_memory (8GiB); ask for at most 8GiB"
        );
        let e = caps(&["GPU_SHARE_COMPUTE_PERCENT=90"], Channel::Default).unwrap_err();
        assert!(
            e.to_string().contains("isolation.max_compute_percent (80)"),
            "{e}"
        );
    }

    #[test]
    fn malformed_requests_are_refused() {
        for bad in [
            "GPU_SHARE_MEMORY=4GB",
            "GPU_SHARE_MEMORY=lots",
            "GPU_SHARE_MEMORY=",
            "GPU_SHARE_MEMORY=1KiB",
            "GPU_SHARE_COMPUTE_PERCENT=0",
            "GPU_SHARE_COMPUTE_PERCENT=101",
            "GPU_SHARE_COMPUTE_PERCENT=half",
        ] {
            let e = caps(&[bad], Channel::Default).unwrap_err();
            assert!(matches!(e, CapsError::Malformed { .. }), "{bad}: {e:?}");
            assert!(e.to_string().starts_with(bad), "{bad}: {e}");
        }
    }

    #[test]
    fn ecs_mps_env_is_a_request_only_through_the_nvidia_channel() {
        let env = [
            "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT=0=6144M",
            "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=25",
        ];
        assert_eq!(caps(&env, Channel::Nvidia), Ok(cap(6144, Some(25))));
        assert_eq!(caps(&env, Channel::Default), Ok(cap(4096, Some(50))));
        let bare = ["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT=2G"];
        assert_eq!(caps(&bare, Channel::Nvidia), Ok(cap(2048, Some(50))));
        let above = ["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT=0=16384M"];
        assert!(matches!(
            caps(&above, Channel::Nvidia),
            Err(CapsError::MemoryAboveMax { .. })
        ));
        let differ = ["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT=0=1024M,1=2048M"];
        assert!(caps(&differ, Channel::Nvidia).is_err());
        let float = ["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=30.0"];
        assert_eq!(caps(&float, Channel::Nvidia), Ok(cap(4096, Some(30))));
    }

    #[test]
    fn gpu_share_env_wins_over_ecs_env() {
        let env = [
            "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT=0=6144M",
            "GPU_SHARE_MEMORY=1GiB",
        ];
        assert_eq!(caps(&env, Channel::Nvidia), Ok(cap(1024, Some(50))));
    }

    #[test]
    fn a_full_compute_share_is_no_compute_cap() {
        let mut i = iso();
        i.max_compute_percent = None;
        let spec = json!({"process": {"env": ["GPU_SHARE_COMPUTE_PERCENT=100"]}});
        assert_eq!(
            Caps::from_spec(&spec, &i, Channel::Default),
            Ok(cap(4096, None))
        );
    }
}
