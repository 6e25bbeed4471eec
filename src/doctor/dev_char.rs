//! The `/dev/char/<major>:<minor>` links of the NVIDIA device nodes under `devices.root`: which
//! nodes want one, the state of each link, and doctor's `dev/char` lines.
//!
//! Why they matter: runc's systemd cgroup driver hands a container's device rules to systemd
//! as `DeviceAllow=/dev/char/M:m` and leaves out a rule whose link does not exist; on the next
//! `systemctl daemon-reload` systemd rewrites the container's device cgroup from its own list,
//! and the NVIDIA devices are gone from running containers (nvidia-container-toolkit #48,
//! #1227, #1744). The driver's nodes come from nvidia-modprobe or persistenced, not udev, so
//! nothing makes their links. See docs/dev-char.md.
//!
//! Owns the list of nodes that are linked (those `nvidia-ctk system create-dev-char-symlinks`
//! links) and what counts as a link in place. It must never write: `dev_char_fix.rs` does.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::report::{check, Check, Status};
use crate::gpu::devfs;

/// doctor's name for these lines.
pub const NAME: &str = "dev/char";

/// Nodes the toolkit does not link: NVSwitch, NVLink and GPUDirect Storage are not handed to
/// containers as GPUs.
const NOT_LINKED: &[&str] = &["nvidia-fs", "nvidia-nvswitch", "nvidia-nvlink"];

/// A device node that wants the link `/dev/char/<major>:<minor>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// The node on the host, under the devices root.
    pub node: PathBuf,
    /// The link's target as udev writes it: relative to `/dev/char`, e.g. `../nvidia0`.
    pub target: PathBuf,
    pub major: u64,
    pub minor: u64,
}

impl Wanted {
    pub fn file_name(&self) -> String {
        format!("{}:{}", self.major, self.minor)
    }
}

/// What is at a wanted link's path.
#[derive(Debug)]
pub enum LinkState {
    /// It resolves to a character device with the node's numbers (whatever its target says:
    /// `nvidia-ctk`'s absolute links serve as well as udev's relative ones).
    InPlace,
    Missing,
    /// A symlink that resolves elsewhere, or nowhere.
    Wrong {
        points_at: PathBuf,
    },
    /// Not a symlink: `--fix` never removes it.
    Blocked {
        what: &'static str,
    },
    Unreadable(io::Error),
}

/// Every wanted link under one root, with its state.
#[derive(Debug)]
pub struct Survey {
    /// `<root>/dev/char`.
    pub dir: PathBuf,
    pub links: Vec<(Wanted, LinkState)>,
}

impl Survey {
    /// The path of one link.
    pub fn link(&self, w: &Wanted) -> PathBuf {
        self.dir.join(w.file_name())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot list {dir}: {source}")]
pub struct SurveyError {
    dir: String,
    source: io::Error,
}

/// The NVIDIA character devices in `<root>/dev` and `<root>/dev/nvidia-caps`, one per device
/// number, in path order. A missing directory holds none.
pub fn wanted(root: &Path) -> Result<Vec<Wanted>, SurveyError> {
    let dev = root.join("dev");
    let mut nodes = Vec::new();
    for dir in [dev.clone(), dev.join("nvidia-caps")] {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(SurveyError {
                    dir: dir.display().to_string(),
                    source,
                })
            }
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            // A name with a control character is no driver's, and would break doctor's lines.
            if !name.starts_with("nvidia")
                || NOT_LINKED.iter().any(|p| name.starts_with(p))
                || name.chars().any(char::is_control)
            {
                continue;
            }
            let path = entry.path();
            let Some(node) = devfs::device_node(&path, PathBuf::new()) else {
                continue;
            };
            let Ok(rel) = path.strip_prefix(&dev) else {
                continue;
            };
            if node.kind == 'c' {
                nodes.push(Wanted {
                    target: Path::new("..").join(rel),
                    node: path,
                    major: node.major,
                    minor: node.minor,
                });
            }
        }
    }
    nodes.sort_by(|a, b| a.node.cmp(&b.node));
    // Two nodes with one number want one link; the first serves both.
    let mut seen = std::collections::HashSet::new();
    nodes.retain(|n| seen.insert((n.major, n.minor)));
    Ok(nodes)
}

/// A link's target for one line of output: anyone who can write /dev/char chose it, so a
/// control character in it is shown escaped rather than written out.
pub fn shown_target(target: &Path) -> String {
    let s = target.to_string_lossy();
    if s.chars().any(char::is_control) {
        format!("{s:?}")
    } else {
        s.into_owned()
    }
}

/// Where a link's target leads: an absolute target is read under the devices root (so a
/// test's root behaves as `/` does), a relative one from the link's directory.
fn resolve(root: &Path, dir: &Path, target: &Path) -> PathBuf {
    match target.strip_prefix("/") {
        Ok(rel) => root.join(rel),
        Err(_) => dir.join(target),
    }
}

fn is_char_device(path: &Path, major: u64, minor: u64) -> bool {
    std::fs::metadata(path).is_ok_and(|m| {
        m.file_type().is_char_device()
            && libc::major(m.rdev()) as u64 == major
            && libc::minor(m.rdev()) as u64 == minor
    })
}

