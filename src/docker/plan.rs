//! Planning configure and unconfigure: [`Current`] in, the edits (and for configure the
//! [`Record`]) out.
//!
//! It decides where the runtimes and the default live, then hands each to its place. It is pure:
//! it never touches the filesystem, so everything it needs must come in through [`Current`].

use std::path::Path;

use super::channel;
use super::daemon_json::{self, DaemonJson};
use super::model::{Current, DockerConfigError, Edit, Location, Original, Paths, Record};
use super::place::{Draft, Place};
use super::runtimes_dir::RuntimesDir;
use super::sysconfig::{self, Sysconfig};

/// The place a setting lives in: the one dispatch on [`Location`].
fn place(at: Location) -> &'static dyn Place {
    match at {
        Location::DaemonJson => &DaemonJson,
        Location::Sysconfig => &Sysconfig,
        Location::RuntimesDir => &RuntimesDir,
    }
}

/// Where the runtimes and where the default runtime are set now, or will be set.
fn locate(draft: &Draft) -> Result<(Location, Location), DockerConfigError> {
    let paths = draft.paths;
    let options = draft.options.as_ref();
    let json_runtimes = daemon_json::defines_runtimes(&draft.daemon);
    let flags_add = sysconfig::defines_runtimes(options);
    if flags_add && json_runtimes {
        return Err(DockerConfigError::Conflict(
            paths.daemon_json.display().to_string(),
            paths.sysconfig.display().to_string(),
        ));
    }
    let runtimes_in = if json_runtimes {
        Location::DaemonJson
    } else if flags_add {
        Location::Sysconfig
    } else if draft.current.runtimes_dir {
        Location::RuntimesDir
    } else {
        Location::DaemonJson
    };
    let default_in = if sysconfig::names_default(options) {
        Location::Sysconfig
    } else if daemon_json::names_default(&draft.daemon) {
        Location::DaemonJson
    } else if runtimes_in != Location::DaemonJson && options.is_some() {
        // The runtimes are not in daemon.json and the sysconfig file is there: a flag leaves
        // daemon.json untouched.
        Location::Sysconfig
    } else {
        Location::DaemonJson
    };
    Ok((runtimes_in, default_in))
}

/// The edits that make `runtime` dockerd's default and its `nvidia`, and the record of what was
/// there. Running it on its own result gives no edits.
pub fn plan_configure(
    paths: &Paths,
    current: &Current,
    runtime: &Path,
) -> Result<(Vec<Edit>, Record), DockerConfigError> {
    let mut draft = Draft::new(paths, current);
    let (runtimes_in, default_in) = locate(&draft)?;
    // A second configure must not take its own work for what was there before.
    let mut record = current.record.clone().unwrap_or_else(|| Record {
        runtimes_in,
        default_in,
        previous_default: place(default_in).default_runtime(&draft),
        previous_nvidia: place(runtimes_in).nvidia(&draft),
        previous_nvidia_mode: (runtimes_in == Location::RuntimesDir)
            .then_some(current.nvidia_mode)
            .flatten(),
        created_daemon_json: current.daemon_text.is_none(),
        channel_link: None,
        created_dirs: Vec::new(),
        originals: Vec::new(),
        record_dirs: current.record_dir_missing.clone(),
    });
    // `nvidia` must be run with argv[0]'s file name `nvidia`: see channel.rs.
    let nvidia = if place(runtimes_in).names_runtimes_by_path() {
        channel::plan_link(&mut draft, runtime, &mut record)?
    } else {
        runtime.to_path_buf()
    };
    place(runtimes_in).set_runtimes(&mut draft, runtime, &nvidia);
    place(default_in).set_default(&mut draft);

    let mut files = Vec::new();
    files.extend(daemon_json::write(
        &paths.daemon_json,
        current,
        &draft.daemon,
    ));
    files.extend(sysconfig::write(
        &paths.sysconfig,
        current,
        draft.options.as_ref(),
    )?);
    for f in &files {
        note_original(&mut record, f, current.record.is_none());
    }
    // The record goes first: if it cannot be written, nothing else is.
    let mut edits = Vec::new();
    // Written the first time, and again when it changes (a record from before the link,
    // another --channel-dir, a file rewritten again).
    if current.record.as_ref() != Some(&record) {
        let before = current.record.as_ref().map(render_record).transpose()?;
        edits.push(Edit::Write {
            path: paths.record.clone(),
            before,
            after: render_record(&record)?,
            backup: false,
        });
    }
    edits.extend(draft.edits);
    edits.extend(files);
    Ok((edits, record))
}

