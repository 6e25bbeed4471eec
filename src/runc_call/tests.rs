//! How `RuncCall` reads runc's argv.

use super::*;

fn parse(args: &[&str]) -> RuncCall<'static> {
    let owned: Vec<&'static OsStr> = args
        .iter()
        .map(|a| OsStr::new(Box::leak(a.to_string().into_boxed_str())))
        .collect();
    RuncCall::parse(Box::leak(owned.into_boxed_slice()))
}

#[test]
fn dockerd_create_line_is_read() {
    let c = parse(&[
        "--root",
        "/run/docker/runtime-runc/moby",
        "--log",
        "/run/b/log.json",
        "--log-format",
        "json",
        "create",
        "--bundle",
        "/run/b",
        "--pid-file",
        "/run/b/init.pid",
        "abc123",
    ]);
    assert_eq!(c.action(), Action::EditBundle);
    assert_eq!(c.command, Some(OsStr::new("create")));
    assert_eq!(c.bundle, Some(OsStr::new("/run/b")));
    assert_eq!(c.root, Some(OsStr::new("/run/docker/runtime-runc/moby")));
    assert_eq!(c.log_path(), Some(Path::new("/run/b/log.json")));
    assert_eq!(c.log_format, LogFormat::Json);
    assert_eq!(c.container_id, Some(OsStr::new("abc123")));
}

#[test]
fn every_bundle_form_is_found() {
    for args in [
        &["create", "--bundle", "/b", "id"][..],
        &["create", "--bundle=/b", "id"],
        &["create", "-b", "/b", "id"],
        &["create", "-b=/b", "id"],
        &["create", "-bundle", "/b", "id"],
        &["run", "-d", "--bundle", "/b", "id"],
        &["create", "id", "--bundle", "/b"],
    ] {
        let c = parse(args);
        assert_eq!(c.bundle, Some(OsStr::new("/b")), "{args:?}");
        assert_eq!(c.container_id, Some(OsStr::new("id")), "{args:?}");
    }
}

#[test]
fn no_bundle_flag_means_working_directory() {
    let c = parse(&["create", "id"]);
    assert_eq!(c.bundle_dir(), PathBuf::from("."));
}

#[test]
fn other_commands_pass_through() {
    for args in [
        &["start", "id"][..],
        &[
            "--root",
            "/r",
            "exec",
            "--process",
            "/p.json",
            "--detach",
            "id",
        ],
        &["kill", "id", "15"],
        &["delete", "--force", "id"],
        &["--version"],
        &["features"],
        &["state", "id"],
        &["update", "--resources=-", "id"],
        &[],
    ] {
        assert_eq!(parse(args).action(), Action::PassThrough, "{args:?}");
    }
}

#[test]
fn unknown_global_flags_do_not_hide_the_command() {
    let c = parse(&[
        "--rootless",
        "false",
        "--systemd-cgroup",
        "--future-flag=x",
        "--debug",
        "create",
        "--pidfd-socket",
        "/s",
        "--bundle",
        "/b",
        "id",
    ]);
    assert_eq!(c.action(), Action::EditBundle);
    assert_eq!(c.bundle, Some(OsStr::new("/b")));
    assert_eq!(c.container_id, Some(OsStr::new("id")));
}

#[test]
fn unknown_flag_with_separate_value_is_skipped_as_positional() {
    // The value of an unknown global flag is not a runc command, so it is passed over.
    let c = parse(&["--new-flag", "value", "run", "-b", "/b", "id"]);
    assert_eq!(c.action(), Action::EditBundle);
    assert_eq!(c.command, Some(OsStr::new("run")));
}

#[test]
fn a_value_that_looks_like_a_command_stays_a_value() {
    let c = parse(&["--log", "create", "start", "id"]);
    assert_eq!(c.action(), Action::PassThrough);
    assert_eq!(c.log_path(), Some(Path::new("create")));
}

#[test]
fn text_is_the_default_log_format() {
    assert_eq!(parse(&["create", "id"]).log_format, LogFormat::Text);
    assert_eq!(
        parse(&["--log-format=json", "create", "id"]).log_format,
        LogFormat::Json
    );
}

#[test]
fn help_anywhere_in_create_s_flags_passes_through() {
    for args in [
        &["create", "-h"][..],
        &["run", "--help"],
        &["create", "-help"],
        &["create", "--h"],
        &["create", "-h=true"],
        &["create", "--help=1"],
        &["create", "--help=yes"],
        &["create", "id", "-h"],
        &["create", "--bundle", "/b", "-h", "id"],
        &["--root", "/r", "run", "-d", "id", "--help"],
        &["--help", "create", "id"],
        &["-h", "run", "id"],
        &["--version", "create", "id"],
        &["-v", "run", "id"],
    ] {
        assert_eq!(parse(args).action(), Action::PassThrough, "{args:?}");
    }
}

#[test]
fn help_that_is_not_a_flag_still_creates() {
    for args in [
        &["create", "--", "-h"][..],
        &["create", "--help=false", "id"],
        &["create", "-h=0", "id"],
        &["create", "--pid-file", "-h", "id"],
        &["create", "-b", "--help", "id"],
        &["--log", "-h", "create", "id"],
        &["--", "-h", "create", "id"],
        &["--version=false", "create", "id"],
    ] {
        assert_eq!(parse(args).action(), Action::EditBundle, "{args:?}");
    }
}

#[test]
fn after_double_dash_everything_is_positional() {
    let c = parse(&["create", "-b", "/b", "--", "--weird-id"]);
    assert_eq!(c.container_id, Some(OsStr::new("--weird-id")));
}
