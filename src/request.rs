//! What a container asks for: its `NVIDIA_VISIBLE_DEVICES` (or the configured default when it
//! sets none) and how it was started.
//!
//! Pure code over the spec's JSON: no file is read and no GPU is looked at here. Whether the
//! request can be met, and with which GPUs, is `placement`'s question.

use serde_json::Value;

use crate::config::DefaultGpus;
use crate::spec::env_value;

/// The variable the NVIDIA stack reads; the shim reads it and writes back what was given.
pub const VISIBLE_DEVICES: &str = "NVIDIA_VISIBLE_DEVICES";

/// Variables ECS puts in every task container's env.
const ECS_METADATA_VARS: &[&str] = &[
    "ECS_CONTAINER_METADATA_URI_V4",
    "ECS_CONTAINER_METADATA_URI",
];

/// One entry of a device list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceRef {
    Index(u32),
    Uuid(String),
}

/// Which GPUs a container wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wants {
    /// It names none and the default is `all`: the placement policy decides.
    Placed,
    /// `all`: every GPU, named by the container itself.
    All,
    /// `none`, `void`, an empty value, or the `none` default: the spec is left alone.
    Nothing,
    /// A list of GPUs named by the container.
    Named(Vec<DeviceRef>),
}

/// What a container asked for, and what the shim knows of how it was started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub wants: Wants,
    /// `NVIDIA_VISIBLE_DEVICES` as the container set it (`None`: unset), for messages.
    pub value: Option<String>,
    /// The container belongs to an ECS task (ECS's metadata variables are in its env).
    pub ecs_task: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error(
        "{VISIBLE_DEVICES}={value}: {entry:?} is not a GPU index, a GPU-<uuid>, all, none or void"
    )]
    BadEntry { value: String, entry: String },
}

impl Request {
    /// Reads the request from a spec, with the host's default for a container that sets none.
    pub fn from_spec(spec: &Value, default: DefaultGpus) -> Result<Request, RequestError> {
        let value = env_value(spec, VISIBLE_DEVICES);
        Ok(Request {
            wants: Wants::parse(value, default)?,
            value: value.map(str::to_owned),
            ecs_task: ECS_METADATA_VARS
                .iter()
                .any(|k| env_value(spec, k).is_some()),
        })
    }

    /// Whether it wants any GPU at all (else the host is not even looked at).
    pub fn wants_gpus(&self) -> bool {
        self.wants != Wants::Nothing
    }

    /// The variable's value as given, `""` when unset: for error messages.
    pub fn shown_value(&self) -> &str {
        self.value.as_deref().unwrap_or("")
    }

    /// Why the container gets what it gets, for the shim's log.
    pub fn reason(&self, default: DefaultGpus) -> String {
        match &self.value {
            Some(v) => format!("{VISIBLE_DEVICES}={v}"),
            None => format!(
                "{VISIBLE_DEVICES} unset, sharing.default={}",
                default.as_str()
            ),
        }
    }
}

impl Wants {
    /// Reads the container's value (`None`: the variable is not set) with the host default.
    pub fn parse(value: Option<&str>, default: DefaultGpus) -> Result<Wants, RequestError> {
        let Some(value) = value else {
            return Ok(match default {
                DefaultGpus::All => Wants::Placed,
                DefaultGpus::None => Wants::Nothing,
            });
        };
        let trimmed = value.trim();
        match trimmed {
            // An empty value is how the NVIDIA stack says "no GPU" too.
            "" | "none" | "void" => return Ok(Wants::Nothing),
            "all" => return Ok(Wants::All),
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
        Ok(Wants::Named(refs))
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unset_follows_the_default() {
        assert_eq!(Wants::parse(None, DefaultGpus::All).unwrap(), Wants::Placed);
        assert_eq!(
            Wants::parse(None, DefaultGpus::None).unwrap(),
            Wants::Nothing
        );
    }

    #[test]
    fn keywords_are_read() {
        for v in ["none", "void", "", "  none "] {
            assert_eq!(
                Wants::parse(Some(v), DefaultGpus::All).unwrap(),
                Wants::Nothing,
                "{v:?}"
            );
        }
        assert_eq!(
            Wants::parse(Some("all"), DefaultGpus::None).unwrap(),
            Wants::All
        );
    }

    #[test]
    fn lists_are_read_in_order_without_repeats() {
        let r = Wants::parse(Some("2, 0,2,GPU-abc-12"), DefaultGpus::All).unwrap();
        assert_eq!(
            r,
            Wants::Named(vec![
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
            let e = Wants::parse(Some(v), DefaultGpus::All).unwrap_err();
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
    fn the_spec_gives_value_default_and_ecs_membership() {
        let spec = json!({"process": {"env": ["ECS_CONTAINER_METADATA_URI_V4=http://x", "NVIDIA_VISIBLE_DEVICES=1"]}});
        let r = Request::from_spec(&spec, DefaultGpus::None).unwrap();
        assert_eq!(r.wants, Wants::Named(vec![DeviceRef::Index(1)]));
        assert!(r.ecs_task);
        assert_eq!(r.reason(DefaultGpus::None), "NVIDIA_VISIBLE_DEVICES=1");
        let r = Request::from_spec(&json!({"process": {"env": []}}), DefaultGpus::All).unwrap();
        assert_eq!(r.wants, Wants::Placed);
        assert!(!r.ecs_task);
        assert_eq!(r.shown_value(), "");
        assert_eq!(
            r.reason(DefaultGpus::All),
            "NVIDIA_VISIBLE_DEVICES unset, sharing.default=all"
        );
    }
}