/// Notes a file configure rewrites: its original on the first configure (later, the file holds
/// configure's own work, no original), and what it now writes where it has the original.
fn note_original(record: &mut Record, edit: &Edit, first: bool) {
    let Edit::Write {
        path,
        before,
        after,
        ..
    } = edit
    else {
        return;
    };
    match record.originals.iter_mut().find(|o| &o.path == path) {
        Some(o) => o.after.clone_from(after),
        None if !first => {}
        None => record.originals.push(Original {
            path: path.clone(),
            before: before.clone(),
            after: after.clone(),
        }),
    }
}

/// The files the record can put back byte for byte: those still as configure wrote them.
fn restorable<'a>(record: &'a Record, paths: &Paths, current: &Current) -> Vec<&'a Original> {
    record
        .originals
        .iter()
        .filter(|o| {
            let now = if o.path == paths.daemon_json {
                current.daemon_text.as_ref()
            } else if o.path == paths.sysconfig {
                current.sysconfig.as_ref()
            } else {
                None
            };
            now == Some(&o.after)
        })
        .collect()
}

fn render_record(record: &Record) -> Result<String, DockerConfigError> {
    serde_json::to_string_pretty(record)
        .map(|t| t + "\n")
        .map_err(DockerConfigError::Record)
}

/// The edits that put back what the record says configure replaced.
pub fn plan_unconfigure(paths: &Paths, current: &Current) -> Result<Vec<Edit>, DockerConfigError> {
    let record = current
        .record
        .as_ref()
        .ok_or_else(|| DockerConfigError::NoRecord(paths.record.display().to_string()))?;
    let mut draft = Draft::new(paths, current);
    place(record.runtimes_in).restore_runtimes(&mut draft, record);
    place(record.default_in).restore_default(&mut draft, record.previous_default.as_deref());
    draft.edits.extend(channel::undo(record));

    let mut edits = draft.edits;
    if record.created_daemon_json && draft.daemon.is_empty() && current.daemon.is_some() {
        edits.push(Edit::Remove {
            path: paths.daemon_json.clone(),
        });
    } else {
        edits.extend(daemon_json::write(
            &paths.daemon_json,
            current,
            &draft.daemon,
        ));
    }
    edits.extend(sysconfig::write(
        &paths.sysconfig,
        current,
        draft.options.as_ref(),
    )?);
    // A file still as configure left it gets its original bytes back, not a re-rendering.
    for o in restorable(record, paths, current) {
        edits.retain(
            |e| !matches!(e, Edit::Write { path, .. } | Edit::Remove { path } if *path == o.path),
        );
        edits.push(match &o.before {
            Some(text) => Edit::Write {
                path: o.path.clone(),
                before: Some(o.after.clone()),
                after: text.clone(),
                backup: false,
            },
            None => Edit::Remove {
                path: o.path.clone(),
            },
        });
    }
    edits.push(Edit::Remove {
        path: paths.record.clone(),
    });
    edits.extend(
        record
            .record_dirs
            .iter()
            .map(|d| Edit::RemoveDir { path: d.clone() }),
    );
    Ok(edits)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::super::describe::describe;
    use super::super::model::Previous;
    use super::*;

    fn paths(dir: &Path) -> Paths {
        Paths {
            daemon_json: dir.join("daemon.json"),
            sysconfig: dir.join("sysconfig-docker"),
            runtimes_dir: dir.join("runtimes.d"),
            record: dir.join("record.json"),
            channel_dir: dir.join("libexec/gpu-share"),
        }
    }

    #[test]
    fn sysconfig_default_is_changed_in_sysconfig_and_runtimes_go_to_daemon_json() {
        let current = Current {
            sysconfig: Some("OPTIONS=\"--default-runtime nvidia\"\n".into()),
            ..Current::default()
        };
        let dir = Path::new("/etc");
        let (edits, record) = plan_configure(
            &paths(dir),
            &current,
            Path::new("/usr/bin/gpu-share-runtime"),
        )
        .unwrap();
        assert_eq!(record.default_in, Location::Sysconfig);
        assert_eq!(record.previous_default.as_deref(), Some("nvidia"));
        assert_eq!(record.runtimes_in, Location::DaemonJson);
        let text = describe(&edits);
        assert!(
            text.contains("+OPTIONS=\"--default-runtime gpu-share\""),
            "{text}"
        );
        assert!(
            !text.contains("+  \"default-runtime\""),
            "set twice: {text}"
        );
    }

    #[test]
    fn runtimes_in_both_places_is_refused() {
        let current = Current {
            daemon: Some(serde_json::from_str(r#"{"runtimes": {}}"#).unwrap()),
            sysconfig: Some("OPTIONS=\"--add-runtime x=/y\"\n".into()),
            ..Current::default()
        };
        let e = plan_configure(&paths(Path::new("/etc")), &current, Path::new("/r")).unwrap_err();
        assert!(matches!(e, DockerConfigError::Conflict(..)));
    }

    #[test]
    fn a_record_from_before_the_channel_link_still_loads() {
        let old = r#"{"runtimes_in": "sysconfig", "default_in": "daemon-json",
            "previous_default": null, "previous_nvidia": {"kind": "absent"}}"#;
        let r: Record = serde_json::from_str(old).unwrap();
        assert_eq!(r.channel_link, None);
        assert!(r.created_dirs.is_empty() && !r.created_daemon_json);
    }

    #[test]
    fn runtimes_dir_needs_no_channel_link() {
        let current = Current {
            runtimes_dir: true,
            channel_dir_missing: vec!["/l/g".into(), "/l".into()],
            ..Current::default()
        };
        let (edits, record) =
            plan_configure(&paths(Path::new("/e")), &current, Path::new("/r")).unwrap();
        assert_eq!(record.channel_link, None);
        assert!(record.created_dirs.is_empty());
        assert!(
            edits.contains(&Edit::Link {
                path: "/e/runtimes.d/nvidia".into(),
                target: "/r".into()
            }),
            "{edits:?}"
        );
        assert!(!describe(&edits).contains("libexec"), "{edits:?}");
    }

    #[test]
    fn another_channel_dir_moves_the_link_and_keeps_dirs_above_it() {
        let dir = Path::new("/e");
        let record = Record {
            runtimes_in: Location::DaemonJson,
            default_in: Location::DaemonJson,
            previous_default: None,
            previous_nvidia: Previous::Absent,
            previous_nvidia_mode: None,
            created_daemon_json: true,
            channel_link: Some("/e/old/gpu-share/nvidia".into()),
            created_dirs: vec!["/e/old/gpu-share".into(), "/e/old".into()],
            originals: Vec::new(),
            record_dirs: Vec::new(),
        };
        let mut p = paths(dir);
        p.channel_dir = "/e/old/new".into();
        let current = Current {
            channel_dir_missing: vec!["/e/old/new".into()],
            record: Some(record),
            ..Current::default()
        };
        let (edits, record) = plan_configure(&p, &current, Path::new("/r")).unwrap();
        assert_eq!(record.channel_link, Some("/e/old/new/nvidia".into()));
        assert_eq!(
            record.created_dirs,
            [PathBuf::from("/e/old/new"), PathBuf::from("/e/old")]
        );
        for e in [
            Edit::Remove {
                path: "/e/old/gpu-share/nvidia".into(),
            },
            Edit::RemoveDir {
                path: "/e/old/gpu-share".into(),
            },
        ] {
            assert!(edits.contains(&e), "{e:?} not in {edits:?}");
        }
        assert!(!edits.contains(&Edit::RemoveDir {
            path: "/e/old".into()
        }));
        let undo = plan_unconfigure(
            &p,
            &Current {
                record: Some(record),
                ..Current::default()
            },
        )
        .unwrap();
        let text = describe(&undo);
        assert!(
            text.contains(
                "remove /e/old/new/nvidia\nremove /e/old/new if empty\nremove /e/old if empty\n"
            ),
            "{text}"
        );
    }
}
