//! GPU health in words, for `gpu-share list` and `gpu-share doctor`.
//!
//! Owns the wording. Read-only: never creates or rewrites `health.json`.

use std::fmt;
use std::path::Path;

use super::file::{self, Unhealthy};

/// `UNHEALTHY since <time>, Xid <n>`: one GPU's column in `list`.
pub fn describe(u: &Unhealthy) -> String {
    format!("UNHEALTHY since {}, Xid {}", u.since, u.xid)
}

/// The host's health as `doctor` shows it.
pub struct Summary(Result<Vec<Unhealthy>, String>);

impl Summary {
    pub fn read(state_dir: &Path) -> Summary {
        Summary(
            file::read(state_dir)
                .map(|f| f.gpus)
                .map_err(|e| e.to_string()),
        )
    }

    /// Whether every GPU is healthy (and the file readable).
    pub fn healthy(&self) -> bool {
        self.0.as_ref().is_ok_and(Vec::is_empty)
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Ok(gpus) if gpus.is_empty() => write!(f, "no GPU marked unhealthy"),
            Ok(gpus) => {
                let each: Vec<String> = gpus
                    .iter()
                    .map(|u| {
                        let why = if u.message.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", u.message)
                        };
                        format!("GPU {} {}{why}", u.index, describe(u))
                    })
                    .collect();
                write!(
                    f,
                    "{}; no new containers go there until `gpu-share gpu clear N`",
                    each.join("; ")
                )
            }
            Err(e) => write!(f, "{e}; creates take every GPU as healthy"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doctor_names_each_unhealthy_gpu_and_how_to_clear_it() {
        let dir = tempfile::tempdir().unwrap();
        let s = Summary::read(dir.path());
        assert!(s.healthy());
        assert_eq!(s.to_string(), "no GPU marked unhealthy");
        std::fs::write(
            dir.path().join("health.json"),
            r#"{"gpus":[{"index":1,"since":"T","xid":79,"message":"GPU has fallen off the bus."}]}"#,
        )
        .unwrap();
        let s = Summary::read(dir.path());
        assert!(!s.healthy());
        assert_eq!(
            s.to_string(),
            "GPU 1 UNHEALTHY since T, Xid 79 (GPU has fallen off the bus.); no new containers go there until `gpu-share gpu clear N`"
        );
    }
}
