//! Errors in runc's own `--log` file, in the `--log-format` runc was asked for.
//!
//! containerd-shim-runc-v2 reads the last error from that file when runc fails, and docker shows
//! it to the user ("OCI runtime create failed: ..."). A shim failure written there the same way
//! reaches the person who typed `docker run`.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::runc_call::LogFormat;
use crate::timestamp::now_rfc3339;

/// One error line, as runc's logrus formatter would write it.
pub fn format_error(format: LogFormat, msg: &str, time: &str) -> String {
    match format {
        LogFormat::Json => {
            let line = serde_json::json!({"level": "error", "msg": msg, "time": time});
            format!("{line}\n")
        }
        LogFormat::Text => {
            // logrus quotes the message Go-style; JSON string escaping is that for text.
            let quoted = serde_json::Value::from(msg).to_string();
            format!("time=\"{time}\" level=error msg={quoted}\n")
        }
    }
}

/// Appends an error line to runc's log. Best effort: the error is also on stderr.
pub fn write_error(path: &Path, format: LogFormat, msg: &str) {
    let line = format_error(format, msg, &now_rfc3339());
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o644)
        .custom_flags(libc::O_CLOEXEC)
        .open(path);
    if let Ok(mut f) = file {
        let _ = f.write_all(line.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_line_is_what_containerd_reads() {
        let line = format_error(LogFormat::Json, "bad \"thing\"", "T");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["level"], "error");
        assert_eq!(v["msg"], "bad \"thing\"");
        assert_eq!(v["time"], "T");
        assert!(line.ends_with('\n'));
    }

    #[test]
    fn text_line_is_logrus_shaped() {
        assert_eq!(
            format_error(LogFormat::Text, "no \"gpu\"", "T"),
            "time=\"T\" level=error msg=\"no \\\"gpu\\\"\"\n"
        );
    }

    #[test]
    fn appends_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log.json");
        std::fs::write(&p, "{\"level\":\"info\",\"msg\":\"x\"}\n").unwrap();
        write_error(&p, LogFormat::Json, "boom");
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.lines().nth(1).unwrap().contains("\"boom\""));
    }
}
