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

use serde::de::IgnoredAny;
use serde::Deserialize;

mod sections;

pub use sections::*;

/// Where the configuration lives unless `GPU_SHARE_CONFIG` says otherwise.
pub const DEFAULT_PATH: &str = "/etc/gpu-share/config.toml";
/// The environment variable that names another configuration file.
pub const CONFIG_ENV: &str = "GPU_SHARE_CONFIG";

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
}

/// The file as the runtime reads it: the sections a create uses, and the others only as TOML.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RuntimeFile {
    runtime: RuntimeSection,
    devices: DevicesSection,
    sharing: SharingSection,
    hook: HookSection,
    log: LogSection,
    state: StateSection,
    nvml: IgnoredAny,
    metrics: IgnoredAny,
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
        match std::fs::read_to_string(path) {
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
        Ok(config)
    }

    /// Parses the sections the runtime uses, and only checks that the others are TOML.
    pub fn parse_for_runtime(text: &str) -> Result<Config, String> {
        let file: RuntimeFile = toml::from_str(text).map_err(|e| describe_toml_error(text, &e))?;
        let config = Config {
            runtime: file.runtime,
            devices: file.devices,
            sharing: file.sharing,
            hook: file.hook,
            log: file.log,
            state: file.state,
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
mod tests {
    use super::*;

    #[test]
    fn empty_text_gives_defaults() {
        let c = Config::parse("").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.devices.root, PathBuf::from("/"));
        assert_eq!(c.sharing.default, DefaultGpus::All);
        assert_eq!(c.log.level, LogLevel::Info);
        assert_eq!(c.runtime.path, None);
    }

    #[test]
    fn every_key_is_read() {
        let c = Config::parse(
            r#"
[runtime]
path = "/opt/runc"
[devices]
root = "/tmp/fake"
[sharing]
default = "none"
placement = "pack"
max_per_gpu = 15
[state]
dir = "/tmp/state"
[hook]
path = "/opt/hook"
[log]
path = "/tmp/shim.log"
level = "debug"
"#,
        )
        .unwrap();
        assert_eq!(c.runtime.path, Some(PathBuf::from("/opt/runc")));
        assert_eq!(c.devices.root, PathBuf::from("/tmp/fake"));
        assert_eq!(c.sharing.default, DefaultGpus::None);
        assert_eq!(c.sharing.placement, Placement::Pack);
        assert_eq!(c.sharing.max_per_gpu, Some(15));
        assert_eq!(c.state.dir, PathBuf::from("/tmp/state"));
        assert_eq!(c.hook.path, PathBuf::from("/opt/hook"));
        assert_eq!(c.log.path, PathBuf::from("/tmp/shim.log"));
        assert_eq!(c.log.level, LogLevel::Debug);
    }

    #[test]
    fn unknown_key_is_named() {
        let e = Config::parse("[sharing]\ndefualt = \"all\"\n").unwrap_err();
        assert!(e.contains("line 2"), "{e}");
        assert!(e.contains("sharing.defualt"), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn unknown_section_is_named() {
        let e = Config::parse("[shareing]\ndefault = \"all\"\n").unwrap_err();
        assert!(e.contains("shareing"), "{e}");
    }

    #[test]
    fn bad_value_names_the_key() {
        let e = Config::parse("[sharing]\ndefault = \"some\"\n").unwrap_err();
        assert!(e.contains("sharing.default"), "{e}");
        assert!(e.contains("some"), "{e}");
        let e = Config::parse("[log]\nlevel = 3\n").unwrap_err();
        assert!(e.contains("log.level"), "{e}");
    }

    #[test]
    fn zero_limit_is_refused() {
        let e = Config::parse("[sharing]\nmax_per_gpu = 0\n").unwrap_err();
        assert!(e.contains("sharing.max_per_gpu"), "{e}");
        let e = Config::parse("[sharing]\nmax_per_gpu = -1\n").unwrap_err();
        assert!(e.contains("sharing.max_per_gpu"), "{e}");
    }

    #[test]
    fn relative_paths_are_refused() {
        let e = Config::parse("[devices]\nroot = \"fake\"\n").unwrap_err();
        assert!(e.contains("devices.root"), "{e}");
    }

    #[test]
    fn broken_toml_is_one_line() {
        let e = Config::parse("[log\nlevel = \"info\"\n").unwrap_err();
        assert!(e.starts_with("line 1"), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn missing_file_gives_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let c = Config::load(&dir.path().join("absent.toml")).unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn unreadable_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        // A directory cannot be read as a file, even by root.
        let e = Config::load(dir.path()).unwrap_err();
        assert!(e.to_string().contains("cannot read"), "{e}");
    }

    #[test]
    fn the_runtime_reads_only_its_own_sections() {
        let text = "[sharing]\nplacement = \"spread\"\n[metrics]\nnamespace = \"\"\nno_such_key = 1\n[nvml]\nlibrary = 5\n";
        assert!(Config::parse(text).is_err());
        let c = Config::parse_for_runtime(text).unwrap();
        assert_eq!(c.sharing.placement, Placement::Spread);
        assert_eq!(c.metrics, MetricsSection::default());
        let e = Config::parse_for_runtime("[sharing]\nplacment = \"spread\"\n").unwrap_err();
        assert!(e.contains("sharing.placment"), "{e}");
        let e = Config::parse_for_runtime("[metrix]\n").unwrap_err();
        assert!(e.contains("metrix"), "{e}");
        let e = Config::parse_for_runtime("[metrics\n").unwrap_err();
        assert!(e.starts_with("line 1"), "{e}");
    }
}
