//! From a process to its container: `/proc/<pid>/cgroup` names the container's cgroup, and
//! every layout docker and ECS use ends in the 64-hex container id (`/docker/<id>`,
//! `/system.slice/docker-<id>.scope`, `/ecs/<task>/<id>`).

use std::path::Path;

/// The container id in one cgroup path, if it has one.
pub fn container_id_in(cgroup_path: &str) -> Option<String> {
    cgroup_path
        .split('/')
        .rev()
        .map(|seg| {
            let seg = seg.strip_suffix(".scope").unwrap_or(seg);
            seg.rsplit('-').next().unwrap_or(seg)
        })
        .find(|seg| seg.len() == 64 && seg.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_ascii_lowercase)
}

/// The container a process runs in, from `<root>/proc/<pid>/cgroup`; `None` for the host's own.
pub fn container_of(root: &Path, pid: u32) -> Option<String> {
    let text = std::fs::read_to_string(root.join(format!("proc/{pid}/cgroup"))).ok()?;
    text.lines()
        .filter_map(|l| l.splitn(3, ':').nth(2))
        .find_map(container_id_in)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f1c2a9b8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a";

    #[test]
    fn every_cgroup_layout_yields_the_id() {
        for path in [
            format!("/docker/{ID}"),
            format!("/system.slice/docker-{ID}.scope"),
            format!("/ecs/8a1b2c3d4e5f/{ID}"),
            format!("/kubepods/besteffort/pod1/{ID}"),
        ] {
            assert_eq!(container_id_in(&path).as_deref(), Some(ID), "{path}");
        }
        assert_eq!(
            container_id_in("/user.slice/user-0.slice/session-1.scope"),
            None
        );
        assert_eq!(container_id_in("/"), None);
    }

    #[test]
    fn reads_the_cgroup_file_under_a_root() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("proc/42");
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(
            p.join("cgroup"),
            format!("12:pids:/docker/{ID}\n0::/system.slice/containerd.service\n"),
        )
        .unwrap();
        assert_eq!(container_of(dir.path(), 42).as_deref(), Some(ID));
        assert_eq!(container_of(dir.path(), 43), None);
    }
}
