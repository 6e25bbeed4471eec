//! The account of a plan shown to a person before it is applied (and instead, with `--dry-run`):
//! unified diffs of rewritten files, and one line per link or removal.
//!
//! It only renders: it reads no file and decides nothing.

use super::model::{Edit, Previous};

/// A person-readable account of the edits: unified diffs and link changes.
pub fn describe(edits: &[Edit]) -> String {
    let mut out = String::new();
    for e in edits {
        match e {
            Edit::Write {
                path,
                before,
                after,
                ..
            } => {
                let old = before.as_deref().unwrap_or("");
                let shown = path.display().to_string();
                let diff = similar::TextDiff::from_lines(old, after.as_str());
                out.push_str(
                    &diff
                        .unified_diff()
                        .header(&format!("{shown} (before)"), &format!("{shown} (after)"))
                        .to_string(),
                );
            }
            Edit::Link { path, target } => out.push_str(&format!(
                "link {} -> {}\n",
                path.display(),
                target.display()
            )),
            Edit::Restore { path, previous, .. } => {
                let what = match previous {
                    Previous::Absent => "remove".to_owned(),
                    Previous::Link(t) => format!("link -> {t}"),
                    Previous::File(_) => "restore the original file".to_owned(),
                    Previous::Json(_) | Previous::Path(_) => "restore".to_owned(),
                };
                out.push_str(&format!("{}: {what}\n", path.display()));
            }
            Edit::Remove { path } => out.push_str(&format!("remove {}\n", path.display())),
            Edit::RemoveDir { path } => {
                out.push_str(&format!("remove {} if empty\n", path.display()))
            }
        }
    }
    out
}
