//! Naming a daemon and the commands that set its limits.

use super::*;

fn iso() -> IsolationSection {
    IsolationSection {
        dir: PathBuf::from("/run/gpu-share/mps"),
        ..IsolationSection::default()
    }
}

#[test]
fn a_daemon_is_named_for_its_gpu_and_caps() {
    let d = Daemon::new(&iso(), 1, Limits::new(ByteSize(4 << 30), Some(50)));
    assert_eq!(d.name(), "gpu1-4096M-50pct");
    assert_eq!(
        d.pipe_dir,
        PathBuf::from("/run/gpu-share/mps/gpu1-4096M-50pct/pipe")
    );
    assert_eq!(
        d.log_dir,
        PathBuf::from("/run/gpu-share/mps/gpu1-4096M-50pct/log")
    );
    let d = Daemon::new(&iso(), 0, Limits::new(ByteSize(512 << 20), None));
    assert_eq!(d.name(), "gpu0-512M");
}

#[test]
fn names_read_back_to_the_same_daemon() {
    for d in [
        Daemon::new(&iso(), 3, Limits::new(ByteSize(1 << 30), Some(25))),
        Daemon::new(&iso(), 0, Limits::new(ByteSize(1 << 20), None)),
    ] {
        assert_eq!(Daemon::from_dir_name(&iso(), &d.name()), Some(d));
    }
    for other in [
        "mps-ecs",
        "gpu0",
        "gpu0-4G",
        "gpu0-4096M-50",
        "gpu0-4096M-50pct-x",
        "gpu01-4096M",
    ] {
        assert_eq!(Daemon::from_dir_name(&iso(), other), None, "{other}");
    }
}

#[test]
fn limits_are_set_on_device_zero_in_mib() {
    let d = Daemon::new(&iso(), 2, Limits::new(ByteSize(6 << 30), Some(30)));
    assert_eq!(
        d.limit_commands(),
        "set_default_device_pinned_mem_limit 0 6144M\nset_default_active_thread_percentage 30\n"
    );
    let d = Daemon::new(&iso(), 2, Limits::new(ByteSize(6 << 30), None));
    assert_eq!(
        d.limit_commands(),
        "set_default_device_pinned_mem_limit 0 6144M\n"
    );
}
