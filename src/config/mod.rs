//! The shim's TOML configuration: `/etc/gpu-share/config.toml`, or the file `GPU_SHARE_CONFIG`
//! names.
//!
//! A missing file means the defaults. Anything else that is wrong (a file that cannot be read,
//! bad TOML, an unknown key, a bad value) is an error that names the file, the line and the key:
//! a typo must never silently turn into a default on a fleet of hosts.
//!
//! The runtime reads the file with `load_for_runtime`, which checks only the sections a create
//! uses: a mistake in `[metrics]` or `[nvml]` is the operator tool's to report (`gpu-share
//! doctor`), never a reason for containers not to start.

use std::path::{Path, PathBuf};

use serde::Deserialize;

mod health;
mod plain;
mod sections;
mod size;

pub use health::*;
pub use sections::*;
pub use size::ByteSize;

/// Where the configuration lives unless `GPU_SHARE_CONFIG` says otherwise.
pub const DEFAULT_PATH: &str = "/etc/gpu-share/config.toml";
/// The environment variable that names another configuration file.
pub const CONFIG_ENV: &str = "GPU_SHARE_CONFIG";

/// A configuration file larger than this is refused, not read.
const MAX_CONFIG_BYTES: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub runtime: RuntimeSection,
    pub devices: DevicesSection,
    pub sharing: SharingSection,
    pub hook: HookSection,
    pub log: LogSection,
    pub state: StateSection,
    pub nvml: NvmlSection,
    pub metrics: MetricsSection,
    pub isolation: IsolationSection,
    pub health: HealthSection,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config {path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config {path}: {detail}")]
    Invalid { path: String, detail: String },
}

impl Config {
    /// The configuration file's path: `GPU_SHARE_CONFIG`, else the default.
    pub fn path_from_env() -> PathBuf {
        std::env::var_os(CONFIG_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH))
    }

    /// Loads the file at `path`, every section checked; a file that does not exist gives the
    /// defaults.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_with(path, Config::parse)
    }

    /// Loads the file at `path` for a create: only the sections the runtime uses are read and
    /// checked, and `[metrics]` and `[nvml]` keep their defaults.
    pub fn load_for_runtime(path: &Path) -> Result<Config, ConfigError> {
        Config::load_with(path, Config::parse_for_runtime)
    }

    fn load_with(
        path: &Path,
        parse: fn(&str) -> Result<Config, String>,
    ) -> Result<Config, ConfigError> {
        let text = crate::read_whole::read_path(path, 0, 4096, MAX_CONFIG_BYTES).and_then(|b| {
            String::from_utf8(b).map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, "not valid UTF-8")
            })
        });
        match text {
            Ok(text) => parse(&text).map_err(|detail| ConfigError::Invalid {
                path: path.display().to_string(),
                detail,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(source) => Err(ConfigError::Read {
                path: path.display().to_string(),
                source,
            }),
        }
    }

    /// Parses and checks configuration text. The error is one line that names the key.
    pub fn parse(text: &str) -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| describe_toml_error(text, &e))?;
        config.check_runtime()?;
        config.check_metrics()?;
        config.check_health()?;
        Ok(config)
    }

    /// Parses the sections the runtime uses, and only checks that the others are TOML. Plain
    /// TOML is read without `toml` (`plain`, the same result); anything else, and every
    /// error, goes through `toml`.
    pub fn parse_for_runtime(text: &str) -> Result<Config, String> {
        let file = match plain::read(text) {
            Some(sections) => sections,
            None => runtime_sections_by_toml(text)?,
        };
        let config = Config {
            runtime: file.runtime,
            devices: file.devices,
            sharing: file.sharing,
            hook: file.hook,
            log: file.log,
            state: file.state,
            isolation: file.isolation,
            ..Config::default()
        };
        config.check_runtime()?;
        Ok(config)
    }

    /// The rules of the sections a create reads.
    fn check_runtime(&self) -> Result<(), String> {
        let absolute = [
            ("runtime.path", self.runtime.path.as_deref()),
            ("devices.root", Some(self.devices.root.as_path())),
            ("hook.path", Some(self.hook.path.as_path())),
            ("log.path", Some(self.log.path.as_path())),
            ("state.dir", Some(self.state.dir.as_path())),
            ("isolation.dir", Some(self.isolation.dir.as_path())),
        ];
        for (key, path) in absolute {
            if let Some(p) = path {
                if !p.is_absolute() {
                    return Err(format!(
                        "{key}: {:?} is not an absolute path",
                        p.display().to_string()
                    ));
                }
            }
        }
        if self.sharing.max_per_gpu == Some(0) {
            return Err(
                "sharing.max_per_gpu: 0 would refuse every container; leave it unset for no limit"
                    .to_owned(),
            );
        }
        self.check_isolation()
    }

    /// The rules of `[isolation]`: caps within 1..=100 percent and at least 1 MiB, defaults
    /// within the maxima, and `mps` mode with a default memory cap (a container that asks for
    /// none must still get one).
    fn check_isolation(&self) -> Result<(), String> {
        let iso = &self.isolation;
        let percents = [
            ("isolation.compute_percent", iso.compute_percent),
            ("isolation.max_compute_percent", iso.max_compute_percent),
        ];
        for (key, value) in percents {
            if let Some(p) = value.filter(|p| !(1..=100).contains(p)) {
                return Err(format!("{key}: {p} is not a percentage from 1 to 100"));
            }
        }
        let sizes = [
            ("isolation.memory", iso.memory),
            ("isolation.max_memory", iso.max_memory),
        ];
        for (key, value) in sizes {
            if let Some(size) = value.filter(|s| s.mib() == 0) {
                return Err(format!("{key}: {size} is under 1MiB, the smallest MPS cap"));
            }
        }
        if let (Some(cap), Some(max)) = (iso.memory, iso.max_memory) {
            if cap > max {
                return Err(format!(
                    "isolation.memory: {cap} is above isolation.max_memory ({max})"
                ));
            }
        }
        if let (Some(cap), Some(max)) = (iso.compute_percent, iso.max_compute_percent) {
            if cap > max {
                return Err(format!(
                    "isolation.compute_percent: {cap} is above isolation.max_compute_percent ({max})"
                ));
            }
        }
        if iso.answer_timeout_ms == 0 || iso.answer_timeout_ms > 60_000 {
            return Err("isolation.answer_timeout_ms: must be 1 to 60000".to_owned());
        }
        if iso.mode == IsolationMode::Mps && iso.memory.is_none() {
            return Err(
                "isolation.memory: mode = \"mps\" needs the cap a container that asks for none gets (e.g. memory = \"4GiB\")"
                    .to_owned(),
            );
        }
        Ok(())
    }

    /// The rules of `[metrics]`, which only `gpu-share` reads.
    fn check_metrics(&self) -> Result<(), String> {
        if self.metrics.interval_seconds == 0 {
            return Err("metrics.interval_seconds: must be at least 1".to_owned());
        }
        if self.metrics.namespace.is_empty() || self.metrics.namespace.len() > 255 {
            return Err("metrics.namespace: must be 1 to 255 characters".to_owned());
        }
        Ok(())
    }
}

