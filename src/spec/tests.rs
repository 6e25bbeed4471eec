use super::*;

#[test]
fn save_keeps_mode_and_leaves_no_temp_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(&path, br#"{"b":1,"a":{"z":2,"y":3}}"#).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
    let mut spec = SpecFile::load(dir.path()).unwrap();
    spec.value["c"] = Value::from(4);
    spec.save().unwrap();
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        r#"{"b":1,"a":{"z":2,"y":3},"c":4}"#
    );
    assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o7777, 0o640);
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(names.len(), 1);
}

#[test]
fn bad_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let b = dir.path();
    assert!(matches!(
        SpecFile::load(&b.join("nope")),
        Err(SpecError::NoBundle(_))
    ));
    assert!(matches!(SpecFile::load(b), Err(SpecError::Missing(_))));
    std::fs::write(b.join("config.json"), b"").unwrap();
    assert!(matches!(SpecFile::load(b), Err(SpecError::Empty(_))));
    std::fs::write(b.join("config.json"), b"  \n").unwrap();
    assert!(matches!(SpecFile::load(b), Err(SpecError::Empty(_))));
    std::fs::write(b.join("config.json"), b"{\"a\":").unwrap();
    let e = SpecFile::load(b).unwrap_err();
    assert!(e.to_string().contains("not valid JSON"), "{e}");
    std::fs::remove_file(b.join("config.json")).unwrap();
    std::fs::create_dir(b.join("config.json")).unwrap();
    assert!(matches!(SpecFile::load(b), Err(SpecError::NotAFile(_))));
}

#[test]
fn symlinked_spec_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside.json");
    std::fs::write(&outside, b"{}").unwrap();
    let bundle = dir.path().join("bundle");
    std::fs::create_dir(&bundle).unwrap();
    std::os::unix::fs::symlink(&outside, bundle.join("config.json")).unwrap();
    assert!(matches!(
        SpecFile::load(&bundle),
        Err(SpecError::Symlink(_))
    ));
}

#[test]
fn env_value_reads_the_last_entry() {
    let spec = serde_json::json!({"process": {"env": ["NVIDIA_VISIBLE_DEVICES=1", "NVIDIA_VISIBLE_DEVICES=2", 7]}});
    assert_eq!(env_value(&spec, "NVIDIA_VISIBLE_DEVICES"), Some("2"));
    assert_eq!(
        env_value(&serde_json::json!({}), "NVIDIA_VISIBLE_DEVICES"),
        None
    );
}