/// What is at `w`'s link in `dir`.
pub fn state(root: &Path, dir: &Path, w: &Wanted) -> LinkState {
    let link = dir.join(w.file_name());
    let meta = match std::fs::symlink_metadata(&link) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return LinkState::Missing,
        Err(e) => return LinkState::Unreadable(e),
    };
    let ft = meta.file_type();
    if ft.is_symlink() {
        return match std::fs::read_link(&link) {
            Ok(t) if is_char_device(&resolve(root, dir, &t), w.major, w.minor) => {
                LinkState::InPlace
            }
            Ok(t) => LinkState::Wrong { points_at: t },
            Err(e) => LinkState::Unreadable(e),
        };
    }
    // A node made in place with the same numbers is what systemd's stat wants, too.
    if is_char_device(&link, w.major, w.minor) {
        return LinkState::InPlace;
    }
    let what = if ft.is_dir() {
        "a directory"
    } else if ft.is_file() {
        "a regular file"
    } else if ft.is_char_device() || ft.is_block_device() {
        "a device node of other numbers"
    } else {
        "not a symlink"
    };
    LinkState::Blocked { what }
}

/// Whether `dir` is a directory (through a symlink too), or is missing and can be made.
pub fn dir_can_hold_links(dir: &Path) -> bool {
    match std::fs::metadata(dir) {
        Ok(m) => m.is_dir(),
        Err(e) => e.kind() == io::ErrorKind::NotFound,
    }
}

/// Every wanted link under `root`, with its state.
pub fn survey(root: &Path) -> Result<Survey, SurveyError> {
    let dir = root.join("dev/char");
    let links = wanted(root)?
        .into_iter()
        .map(|w| {
            let s = state(root, &dir, &w);
            (w, s)
        })
        .collect();
    Ok(Survey { dir, links })
}

/// doctor's lines: one OK line, or one WARN line per link missing or wrong and one that says
/// why it matters. A WARN, not a FAIL: containers get their GPUs today, and lose them only at
/// a daemon-reload.
pub fn check_links(root: &Path) -> Vec<Check> {
    let survey = match survey(root) {
        Ok(s) => s,
        Err(e) => return vec![check(Status::Warn, NAME, e.to_string())],
    };
    if survey.links.is_empty() {
        return vec![check(Status::Ok, NAME, "no NVIDIA device nodes to link")];
    }
    if !dir_can_hold_links(&survey.dir) {
        let detail = format!(
            "{} is not a directory, so no link can be in it: remove it, then run \
             `gpu-share doctor --fix` (docs/dev-char.md)",
            survey.dir.display()
        );
        return vec![check(Status::Warn, NAME, detail)];
    }
    let total = survey.links.len();
    let mut lines: Vec<Check> = survey
        .links
        .iter()
        .filter_map(|(w, s)| {
            let link = survey.link(w).display().to_string();
            let node = w.node.display();
            let detail = match s {
                LinkState::InPlace => return None,
                LinkState::Missing => format!("{link} is missing (for {node})"),
                LinkState::Wrong { points_at } => {
                    format!("{link} points at {}, not {node}", shown_target(points_at))
                }
                LinkState::Blocked { what } => format!(
                    "{link} is {what}, not a link to {node}: --fix leaves it, remove it by hand"
                ),
                LinkState::Unreadable(e) => format!("{link} cannot be read: {e}"),
            };
            Some(check(Status::Warn, NAME, detail))
        })
        .collect();
    if lines.is_empty() {
        let detail = format!(
            "{total} NVIDIA device node(s) linked in {}",
            survey.dir.display()
        );
        return vec![check(Status::Ok, NAME, detail)];
    }
    let blocked = survey
        .links
        .iter()
        .filter(|(_, s)| matches!(s, LinkState::Blocked { .. }))
        .count();
    let remedy = if blocked == lines.len() {
        "remove what is in their place, then run `gpu-share doctor --fix`"
    } else {
        "run `gpu-share doctor --fix`"
    };
    let hint = format!(
        "{} of {total} link(s) missing or wrong: systemd finds devices through /dev/char, so a \
         `systemctl daemon-reload` can take these GPUs from running containers \
         (docs/dev-char.md); {remedy}",
        lines.len()
    );
    lines.push(check(Status::Warn, NAME, hint));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_with_a_control_character_is_shown_escaped() {
        assert_eq!(shown_target(Path::new("../nvidia0")), "../nvidia0");
        assert_eq!(
            shown_target(Path::new("../x\nOK   dev/char")),
            "\"../x\\nOK   dev/char\""
        );
    }

    #[test]
    fn an_absolute_target_is_read_under_the_devices_root() {
        let root = Path::new("/tmp/host");
        let dir = root.join("dev/char");
        assert_eq!(
            resolve(root, &dir, Path::new("/dev/nvidia0")),
            Path::new("/tmp/host/dev/nvidia0")
        );
        assert_eq!(
            resolve(root, &dir, Path::new("../nvidia0")),
            Path::new("/tmp/host/dev/char/../nvidia0")
        );
    }

    #[test]
    fn a_root_without_dev_wants_no_links() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(wanted(dir.path()).unwrap(), Vec::new());
    }
}
