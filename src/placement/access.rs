//! Who may use a reserved GPU: `sharing.reserved` applied to one GPU's load and one container's
//! ECS task.
//!
//! Pure. The task comes from the container's cgroup parent (set by the ECS agent), never from
//! its env; a container outside any task is never "the same task" as anything.

use super::load::GpuLoad;
use crate::config::Reserved;

/// Whether a container of `task` may be given a GPU with this load.
pub fn open_to(policy: Reserved, load: Option<&GpuLoad>, task: Option<&str>) -> bool {
    let Some(load) = load.filter(|l| l.reserved > 0) else {
        return true;
    };
    match policy {
        Reserved::Shared => true,
        Reserved::Exclusive => false,
        Reserved::Task => task.is_some() && load.reserved_for.iter().all(|t| t.as_deref() == task),
    }
}

/// How much placement prefers a GPU for this container: lower first. Under `shared`, other
/// GPUs before reserved ones; under `task`, the container's own task's reserved GPU first (its
/// sidecars share it), then unreserved ones.
/// Only meaningful for GPUs that are `open_to` the container.
pub fn preference(policy: Reserved, load: Option<&GpuLoad>) -> u8 {
    let reserved = load.is_some_and(|l| l.reserved > 0);
    match policy {
        Reserved::Shared => u8::from(reserved),
        Reserved::Task => u8::from(!reserved),
        Reserved::Exclusive => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reserved_for(tasks: &[Option<&str>]) -> GpuLoad {
        GpuLoad {
            containers: tasks.len() as u32 + 1,
            reserved: tasks.len() as u32,
            reserved_for: tasks.iter().map(|t| t.map(str::to_owned)).collect(),
        }
    }

    #[test]
    fn an_unreserved_gpu_is_open_to_everyone() {
        let free = GpuLoad {
            containers: 3,
            ..GpuLoad::default()
        };
        for policy in [Reserved::Shared, Reserved::Task, Reserved::Exclusive] {
            assert!(open_to(policy, Some(&free), None));
            assert!(open_to(policy, None, Some("t")));
        }
    }

    #[test]
    fn task_opens_a_reserved_gpu_to_its_own_task_only() {
        let l = reserved_for(&[Some("t1")]);
        assert!(open_to(Reserved::Task, Some(&l), Some("t1")));
        assert!(!open_to(Reserved::Task, Some(&l), Some("t2")));
        assert!(!open_to(Reserved::Task, Some(&l), None));
        let outside = reserved_for(&[None]);
        assert!(!open_to(Reserved::Task, Some(&outside), None));
        assert!(open_to(Reserved::Shared, Some(&l), Some("t2")));
        assert!(!open_to(Reserved::Exclusive, Some(&l), Some("t1")));
    }

    #[test]
    fn preferences_follow_the_policy() {
        let l = reserved_for(&[Some("t1")]);
        assert!(preference(Reserved::Shared, Some(&l)) > preference(Reserved::Shared, None));
        assert!(preference(Reserved::Task, Some(&l)) < preference(Reserved::Task, None));
    }
}
