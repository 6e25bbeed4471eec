//! What the create's `lock` did with a corrupt state file, as a value and its log line.
//!
//! Plain data, a leaf: it never reads or writes the state (that is `state`).

use std::path::PathBuf;

/// What the create's `lock` did with a corrupt state file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rebuilt {
    /// The corrupt file, as it was.
    pub kept_aside: PathBuf,
    /// Why it was not a valid assignment.
    pub reason: String,
    /// The runc roots read, and the live containers holding GPUs found there.
    pub roots: Vec<PathBuf>,
    pub containers: usize,
}

impl std::fmt::Display for Rebuilt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let roots: Vec<String> = self.roots.iter().map(|r| r.display().to_string()).collect();
        write!(
            f,
            "the placement state was not valid ({}): kept aside as {}, rebuilt from runc's \
             state under {} ({} live container(s) holding GPUs)",
            self.reason,
            self.kept_aside.display(),
            roots.join(", "),
            self.containers
        )
    }
}
