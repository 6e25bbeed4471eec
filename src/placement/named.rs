//! GPUs a container names itself: indices and `GPU-<uuid>`s (or unique prefixes of them),
//! looked up in the host's inventory.
//!
//! Pure: the inventory in, GPU indices out. A name that matches no GPU, or more than one, is an
//! error that says what the host has.

use crate::gpu::{Gpu, Inventory};
use crate::request::{DeviceRef, VISIBLE_DEVICES};

/// The fewest hex digits of a UUID prefix that select a GPU (as nvidia-smi asks).
pub const MIN_UUID_PREFIX: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
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

/// Every GPU, in index order; naming all of them on a host with none is an error.
pub fn every(inventory: &Inventory, value: &str) -> Result<Vec<u32>, SelectError> {
    if inventory.gpus.is_empty() {
        return Err(SelectError::NoSuchGpu {
            value: value.to_owned(),
            have: inventory.describe_gpus(),
        });
    }
    Ok(inventory.gpus.iter().map(|g| g.index).collect())
}

/// The GPUs `refs` name, in the order named. `value` is the variable as the container set it.
pub fn resolve(
    refs: &[DeviceRef],
    inventory: &Inventory,
    value: &str,
) -> Result<Vec<u32>, SelectError> {
    refs.iter()
        .map(|r| match r {
            DeviceRef::Index(i) => {
                inventory
                    .gpu(*i)
                    .map(|g| g.index)
                    .ok_or_else(|| SelectError::NoSuchGpu {
                        value: value.to_owned(),
                        have: inventory.describe_gpus(),
                    })
            }
            DeviceRef::Uuid(u) => by_uuid(inventory, u, value).map(|g| g.index),
        })
        .collect()
}

/// The one GPU whose UUID is `wanted` or starts with it (case-insensitive).
fn by_uuid<'a>(
    inventory: &'a Inventory,
    wanted: &str,
    value: &str,
) -> Result<&'a Gpu, SelectError> {
    let digits = wanted[4..].bytes().filter(u8::is_ascii_hexdigit).count();
    if digits < MIN_UUID_PREFIX {
        return Err(SelectError::ShortUuid {
            value: value.to_owned(),
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
        (Some(_), Some(_)) => Err(SelectError::AmbiguousUuid {
            value: value.to_owned(),
            uuid: wanted.to_owned(),
        }),
        (None, _) => {
            let uuids: Vec<&str> = inventory
                .gpus
                .iter()
                .filter_map(|g| g.info.uuid.as_deref())
                .collect();
            Err(SelectError::NoSuchUuid {
                value: value.to_owned(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DefaultGpus;
    use crate::request::Wants;

    fn host(n: u32) -> Inventory {
        Inventory::synthetic(n)
    }

    fn pick(value: &str, inv: &Inventory) -> Result<Vec<u32>, SelectError> {
        match Wants::parse(Some(value), DefaultGpus::All).unwrap() {
            Wants::All => every(inv, value),
            Wants::Named(refs) => resolve(&refs, inv, value),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn missing_index_is_an_error_that_says_what_exists() {
        let e = pick("7", &host(1)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "NVIDIA_VISIBLE_DEVICES=7: this host has GPUs 0-0"
        );
    }

    #[test]
    fn explicit_all_on_a_host_without_gpus_fails() {
        let e = pick("all", &host(0)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "NVIDIA_VISIBLE_DEVICES=all: this host has no NVIDIA GPU"
        );
    }

    #[test]
    fn resolution_keeps_the_order_asked_for() {
        assert_eq!(pick("3,1", &host(4)).unwrap(), vec![3, 1]);
        assert_eq!(pick("all", &host(4)).unwrap(), vec![0, 1, 2, 3]);
    }

    #[test]
    fn unknown_uuid_is_an_error() {
        let e = pick("GPU-0123abcd", &host(1)).unwrap_err();
        assert!(
            e.to_string().starts_with("NVIDIA_VISIBLE_DEVICES=GPU-0123abcd: no GPU on this host has UUID GPU-0123abcd (it has GPU-00000000-"),
            "{e}"
        );
    }

    #[test]
    fn uuids_and_prefixes_select_gpus() {
        let inv = host(4);
        let full = inv.gpus[2].info.uuid.clone().unwrap();
        assert_eq!(pick(&full, &inv).unwrap(), vec![2]);
        let shouted = format!("GPU-{}", full[4..].to_uppercase());
        assert_eq!(pick(&shouted, &inv).unwrap(), vec![2]);
        assert_eq!(pick("GPU-00000003", &inv).unwrap(), vec![3]);
        assert_eq!(pick("1,GPU-00000003-0000,0", &inv).unwrap(), vec![1, 3, 0]);
    }

    #[test]
    fn short_or_ambiguous_prefixes_are_errors() {
        let inv = host(4);
        let e = pick("GPU-0000000", &inv).unwrap_err();
        assert!(matches!(e, SelectError::ShortUuid { .. }), "{e}");
        assert!(e.to_string().contains("at least 8 hex digits"), "{e}");
        assert_eq!(pick("GPU-00000000-0", &inv).unwrap(), vec![0]);
        let mut twins = host(2);
        twins.gpus[1].info.uuid = Some("GPU-00000000-0000-4000-8000-999999999999".into());
        let e = pick("GPU-00000000", &twins).unwrap_err();
        assert!(matches!(e, SelectError::AmbiguousUuid { .. }), "{e}");
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
        let e = pick("GPU-12345678", &inv).unwrap_err();
        assert!(
            e.to_string()
                .contains("no GPU whose UUID the driver reports"),
            "{e}"
        );
    }
}
