//! The state file under its lock: record, reconcile, load, and a corrupt file kept aside and
//! rebuilt from runc's state.

use super::*;

/// No runc root to rebuild from.
fn nothing(inventory: &Inventory) -> Truth<'_> {
    Truth::new(Vec::new(), inventory)
}

fn entry(id: &str, root: &Path, gpus: &[u32], kind: Kind, pid: i32) -> Entry {
    Entry {
        id: id.into(),
        root: root.display().to_string(),
        gpus: gpus.to_vec(),
        kind,
        pid,
        start_time: process_start_time(pid).unwrap_or(0),
        created: "now".into(),
        task: None,
        caps: None,
    }
}

#[test]
fn own_start_time_is_read() {
    let me = std::process::id() as i32;
    assert!(process_start_time(me).is_some());
    assert_eq!(process_start_time(-5), None);
}

#[test]
fn a_pid_held_by_a_later_process_is_not_the_create() {
    let dir = tempfile::tempdir().unwrap();
    let me = std::process::id() as i32;
    let started = process_start_time(me).unwrap();
    let mut e = entry("gone", dir.path(), &[0], Kind::Shared, me);
    // Recorded while the create ran: this process (same pid) started at or before that.
    e.start_time = started;
    assert!(is_live(&e));
    e.start_time = started + 5;
    assert!(is_live(&e));
    // Recorded before this process started: the pid was the create's, and is now another's.
    e.start_time = started - 1;
    assert!(!is_live(&e));
    e.start_time = 0;
    assert!(!is_live(&e));
}

#[test]
fn records_reconcile_and_load() {
    let dir = tempfile::tempdir().unwrap();
    let runc_root = dir.path().join("runc");
    std::fs::create_dir_all(runc_root.join("alive")).unwrap();
    std::fs::write(runc_root.join("alive/state.json"), b"{}").unwrap();
    let me = std::process::id() as i32;
    {
        let mut l = lock(dir.path(), &nothing(&Inventory::default())).unwrap();
        l.record(entry("alive", &runc_root, &[0], Kind::Shared, 999_999_999));
        l.record(entry("creating", &runc_root, &[1], Kind::Reserved, me));
        l.record(entry("gone", &runc_root, &[1], Kind::Shared, 999_999_999));
        l.save().unwrap();
    }
    let mut l = lock(dir.path(), &nothing(&Inventory::default())).unwrap();
    assert_eq!(l.assignments.containers.len(), 3);
    assert_eq!(l.reconcile(), 1);
    let load = l.load();
    assert_eq!(
        load[&0],
        GpuLoad {
            containers: 1,
            reserved: 0,
            reserved_for: vec![]
        }
    );
    assert_eq!(
        load[&1],
        GpuLoad {
            containers: 1,
            reserved: 1,
            reserved_for: vec![None]
        }
    );
}

#[test]
fn a_recorded_id_is_replaced_not_doubled() {
    let dir = tempfile::tempdir().unwrap();
    let mut l = lock(dir.path(), &nothing(&Inventory::default())).unwrap();
    l.record(entry("a", dir.path(), &[0], Kind::Shared, 1));
    l.record(entry("a", dir.path(), &[2], Kind::Shared, 1));
    assert_eq!(l.assignments.containers.len(), 1);
    assert_eq!(l.assignments.containers[0].gpus, vec![2]);
}

#[test]
fn lock_makes_a_missing_state_dir_and_reuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("run/gpu-share");
    let mut l = lock(&state_dir, &nothing(&Inventory::default())).unwrap();
    l.record(entry("a", dir.path(), &[0], Kind::Shared, 1));
    l.save().unwrap();
    drop(l);
    assert!(state_dir.join(LOCK_FILE).is_file());
    let l = lock(&state_dir, &nothing(&Inventory::default())).unwrap();
    assert_eq!(l.assignments.containers.len(), 1);
}

#[test]
fn a_corrupt_file_starts_afresh() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(STATE_FILE), b"{not json").unwrap();
    // No runc root holds a live container to rebuild from.
    let l = lock(dir.path(), &nothing(&Inventory::default())).unwrap();
    assert!(l.was_corrupt);
    assert!(l.assignments.containers.is_empty());
}

#[test]
fn a_corrupt_file_is_kept_aside_and_rebuilt_from_runcs_state() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("runc");
    std::fs::create_dir_all(root.join("held")).unwrap();
    let state = serde_json::json!({
        "init_process_pid": 999_999_999, "init_process_start": 5, "created": "then",
        "config": {"devices": [{"type": 99, "major": 195, "minor": 1, "path": "/dev/nvidia1"}]}
    });
    std::fs::write(root.join("held/state.json"), state.to_string()).unwrap();
    let garbage = b"{\"version\": 1, \"contai";
    std::fs::write(dir.path().join(STATE_FILE), garbage).unwrap();

    // Readers see it as it is and leave it there.
    assert!(peek(dir.path()).unwrap().unwrap().was_corrupt);
    assert!(read(dir.path()).unwrap().containers.is_empty());
    assert!(kept_aside(dir.path()).is_empty());

    let inv = Inventory::synthetic(2);
    let l = lock(dir.path(), &Truth::new(vec![root.clone()], &inv)).unwrap();
    assert!(l.was_corrupt);
    let rebuilt = l.rebuilt_from.clone().unwrap();
    assert_eq!(
        kept_aside(dir.path()),
        std::slice::from_ref(&rebuilt.kept_aside)
    );
    assert_eq!(std::fs::read(&rebuilt.kept_aside).unwrap(), garbage);
    assert_eq!(rebuilt.containers, 1);
    let expected = vec![Entry {
        id: "held".into(),
        root: root.display().to_string(),
        gpus: vec![1],
        kind: Kind::Shared,
        pid: 0,
        start_time: 0,
        created: "then".into(),
        task: None,
        caps: None,
    }];
    assert_eq!(l.assignments.containers, expected);
    let message = rebuilt.to_string();
    assert!(message.contains("kept aside as"), "{message}");
    assert!(message.contains("1 live container(s)"), "{message}");
    drop(l);
    // Saved at once: the next reader sees the rebuilt assignment, and nothing is kept twice.
    assert_eq!(read(dir.path()).unwrap().containers, expected);
    let again = lock(dir.path(), &Truth::new(vec![root], &inv)).unwrap();
    assert!(!again.was_corrupt && again.rebuilt_from.is_none());
    assert_eq!(kept_aside(dir.path()).len(), 1);
}

#[test]
fn a_create_rebuilds_from_its_own_root_and_runcs_default() {
    let inv = Inventory::default();
    let t = Truth::for_create(Some(OsStr::new("/run/docker/runtime-runc/moby")), &inv);
    assert_eq!(
        t.roots,
        [
            PathBuf::from("/run/docker/runtime-runc/moby"),
            PathBuf::from(RUNC_DEFAULT_ROOT)
        ]
    );
    assert_eq!(
        Truth::for_create(None, &inv).roots,
        [PathBuf::from(RUNC_DEFAULT_ROOT)]
    );
}
