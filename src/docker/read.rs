//! Reading the files dockerd is configured by, and the record, into [`Current`].
//!
//! The only module of `docker` that reads the filesystem; it never writes.

use std::path::Path;

use super::daemon_json;
use super::model::{io, Current, DockerConfigError, Entry, Paths, Previous, NAME, NVIDIA};
use super::options::Options;

/// Reads the files `paths` names. Invalid daemon.json is an error: nothing may be written then.
pub fn read_current(paths: &Paths) -> Result<Current, DockerConfigError> {
    let read = |p: &Path| match std::fs::read_to_string(p) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(p)(e)),
    };
    let daemon_text = read(&paths.daemon_json)?;
    let daemon = daemon_text
        .as_deref()
        .map(|t| daemon_json::parse(&paths.daemon_json, t))
        .transpose()?;
    let nvidia = paths.runtimes_dir.join(NVIDIA);
    let (nvidia_file, nvidia_link, nvidia_mode) = match std::fs::symlink_metadata(&nvidia) {
        Ok(m) if m.file_type().is_symlink() => {
            let target = std::fs::read_link(&nvidia).map_err(io(&nvidia))?;
            (
                Previous::Link(target.display().to_string()),
                Some(target),
                None,
            )
        }
        Ok(m) => {
            let text = std::fs::read_to_string(&nvidia).map_err(io(&nvidia))?;
            let mode = std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777;
            (Previous::File(text), None, Some(mode))
        }
        Err(_) => (Previous::Absent, None, None),
    };
    let channel = paths.channel_dir.join(NVIDIA);
    let channel_entry = match std::fs::symlink_metadata(&channel) {
        Ok(m) if m.file_type().is_symlink() => {
            Entry::Link(std::fs::read_link(&channel).map_err(io(&channel))?)
        }
        Ok(_) => Entry::Other,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Entry::Absent,
        Err(e) => return Err(io(&channel)(e)),
    };
    // Deepest first, stopping at the first that is there: what making the link would create.
    let missing = |dir: Option<&Path>| {
        dir.into_iter()
            .flat_map(Path::ancestors)
            .take_while(|d| !d.as_os_str().is_empty() && std::fs::symlink_metadata(d).is_err())
            .map(Path::to_path_buf)
            .collect()
    };
    let channel_dir_missing = missing(Some(&paths.channel_dir));
    let record_dir_missing = missing(paths.record.parent());
    let sysconfig = read(&paths.sysconfig)?;
    // A file whose OPTIONS could be misread is refused before anything is planned.
    if let Some(reason) = sysconfig
        .as_deref()
        .map(Options::parse)
        .as_ref()
        .and_then(|o| o.refusal().map(str::to_owned))
    {
        return Err(DockerConfigError::Sysconfig {
            path: paths.sysconfig.display().to_string(),
            reason,
        });
    }
    let record = read(&paths.record)?.and_then(|t| serde_json::from_str(&t).ok());
    Ok(Current {
        daemon_text,
        daemon,
        sysconfig,
        runtimes_dir: paths.runtimes_dir.is_dir(),
        nvidia_file,
        nvidia_mode,
        nvidia_link,
        gpu_share_link: std::fs::read_link(paths.runtimes_dir.join(NAME)).ok(),
        channel_entry,
        channel_dir_missing,
        record_dir_missing,
        record,
    })
}
