//! What a container asks for: its `NVIDIA_VISIBLE_DEVICES` (or the configured default when it
//! sets none), read under the operator's policy, and what the shim knows of how it was started
//! that the container cannot forge: the runtime name it came through (argv[0]) and the ECS task
//! its cgroup parent names.
//!
//! Pure code over the spec's JSON and argv[0]: no file is read and no GPU is looked at here.
//! Whether the request can be met, and with which GPUs, is `placement`'s question. Nothing in a
//! container's env ever makes it a reservation.

use std::ffi::OsStr;
use std::path::Path;

use serde_json::Value;

use crate::config::{ContainerRequests, DefaultGpus, SharingSection};
use crate::spec::{env_value, field};

/// The variable the NVIDIA stack reads; the shim reads it and writes back what was given.
pub const VISIBLE_DEVICES: &str = "NVIDIA_VISIBLE_DEVICES";

/// The runtime name the ECS agent asks dockerd for when a task reserved GPUs
/// (`ECS_NVIDIA_RUNTIME`'s default), and so the file name of the link that is the trusted
/// channel.
pub const NVIDIA_RUNTIME: &str = "nvidia";

/// How the shim was started, which the container cannot choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Channel {
    /// Any other name: dockerd's default runtime, `gpu-share`, `runc`.
    #[default]
    Default,
    /// Through a path whose file name is `nvidia`: dockerd's `nvidia` runtime, which the ECS
    /// agent uses for the containers of tasks that reserved GPUs.
    Nvidia,
}

impl Channel {
    /// The channel argv[0] names: the file name the runtime was executed as.
    pub fn from_argv0(argv0: Option<&OsStr>) -> Channel {
        match argv0.and_then(|a| Path::new(a).file_name()) {
            Some(name) if name == NVIDIA_RUNTIME => Channel::Nvidia,
            _ => Channel::Default,
        }
    }
}

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
    pub channel: Channel,
    /// The ECS task the container belongs to, from the cgroup parent the ECS agent gives every
    /// container of a task (`linux.cgroupsPath`), never from its env.
    pub task: Option<String>,
    /// The policy made the shim ignore the container's value (`container_requests = "deny"`).
    pub ignored: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error(
        "{VISIBLE_DEVICES}={value}: {entry:?} is not a GPU index, a GPU-<uuid>, all, none or void"
    )]
    BadEntry { value: String, entry: String },
}

impl Request {
    /// Reads the request from a spec under the operator's sharing policy. Through the `nvidia`
    /// channel the value is ECS's reservation and is read as it is; otherwise, under
    /// `container_requests = "deny"`, the container can only opt out.
    pub fn from_spec(
        spec: &Value,
        sharing: &SharingSection,
        channel: Channel,
    ) -> Result<Request, RequestError> {
        let value = env_value(spec, VISIBLE_DEVICES);
        let binding =
            channel == Channel::Default && sharing.container_requests == ContainerRequests::Deny;
        let (wants, ignored) = match value {
            Some(v) if binding && !is_opt_out(v) => (Wants::parse(None, sharing.default)?, true),
            _ => (Wants::parse(value, sharing.default)?, false),
        };
        Ok(Request {
            wants,
            value: value.map(str::to_owned),
            channel,
            task: task_of(spec),
            ignored,
        })
    }

    /// Whether the GPUs it names are a reservation: only ECS, through the `nvidia` channel,
    /// reserves.
    pub fn reserves(&self) -> bool {
        self.channel == Channel::Nvidia && matches!(self.wants, Wants::All | Wants::Named(_))
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
        let default = default.as_str();
        let mut reason = match &self.value {
            Some(v) if self.ignored => format!(
                "{VISIBLE_DEVICES}={v} ignored (sharing.container_requests=deny), sharing.default={default}"
            ),
            Some(v) => format!("{VISIBLE_DEVICES}={v}"),
            None => format!("{VISIBLE_DEVICES} unset, sharing.default={default}"),
        };
        if self.channel == Channel::Nvidia {
            reason.push_str(", runtime nvidia");
        }
        reason
    }
}

/// `none`, `void` or empty: the one thing a container may always ask for.
fn is_opt_out(value: &str) -> bool {
    matches!(value.trim(), "" | "none" | "void")
}

