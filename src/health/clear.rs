//! `gpu-share gpu clear N|UUID|--all`: the operator says an unhealthy GPU is fixed, and
//! placement may give it containers again.
//!
//! Owns which entries a clear removes. Rewrites `health.json` under its writers' lock, so a
//! clear never loses a mark the agent makes meanwhile. Never touches a GPU or the placement
//! state.

use std::path::Path;

use super::file::{self, HealthError, Unhealthy};

/// Which GPUs to clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Index(u32),
    /// A whole `GPU-...` UUID, any case.
    Uuid(String),
    All,
}

impl Target {
    /// `1` or `GPU-...`; anything else is `None`.
    pub fn parse(text: &str) -> Option<Target> {
        if let Ok(i) = text.parse() {
            return Some(Target::Index(i));
        }
        let is_uuid = text.len() > 4
            && text
                .get(..4)
                .is_some_and(|p| p.eq_ignore_ascii_case("GPU-"));
        is_uuid.then(|| Target::Uuid(text.to_owned()))
    }

    fn matches(&self, u: &Unhealthy) -> bool {
        match self {
            Target::All => true,
            Target::Index(i) => u.index == *i,
            Target::Uuid(w) => u.uuid.as_deref().is_some_and(|x| x.eq_ignore_ascii_case(w)),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClearError {
    #[error("GPU {what} is not marked unhealthy ({marked}); nothing cleared")]
    NotMarked { what: String, marked: String },
    #[error(transparent)]
    Health(#[from] HealthError),
}

/// Clears the GPUs `target` names; the entries removed. Naming a GPU that is not marked is an
/// error (a mistyped index must not look like a fix); `All` on a healthy host is not.
pub fn clear(state_dir: &Path, target: &Target) -> Result<Vec<Unhealthy>, ClearError> {
    let mut locked = file::lock(state_dir)?;
    let (cleared, kept): (Vec<Unhealthy>, Vec<Unhealthy>) =
        locked.file.gpus.drain(..).partition(|u| target.matches(u));
    locked.file.gpus = kept;
    if cleared.is_empty() && *target != Target::All {
        let marked: Vec<String> = locked
            .file
            .gpus
            .iter()
            .map(|u| format!("GPU {}", u.index))
            .collect();
        return Err(ClearError::NotMarked {
            what: match target {
                Target::Uuid(u) => u.clone(),
                Target::Index(i) => i.to_string(),
                Target::All => String::new(),
            },
            marked: if marked.is_empty() {
                "every GPU is healthy".to_owned()
            } else {
                format!("unhealthy: {}", marked.join(", "))
            },
        });
    }
    locked.save()?;
    Ok(cleared)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(dir: &Path, index: u32) {
        let mut l = file::lock(dir).unwrap();
        l.mark(Unhealthy {
            index,
            uuid: Some(format!("GPU-{index}")),
            since: "t".into(),
            xid: 79,
            message: String::new(),
        });
        l.save().unwrap();
    }

    #[test]
    fn clear_removes_only_the_named_gpu() {
        let dir = tempfile::tempdir().unwrap();
        mark(dir.path(), 1);
        mark(dir.path(), 2);
        let gone = clear(dir.path(), &Target::parse("gpu-1").unwrap()).unwrap();
        assert_eq!(gone.len(), 1);
        let left = file::read(dir.path()).unwrap();
        assert_eq!(
            left.gpus.iter().map(|u| u.index).collect::<Vec<_>>(),
            vec![2]
        );
        let e = clear(dir.path(), &Target::Index(3)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "GPU 3 is not marked unhealthy (unhealthy: GPU 2); nothing cleared"
        );
        assert_eq!(clear(dir.path(), &Target::All).unwrap().len(), 1);
        assert_eq!(clear(dir.path(), &Target::All).unwrap().len(), 0);
        assert_eq!(Target::parse("x"), None);
        assert_eq!(Target::parse("GPé-1"), None);
        assert_eq!(Target::parse("-1"), None);
    }
}
