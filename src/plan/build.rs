//! oci-spec's builders turned into JSON values for the spec, and the error an edit fails with.
//!
//! A builder that fails is an error that stops the create, never a piece silently left out.

use serde_json::Value;

use crate::spec::ShapeError;

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Shape(#[from] ShapeError),
    /// A device node whose path names one NVIDIA node and whose number another (or none).
    #[error(
        "config.json: linux.devices gives {given:?} as {found}, but {path} is {expected} on this \
         host: refusing a device node whose path and number disagree"
    )]
    Contradicts {
        given: String,
        found: String,
        path: String,
        expected: String,
    },
    #[error("cannot build {what} for config.json: {source}")]
    Build {
        what: &'static str,
        source: oci_spec::OciSpecError,
    },
}

/// oci-spec's type for a node's kind.
pub fn device_type(kind: char) -> oci_spec::runtime::LinuxDeviceType {
    if kind == 'b' {
        oci_spec::runtime::LinuxDeviceType::B
    } else {
        oci_spec::runtime::LinuxDeviceType::C
    }
}

/// An oci-spec value as JSON, or the builder's error.
pub fn built<T: serde::Serialize>(
    what: &'static str,
    result: Result<T, oci_spec::OciSpecError>,
) -> Result<Value, PlanError> {
    let value = result.map_err(|source| PlanError::Build { what, source })?;
    serde_json::to_value(value).map_err(|e| PlanError::Build {
        what,
        source: oci_spec::OciSpecError::SerDe(e),
    })
}
