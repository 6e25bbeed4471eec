//! Which GPUs a container asks for: `NVIDIA_VISIBLE_DEVICES` in its env, or the configured
//! default, resolved against the host's inventory.
//!
//! Pure code: no file is read here.

use crate::config::DefaultGpus;
use crate::gpu::{Gpu, Inventory};

/// The variable the NVIDIA stack reads; the shim reads it and writes back what was given.
pub const VISIBLE_DEVICES: &str = "NVIDIA_VISIBLE_DEVICES";

/// One entry of a device list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceRef {
    Index(u32),
    Uuid(String),
}

/// What a container asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Every GPU. `explicit` is false when it came from the default, not the container.
    All { explicit: bool },
    /// `none`, `void`, an empty value, or the `none` default: the spec is left alone.
    Nothing,
    /// A list of GPUs named by the container.
    Some(Vec<DeviceRef>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error(
        "{VISIBLE_DEVICES}={value}: {entry:?} is not a GPU index, a GPU-<uuid>, all, none or void"
    )]
    BadEntry { value: String, entry: String },
    #[error("{VISIBLE_DEVICES}={value}: this host has {have}")]
    NoSuchGpu { value: String, have: String },
    #[error("{VISIBLE_DEVICES}={value}: no GPU on this host has UUID {uuid}")]
    NoSuchUuid { value: String, uuid: String },
}

impl Request {
    /// Reads the container's value (`None`: the variable is not set) with the host default.
    pub fn parse(value: Option<&str>, default: DefaultGpus) -> Result<Request, RequestError> {
        let Some(value) = value else {
            return Ok(match default {
                DefaultGpus::All => Request::All { explicit: false },
                DefaultGpus::None => Request::Nothing,
            });
        };
        let trimmed = value.trim();
        match trimmed {
            // An empty value is how the NVIDIA stack says "no GPU" too.
            "" | "none" | "void" => return Ok(Request::Nothing),
            "all" => return Ok(Request::All { explicit: true }),
            _ => {}
        }
        let mut refs = Vec::new();
        for entry in trimmed.split(',').map(str::trim) {
            let r = parse_entry(entry).ok_or_else(|| RequestError::BadEntry {
                value: value.to_owned(),
                entry: entry.to_owned(),
            })?;
            if !refs.contains(&r) {
                refs.push(r);
            }
        }
        Ok(Request::Some(refs))
    }

    /// The GPUs this request gets on `inventory`, in the order asked for (`all`: index order).
    /// An empty answer means "leave the spec alone".
    pub fn resolve<'a>(
        &self,
        raw: Option<&str>,
        inventory: &'a Inventory,
    ) -> Result<Vec<&'a Gpu>, RequestError> {
        let value = || raw.unwrap_or("").to_owned();
        match self {
            Request::Nothing => Ok(Vec::new()),
            Request::All { explicit: false } => Ok(inventory.gpus.iter().collect()),
            Request::All { explicit: true } => {
                if inventory.gpus.is_empty() {
                    return Err(RequestError::NoSuchGpu {
                        value: value(),
                        have: inventory.describe_gpus(),
                    });
                }
                Ok(inventory.gpus.iter().collect())
            }
            Request::Some(refs) => refs
                .iter()
                .map(|r| match r {
                    DeviceRef::Index(i) => {
                        inventory.gpu(*i).ok_or_else(|| RequestError::NoSuchGpu {
                            value: value(),
                            have: inventory.describe_gpus(),
                        })
                    }
                    // UUIDs are known once discovery reads them from the driver; until then no
                    // GPU matches one, which is an error rather than a silent drop.
                    DeviceRef::Uuid(u) => Err(RequestError::NoSuchUuid {
                        value: value(),
                        uuid: u.clone(),
                    }),
                })
                .collect(),
        }
    }
}

fn parse_entry(entry: &str) -> Option<DeviceRef> {
    if !entry.is_empty() && entry.bytes().all(|b| b.is_ascii_digit()) {
        return entry.parse().ok().map(DeviceRef::Index);
    }
    let hex = entry.strip_prefix("GPU-")?;
    let well_formed = !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    well_formed.then(|| DeviceRef::Uuid(entry.to_owned()))
}

