//! From a process to its container: `/proc/<pid>/cgroup` names the container's cgroup, and
//! every layout docker and ECS use ends in the 64-hex container id (`/docker/<id>`,
//! `/system.slice/docker-<id>.scope`, `/ecs/<task>/<id>`). Processes are then grouped per
//! (container, GPU).
//!
//! Owns reading a process's cgroup and the grouping. Never asks dockerd (what a container is,
//! beyond its id, comes in as a function) and never touches NVML.

use std::collections::BTreeMap;
use std::path::Path;

use super::sample::{ContainerInfo, ContainerUse, ProcessUse};

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

/// Groups processes by (container, GPU), summing their memory and SM utilisation (absent if any
/// of them has none). `container_of` maps a pid to its container id and `info` describes a
/// container. Also returns how many processes belong to no container.
pub fn by_container(
    processes: &[ProcessUse],
    container_of: impl Fn(u32) -> Option<String>,
    info: impl Fn(&str) -> ContainerInfo,
) -> (Vec<ContainerUse>, u32) {
    let mut grouped: BTreeMap<(String, u32), (u64, Option<u32>, u32)> = BTreeMap::new();
    let mut host = 0;
    for p in processes {
        match container_of(p.pid) {
            Some(id) => {
                let e = grouped.entry((id, p.gpu_index)).or_insert((0, Some(0), 0));
                e.0 += p.used_gpu_memory_bytes.unwrap_or(0);
                e.1 = e.1.zip(p.sm_util_percent).map(|(a, b)| a.saturating_add(b));
                e.2 += 1;
            }
            None => host += 1,
        }
    }
    let uses = grouped
        .into_iter()
        .map(|((id, gpu), (bytes, sm, n))| ContainerUse {
            info: info(&id),
            container_id: id,
            gpu_index: gpu,
            gpu_memory_bytes: bytes,
            sm_util_percent: sm,
            processes: n,
        })
        .collect();
    (uses, host)
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

    fn p(gpu: u32, pid: u32, bytes: u64) -> ProcessUse {
        ProcessUse {
            gpu_index: gpu,
            pid,
            used_gpu_memory_bytes: Some(bytes),
            sm_util_percent: Some(pid),
        }
    }

    #[test]
    fn processes_are_summed_per_container_and_gpu() {
        let mut unsupported = p(1, 12, 7);
        unsupported.sm_util_percent = None;
        let procs = [p(0, 10, 100), p(0, 11, 50), unsupported, p(0, 99, 1)];
        let container_of = |pid: u32| match pid {
            10 | 11 => Some("aaa".to_owned()),
            12 => Some("bbb".to_owned()),
            _ => None,
        };
        let (uses, host) = by_container(&procs, container_of, |_| ContainerInfo::default());
        assert_eq!(host, 1);
        let got: Vec<(&str, u32, u64, Option<u32>, u32)> = uses
            .iter()
            .map(|u| {
                (
                    u.container_id.as_str(),
                    u.gpu_index,
                    u.gpu_memory_bytes,
                    u.sm_util_percent,
                    u.processes,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![("aaa", 0, 150, Some(21), 2), ("bbb", 1, 7, None, 1)]
        );
    }
}