/// The ECS task id in the cgroup parent the ECS agent gives a task's containers: `/ecs/<id>/...`
/// under cgroupfs, `ecstasks-<id>.slice:...` under systemd (amazon-ecs-agent's
/// `BuildCgroupRoot`). ECS task definitions cannot set a container's cgroup parent.
fn task_of(spec: &Value) -> Option<String> {
    let path = field(field(spec, "linux")?, "cgroupsPath")?.as_str()?;
    let id = if let Some(rest) = path.strip_prefix("/ecs/") {
        rest.split('/').next()?
    } else {
        path.split(':')
            .next()?
            .strip_prefix("ecstasks-")?
            .strip_suffix(".slice")?
    };
    let well_formed = !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    well_formed.then(|| id.to_owned())
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

    fn sharing(default: DefaultGpus, requests: ContainerRequests) -> SharingSection {
        SharingSection {
            default,
            container_requests: requests,
            ..SharingSection::default()
        }
    }

    fn env(values: &[&str]) -> Value {
        json!({"process": {"env": values}})
    }

    #[test]
    fn the_spec_gives_the_value_and_the_default() {
        let allow = sharing(DefaultGpus::None, ContainerRequests::Allow);
        let spec = env(&[
            "ECS_CONTAINER_METADATA_URI_V4=http://x",
            "NVIDIA_VISIBLE_DEVICES=1",
        ]);
        let r = Request::from_spec(&spec, &allow, Channel::Default).unwrap();
        assert_eq!(r.wants, Wants::Named(vec![DeviceRef::Index(1)]));
        assert!(!r.reserves(), "the env never makes a reservation");
        assert_eq!(r.reason(DefaultGpus::None), "NVIDIA_VISIBLE_DEVICES=1");
        let all = sharing(DefaultGpus::All, ContainerRequests::Allow);
        let r = Request::from_spec(&env(&[]), &all, Channel::Default).unwrap();
        assert_eq!(r.wants, Wants::Placed);
        assert_eq!(r.shown_value(), "");
        assert_eq!(
            r.reason(DefaultGpus::All),
            "NVIDIA_VISIBLE_DEVICES unset, sharing.default=all"
        );
    }

    #[test]
    fn the_last_of_repeated_entries_is_the_value_as_runc_reads_it() {
        let allow = sharing(DefaultGpus::All, ContainerRequests::Allow);
        let spec = env(&["NVIDIA_VISIBLE_DEVICES=1", "NVIDIA_VISIBLE_DEVICES=all"]);
        let r = Request::from_spec(&spec, &allow, Channel::Default).unwrap();
        assert_eq!(r.wants, Wants::All);
    }

    #[test]
    fn under_deny_a_container_can_only_opt_out() {
        let deny = sharing(DefaultGpus::All, ContainerRequests::Deny);
        for v in ["all", "0,1", "GPU-00000000", "junk", "3"] {
            let spec = env(&[&format!("NVIDIA_VISIBLE_DEVICES={v}")]);
            let r = Request::from_spec(&spec, &deny, Channel::Default).unwrap();
            assert_eq!(r.wants, Wants::Placed, "{v}");
            assert!(r.ignored);
            assert!(r.reason(DefaultGpus::All).contains("ignored"), "{v}");
        }
        for v in ["none", "void", "", " none "] {
            let spec = env(&[&format!("NVIDIA_VISIBLE_DEVICES={v}")]);
            let r = Request::from_spec(&spec, &deny, Channel::Default).unwrap();
            assert_eq!(r.wants, Wants::Nothing, "{v:?}");
        }
        let spec = env(&["NVIDIA_VISIBLE_DEVICES=GPU-00000001"]);
        let r = Request::from_spec(&spec, &deny, Channel::Nvidia).unwrap();
        assert_eq!(
            r.wants,
            Wants::Named(vec![DeviceRef::Uuid("GPU-00000001".into())])
        );
        assert!(r.reserves());
        assert_eq!(
            r.reason(DefaultGpus::All),
            "NVIDIA_VISIBLE_DEVICES=GPU-00000001, runtime nvidia"
        );
    }

    #[test]
    fn the_channel_is_argv0_s_file_name() {
        let c = |s: &str| Channel::from_argv0(Some(OsStr::new(s)));
        assert_eq!(c("/etc/docker-runtimes.d/nvidia"), Channel::Nvidia);
        assert_eq!(c("nvidia"), Channel::Nvidia);
        assert_eq!(c("/usr/local/bin/gpu-share-runtime"), Channel::Default);
        assert_eq!(c("/usr/bin/nvidia-container-runtime"), Channel::Default);
        assert_eq!(c("/x/nvidia/runc"), Channel::Default);
        assert_eq!(Channel::from_argv0(None), Channel::Default);
    }

    #[test]
    fn the_task_comes_from_the_cgroup_parent() {
        let task = |p: &str| task_of(&json!({"linux": {"cgroupsPath": p}}));
        assert_eq!(
            task("/ecs/0123456789abcdef0123456789abcdef/3f1c").as_deref(),
            Some("0123456789abcdef0123456789abcdef")
        );
        assert_eq!(
            task("ecstasks-0123456789abcdef.slice:docker:3f1c").as_deref(),
            Some("0123456789abcdef")
        );
        assert_eq!(task("/docker/3f1c"), None);
        assert_eq!(task("system.slice:docker:3f1c"), None);
        assert_eq!(task("/ecs/../x"), None);
        assert_eq!(task_of(&json!({"linux": {}})), None);
    }
}
