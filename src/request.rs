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
    #[error("{VISIBLE_DEVICES}={value}: no GPU on this host has UUID {uuid} (it has {have})")]
    NoSuchUuid {
        value: String,
        uuid: String,
        have: String,
    },
    #[error("{VISIBLE_DEVICES}={value}: {uuid} matches more than one GPU: give more of the UUID")]
    AmbiguousUuid { value: String, uuid: String },
    #[error("{VISIBLE_DEVICES}={value}: {uuid}: a UUID prefix needs at least {MIN_UUID_PREFIX} hex digits")]
    ShortUuid { value: String, uuid: String },
}

/// The fewest hex digits of a UUID prefix that select a GPU (as nvidia-smi asks).
pub const MIN_UUID_PREFIX: usize = 8;

impl RequestError {
    /// Fills in the whole variable's value, which the per-entry lookup does not know.
    fn with_value(self, value: String) -> RequestError {
        match self {
            RequestError::NoSuchUuid { uuid, have, .. } => {
                RequestError::NoSuchUuid { value, uuid, have }
            }
            RequestError::AmbiguousUuid { uuid, .. } => RequestError::AmbiguousUuid { value, uuid },
            RequestError::ShortUuid { uuid, .. } => RequestError::ShortUuid { value, uuid },
            other => other,
        }
    }
}

/// The one GPU whose UUID is `wanted` or starts with it (case-insensitive).
fn by_uuid<'a>(inventory: &'a Inventory, wanted: &str) -> Result<&'a Gpu, RequestError> {
    let digits = wanted[4..].bytes().filter(u8::is_ascii_hexdigit).count();
    if digits < MIN_UUID_PREFIX {
        return Err(RequestError::ShortUuid {
            value: String::new(),
            uuid: wanted.to_owned(),
        });
    }
    let wanted_lc = wanted.to_ascii_lowercase();
    let mut matches = inventory.gpus.iter().filter(|g| {
        g.info
            .uuid
            .as_deref()
            .is_some_and(|u| u.to_ascii_lowercase().starts_with(&wanted_lc))
    });
    match (matches.next(), matches.next()) {
        (Some(gpu), None) => Ok(gpu),
        (Some(_), Some(_)) => Err(RequestError::AmbiguousUuid {
            value: String::new(),
            uuid: wanted.to_owned(),
        }),
        (None, _) => {
            let uuids: Vec<&str> = inventory
                .gpus
                .iter()
                .filter_map(|g| g.info.uuid.as_deref())
                .collect();
            Err(RequestError::NoSuchUuid {
                value: String::new(),
                uuid: wanted.to_owned(),
                have: if uuids.is_empty() {
                    "no GPU whose UUID the driver reports".to_owned()
                } else {
                    uuids.join(", ")
                },
            })
        }
    }
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
                    DeviceRef::Uuid(u) => by_uuid(inventory, u).map_err(|e| e.with_value(value())),
                })
                .collect(),
        }
    }
}

fn parse_entry(entry: &str) -> Option<DeviceRef> {
    if !entry.is_empty() && entry.bytes().all(|b| b.is_ascii_digit()) {
        return entry.parse().ok().map(DeviceRef::Index);
    }
    // nvidia-smi prints `GPU-`; people type `gpu-` too.
    let prefix = entry.get(..4)?;
    if !prefix.eq_ignore_ascii_case("GPU-") {
        return None;
    }
    let hex = &entry[4..];
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

    fn host(n: u32) -> Inventory {
        Inventory::synthetic(n)
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
            ("éé", "éé"),
            ("GPé", "GPé"),
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

    fn resolve(value: &str, inv: &Inventory) -> Result<Vec<u32>, RequestError> {
        let r = Request::parse(Some(value), DefaultGpus::All)?;
        r.resolve(Some(value), inv).map(|g| indices(&g))
    }

    #[test]
    fn unknown_uuid_is_an_error() {
        let e = resolve("GPU-0123abcd", &host(1)).unwrap_err();
        assert!(
            e.to_string().starts_with("NVIDIA_VISIBLE_DEVICES=GPU-0123abcd: no GPU on this host has UUID GPU-0123abcd (it has GPU-00000000-"),
            "{e}"
        );
    }

    #[test]
    fn uuids_and_prefixes_select_gpus() {
        let inv = host(4);
        let full = inv.gpus[2].info.uuid.clone().unwrap();
        assert_eq!(resolve(&full, &inv).unwrap(), vec![2]);
        let shouted = format!("GPU-{}", full[4..].to_uppercase());
        assert_eq!(resolve(&shouted, &inv).unwrap(), vec![2]);
        assert_eq!(resolve("GPU-00000003", &inv).unwrap(), vec![3]);
        assert_eq!(
            resolve("1,GPU-00000003-0000,0", &inv).unwrap(),
            vec![1, 3, 0]
        );
    }

    #[test]
    fn short_or_ambiguous_prefixes_are_errors() {
        let inv = host(4);
        let e = resolve("GPU-0000000", &inv).unwrap_err();
        assert!(matches!(e, RequestError::ShortUuid { .. }), "{e}");
        assert!(e.to_string().contains("at least 8 hex digits"), "{e}");
        assert_eq!(resolve("GPU-00000000-0", &inv).unwrap(), vec![0]);
        let mut twins = host(2);
        twins.gpus[1].info.uuid = Some("GPU-00000000-0000-4000-8000-999999999999".into());
        let e = resolve("GPU-00000000", &twins).unwrap_err();
        assert!(matches!(e, RequestError::AmbiguousUuid { .. }), "{e}");
        assert!(
            e.to_string()
                .starts_with("NVIDIA_VISIBLE_DEVICES=GPU-00000000: "),
            "{e}"
        );
    }

    #[test]
    fn uuid_on_a_host_without_uuids_says_so() {
        let mut inv = host(1);
        inv.gpus[0].info.uuid = None;
        let e = resolve("GPU-12345678", &inv).unwrap_err();
        assert!(
            e.to_string()
                .contains("no GPU whose UUID the driver reports"),
            "{e}"
        );
    }
}
