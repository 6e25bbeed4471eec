use super::*;

#[test]
fn empty_text_gives_defaults() {
    let c = Config::parse("").unwrap();
    assert_eq!(c, Config::default());
    assert_eq!(c.devices.root, PathBuf::from("/"));
    assert_eq!(c.sharing.default, DefaultGpus::All);
    assert_eq!(c.log.level, LogLevel::Info);
    assert_eq!(c.runtime.path, None);
}

#[test]
fn every_key_is_read() {
    let c = Config::parse(
        r#"
[runtime]
path = "/opt/runc"
[devices]
root = "/tmp/fake"
[sharing]
default = "none"
placement = "pack"
max_per_gpu = 15
[state]
dir = "/tmp/state"
[hook]
path = "/opt/hook"
[log]
path = "/tmp/shim.log"
level = "debug"
"#,
    )
    .unwrap();
    assert_eq!(c.runtime.path, Some(PathBuf::from("/opt/runc")));
    assert_eq!(c.devices.root, PathBuf::from("/tmp/fake"));
    assert_eq!(c.sharing.default, DefaultGpus::None);
    assert_eq!(c.sharing.placement, Placement::Pack);
    assert_eq!(c.sharing.max_per_gpu, Some(15));
    assert_eq!(c.state.dir, PathBuf::from("/tmp/state"));
    assert_eq!(c.hook.path, PathBuf::from("/opt/hook"));
    assert_eq!(c.log.path, PathBuf::from("/tmp/shim.log"));
    assert_eq!(c.log.level, LogLevel::Debug);
}

#[test]
fn unknown_key_is_named() {
    let e = Config::parse("[sharing]\ndefualt = \"all\"\n").unwrap_err();
    assert!(e.contains("line 2"), "{e}");
    assert!(e.contains("sharing.defualt"), "{e}");
    assert!(!e.contains('\n'), "{e}");
}

#[test]
fn unknown_section_is_named() {
    let e = Config::parse("[shareing]\ndefault = \"all\"\n").unwrap_err();
    assert!(e.contains("shareing"), "{e}");
}

#[test]
fn bad_value_names_the_key() {
    let e = Config::parse("[sharing]\ndefault = \"some\"\n").unwrap_err();
    assert!(e.contains("sharing.default"), "{e}");
    assert!(e.contains("some"), "{e}");
    let e = Config::parse("[log]\nlevel = 3\n").unwrap_err();
    assert!(e.contains("log.level"), "{e}");
}

#[test]
fn zero_limit_is_refused() {
    let e = Config::parse("[sharing]\nmax_per_gpu = 0\n").unwrap_err();
    assert!(e.contains("sharing.max_per_gpu"), "{e}");
    let e = Config::parse("[sharing]\nmax_per_gpu = -1\n").unwrap_err();
    assert!(e.contains("sharing.max_per_gpu"), "{e}");
}

#[test]
fn relative_paths_are_refused() {
    let e = Config::parse("[devices]\nroot = \"fake\"\n").unwrap_err();
    assert!(e.contains("devices.root"), "{e}");
}

#[test]
fn broken_toml_is_one_line() {
    let e = Config::parse("[log\nlevel = \"info\"\n").unwrap_err();
    assert!(e.starts_with("line 1"), "{e}");
    assert!(!e.contains('\n'), "{e}");
}

#[test]
fn missing_file_gives_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let c = Config::load(&dir.path().join("absent.toml")).unwrap();
    assert_eq!(c, Config::default());
}

#[test]
fn unreadable_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    // A directory cannot be read as a file, even by root.
    let e = Config::load(dir.path()).unwrap_err();
    assert!(e.to_string().contains("cannot read"), "{e}");
}

#[test]
fn the_runtime_reads_only_its_own_sections() {
    let text = "[sharing]\nplacement = \"spread\"\n[metrics]\nnamespace = \"\"\nno_such_key = 1\n[nvml]\nlibrary = 5\n";
    assert!(Config::parse(text).is_err());
    let c = Config::parse_for_runtime(text).unwrap();
    assert_eq!(c.sharing.placement, Placement::Spread);
    assert_eq!(c.metrics, MetricsSection::default());
    let e = Config::parse_for_runtime("[sharing]\nplacment = \"spread\"\n").unwrap_err();
    assert!(e.contains("sharing.placment"), "{e}");
    let e = Config::parse_for_runtime("[metrix]\n").unwrap_err();
    assert!(e.contains("metrix"), "{e}");
    let e = Config::parse_for_runtime("[metrics\n").unwrap_err();
    assert!(e.starts_with("line 1"), "{e}");
}

#[test]
fn health_keys_default_to_nvidias_application_xids_and_are_checked() {
    let c = Config::parse("").unwrap();
    assert_eq!(c.health.ignore_xids, vec![13, 31, 43, 45, 68, 109]);
    assert!(c.health.is_critical(79) && !c.health.is_critical(13));
    let c = Config::parse("[health]\nsources = []\ncritical_xids = [79, 48]\n").unwrap();
    assert!(c.health.is_critical(48) && !c.health.is_critical(94));
    assert!(c.health.sources.is_empty());
    let e = Config::parse("[health]\ncritical_xids = [13]\n").unwrap_err();
    assert_eq!(
        e,
        "health.critical_xids: Xid 13 is also in health.ignore_xids; remove it from one"
    );
    let e = Config::parse("[health]\ncritical_xids = \"all\"\n").unwrap_err();
    assert!(e.contains("give \"all-but-ignored\" or a list"), "{e}");
    let e = Config::parse("[health]\nkmsg = \"kmsg\"\n").unwrap_err();
    assert!(e.starts_with("health.kmsg:"), "{e}");
    // A create never reads [health]: a mistake there is doctor's to report.
    assert!(Config::parse_for_runtime("[health]\ncritical_xids = \"x\"\n").is_ok());
}