impl Config {
    /// The rules of `[health]`, which only the metrics agent reads.
    fn check_health(&self) -> Result<(), String> {
        match &self.health.critical_xids {
            CriticalXids::Named(n) if n != ALL_BUT_IGNORED => Err(format!(
                "health.critical_xids: {n:?}: give \"{ALL_BUT_IGNORED}\" or a list of Xids"
            )),
            CriticalXids::List(list) => match list.iter().find(|x| self.health.ignore_xids.contains(x)) {
                Some(x) => Err(format!(
                    "health.critical_xids: Xid {x} is also in health.ignore_xids; remove it from one"
                )),
                None => Ok(()),
            },
            CriticalXids::Named(_) => Ok(()),
        }?;
        if self.health.sources.contains(&XidSource::Kmsg) && !self.health.kmsg.is_absolute() {
            return Err(format!(
                "health.kmsg: {:?} is not an absolute path",
                self.health.kmsg.display().to_string()
            ));
        }
        Ok(())
    }
}

/// The runtime's sections as `toml` reads them (`plain` reads the plain subset the same).
fn runtime_sections_by_toml(text: &str) -> Result<RuntimeSections, String> {
    toml::from_str(text).map_err(|e| describe_toml_error(text, &e))
}

/// Turns toml's multi-line report into one line: `line N: section.key: what is wrong`.
fn describe_toml_error(text: &str, err: &toml::de::Error) -> String {
    let message = err.message().trim().replace('\n', " ");
    let Some(span) = err.span() else {
        return message;
    };
    let start = span.start.min(text.len());
    let line_no = text[..start].matches('\n').count() + 1;
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("").trim();
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"'))
        .filter(|k| !k.is_empty() && !k.starts_with('['));
    let section = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('[') && !l.starts_with("[["))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim());
    match (section, key) {
        (Some(s), Some(k)) => format!("line {line_no}: {s}.{k}: {message}"),
        (None, Some(k)) => format!("line {line_no}: {k}: {message}"),
        _ => format!("line {line_no}: {message}"),
    }
}

#[cfg(test)]
mod tests;
