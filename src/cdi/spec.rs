//! One CDI spec file: its shape, parsing it (YAML or JSON, by extension) and the checks that
//! make it usable (a version we know, hook stages OCI has, device names given).
//!
//! Why not the CNCF `container-device-interface` crate: it pulls jsonschema, regex, clap,
//! anyhow and serde_yaml (archived) into a static runtime whose create path must stay near the
//! exec floor, and it applies edits through oci-spec's typed round trip, which loses fields
//! runc knows and oci-spec does not. We need a few fields and apply them as JSON (`plan::cdi`),
//! so a few serde types over `serde_norway` (serde_yaml's maintained fork) do it.
//!
//! Pure apart from reading the one file it is given; it never looks at devices or the digest.

use std::path::Path;

use serde::Deserialize;

use super::edits::{ContainerEdits, HOOK_STAGES};

/// The CDI kind NVIDIA's toolkit writes GPUs under.
pub const NVIDIA_GPU_KIND: &str = "nvidia.com/gpu";

/// A spec larger than this is refused: nvidia-ctk's are tens of KiB.
const MAX_SPEC_BYTES: u64 = 4 * 1024 * 1024;

/// The oldest version read: nvidia-ctk has written 0.3.0 to 0.8.0.
const OLDEST_MINOR: u64 = 3;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    pub cdi_version: String,
    pub kind: String,
    #[serde(default)]
    pub devices: Vec<Device>,
    #[serde(default)]
    pub container_edits: ContainerEdits,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    pub name: String,
    #[serde(default)]
    pub container_edits: ContainerEdits,
}

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("CDI spec {path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("CDI spec {path}: {size} bytes, over the {MAX_SPEC_BYTES}-byte limit")]
    TooLarge { path: String, size: u64 },
    #[error("CDI spec {path}: not a valid spec: {detail}")]
    Parse { path: String, detail: String },
    #[error(
        "CDI spec {path}: cdiVersion {version:?} is not one gpu-share reads (0.3.0 to 0.x); \
         regenerate it with this host's nvidia-ctk"
    )]
    Version { path: String, version: String },
    #[error("CDI spec {path}: hook stage {stage:?} is not an OCI hook stage")]
    HookStage { path: String, stage: String },
    #[error("CDI spec {path}: device {name:?} is given twice")]
    Repeated { path: String, name: String },
}

/// Whether `path` is a spec file by CDI's rule: a `.yaml` or `.json` name.
pub fn is_spec_file(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "json")
    )
}

/// Reads and checks the spec at `path`.
pub fn read(path: &Path) -> Result<Spec, SpecError> {
    let shown = || path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| SpecError::Read {
        path: shown(),
        source,
    })?;
    if bytes.len() as u64 > MAX_SPEC_BYTES {
        return Err(SpecError::TooLarge {
            path: shown(),
            size: bytes.len() as u64,
        });
    }
    parse(
        &bytes,
        path.extension().is_some_and(|e| e == "json"),
        &shown(),
    )
}

/// Parses spec bytes (`json`: as JSON, else YAML) and checks them; `path` names it in errors.
pub fn parse(bytes: &[u8], json: bool, path: &str) -> Result<Spec, SpecError> {
    let parsed: Result<Spec, String> = if json {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    } else {
        serde_norway::from_slice(bytes).map_err(|e| e.to_string())
    };
    let spec = parsed.map_err(|detail| SpecError::Parse {
        path: path.to_owned(),
        detail: detail.replace('\n', " "),
    })?;
    if !version_is_known(&spec.cdi_version) {
        return Err(SpecError::Version {
            path: path.to_owned(),
            version: spec.cdi_version,
        });
    }
    let every_edits = std::iter::once(&spec.container_edits)
        .chain(spec.devices.iter().map(|d| &d.container_edits));
    for edits in every_edits {
        if let Some(h) = edits
            .hooks
            .iter()
            .find(|h| !HOOK_STAGES.contains(&h.hook_name.as_str()))
        {
            return Err(SpecError::HookStage {
                path: path.to_owned(),
                stage: h.hook_name.clone(),
            });
        }
    }
    for (i, d) in spec.devices.iter().enumerate() {
        if spec.devices[..i].iter().any(|e| e.name == d.name) {
            return Err(SpecError::Repeated {
                path: path.to_owned(),
                name: d.name.clone(),
            });
        }
    }
    Ok(spec)
}

/// `0.x.y` with x at least 3: CDI keeps major 0 compatible, and nvidia-ctk wrote 0.3.0 first.
fn version_is_known(version: &str) -> bool {
    let mut parts = version.split('.');
    let major = parts.next().and_then(|p| p.parse::<u64>().ok());
    let minor = parts.next().and_then(|p| p.parse::<u64>().ok());
    major == Some(0) && minor.is_some_and(|m| m >= OLDEST_MINOR)
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"---
cdiVersion: 0.5.0
kind: nvidia.com/gpu
devices:
- name: "0"
  containerEdits:
    deviceNodes:
    - path: /dev/nvidia0
containerEdits:
  env:
  - NVIDIA_VISIBLE_DEVICES=void
  hooks:
  - hookName: createContainer
    path: /usr/bin/nvidia-cdi-hook
    args: [nvidia-cdi-hook, update-ldcache, --folder, /usr/lib64]
  mounts:
  - hostPath: /usr/lib64/libcuda.so.535.104.05
    containerPath: /usr/lib64/libcuda.so.535.104.05
    options: [ro, nosuid, nodev, rbind, rprivate]
"#;

    #[test]
    fn reads_what_nvidia_ctk_writes() {
        let s = parse(YAML.as_bytes(), false, "x.yaml").unwrap();
        assert_eq!(s.kind, NVIDIA_GPU_KIND);
        assert_eq!(s.devices[0].name, "0");
        assert_eq!(
            s.devices[0].container_edits.device_nodes[0].path,
            "/dev/nvidia0"
        );
        assert_eq!(s.container_edits.mounts[0].options.len(), 5);
        assert_eq!(s.container_edits.hooks[0].args[1], "update-ldcache");
    }

    #[test]
    fn unknown_majors_and_old_versions_are_refused() {
        for v in ["1.0.0", "0.2.0", "x"] {
            let text = YAML.replace("0.5.0", v);
            let e = parse(text.as_bytes(), false, "x.yaml").unwrap_err();
            assert!(matches!(e, SpecError::Version { .. }), "{v}: {e}");
        }
        assert!(parse(YAML.replace("0.5.0", "0.8.0").as_bytes(), false, "x").is_ok());
    }

    #[test]
    fn bad_stages_and_repeated_devices_are_refused() {
        let text = YAML.replace("hookName: createContainer", "hookName: beforeAll");
        let e = parse(text.as_bytes(), false, "x.yaml").unwrap_err();
        assert!(e.to_string().contains("beforeAll"), "{e}");
        let json = r#"{"cdiVersion":"0.6.0","kind":"nvidia.com/gpu","devices":[{"name":"0"},{"name":"0"}]}"#;
        let e = parse(json.as_bytes(), true, "x.json").unwrap_err();
        assert!(matches!(e, SpecError::Repeated { .. }), "{e}");
        let e = parse(b"kind: [", false, "x.yaml").unwrap_err();
        assert!(!e.to_string().contains('\n'), "{e}");
    }
}