/// The value written back to the container: the indices it got, comma-separated.
pub fn visible_value(gpus: &[&Gpu]) -> String {
    gpus.iter()
        .map(|g| g.index.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::DeviceNode;
    use std::path::PathBuf;

    fn host(n: u32) -> Inventory {
        Inventory {
            gpus: (0..n)
                .map(|index| Gpu {
                    index,
                    node: DeviceNode {
                        path: PathBuf::from(format!("/dev/nvidia{index}")),
                        kind: 'c',
                        major: 195,
                        minor: index as u64,
                        mode: 0o666,
                        uid: 0,
                        gid: 0,
                    },
                })
                .collect(),
            controls: vec![],
        }
    }

    fn indices(gpus: &[&Gpu]) -> Vec<u32> {
        gpus.iter().map(|g| g.index).collect()
    }

    #[test]
    fn unset_follows_the_default() {
        assert_eq!(
            Request::parse(None, DefaultGpus::All).unwrap(),
            Request::All { explicit: false }
        );
        assert_eq!(
            Request::parse(None, DefaultGpus::None).unwrap(),
            Request::Nothing
        );
    }

    #[test]
    fn keywords_are_read() {
        for v in ["none", "void", "", "  none "] {
            assert_eq!(
                Request::parse(Some(v), DefaultGpus::All).unwrap(),
                Request::Nothing,
                "{v:?}"
            );
        }
        assert_eq!(
            Request::parse(Some("all"), DefaultGpus::None).unwrap(),
            Request::All { explicit: true }
        );
    }

    #[test]
    fn lists_are_read_in_order_without_repeats() {
        let r = Request::parse(Some("2, 0,2,GPU-abc-12"), DefaultGpus::All).unwrap();
        assert_eq!(
            r,
            Request::Some(vec![
                DeviceRef::Index(2),
                DeviceRef::Index(0),
                DeviceRef::Uuid("GPU-abc-12".into())
            ])
        );
    }

    #[test]
    fn bad_entries_are_named() {
        for (v, bad) in [
            ("abc", "abc"),
            ("0,,1", ""),
            ("0:1", "0:1"),
            ("-1", "-1"),
            ("GPU-", "GPU-"),
            ("GPU-xyz", "GPU-xyz"),
            ("99999999999", "99999999999"),
        ] {
            let e = Request::parse(Some(v), DefaultGpus::All).unwrap_err();
            assert_eq!(
                e,
                RequestError::BadEntry {
                    value: v.into(),
                    entry: bad.into()
                }
            );
            assert!(e.to_string().starts_with("NVIDIA_VISIBLE_DEVICES="));
        }
    }

    #[test]
    fn missing_index_is_an_error_that_says_what_exists() {
        let inv = host(1);
        let r = Request::parse(Some("7"), DefaultGpus::All).unwrap();
        let e = r.resolve(Some("7"), &inv).unwrap_err();
        assert_eq!(
            e.to_string(),
            "NVIDIA_VISIBLE_DEVICES=7: this host has GPUs 0-0"
        );
    }

    #[test]
    fn explicit_all_on_a_host_without_gpus_fails() {
        let r = Request::parse(Some("all"), DefaultGpus::All).unwrap();
        let e = r.resolve(Some("all"), &host(0)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "NVIDIA_VISIBLE_DEVICES=all: this host has no NVIDIA GPU"
        );
    }

    #[test]
    fn default_all_on_a_host_without_gpus_gives_nothing() {
        let r = Request::parse(None, DefaultGpus::All).unwrap();
        assert!(r.resolve(None, &host(0)).unwrap().is_empty());
    }

    #[test]
    fn resolution_keeps_the_order_asked_for() {
        let inv = host(4);
        let r = Request::parse(Some("3,1"), DefaultGpus::All).unwrap();
        let got = r.resolve(Some("3,1"), &inv).unwrap();
        assert_eq!(indices(&got), vec![3, 1]);
        assert_eq!(visible_value(&got), "3,1");
        let all = Request::All { explicit: false }
            .resolve(None, &inv)
            .unwrap();
        assert_eq!(visible_value(&all), "0,1,2,3");
    }

    #[test]
    fn unknown_uuid_is_an_error() {
        let r = Request::parse(Some("GPU-0123abcd"), DefaultGpus::All).unwrap();
        let e = r.resolve(Some("GPU-0123abcd"), &host(1)).unwrap_err();
        assert!(e
            .to_string()
            .contains("no GPU on this host has UUID GPU-0123abcd"));
    }
}
