//! Xids from the kernel log: the driver's `NVRM: Xid (PCI:<bus id>): <xid>, ...` lines, read
//! from `/dev/kmsg` (`health.kmsg`) on a thread of their own.
//!
//! Formats seen from the driver (the pid and name fields arrived in later drivers, and a
//! driver that cannot tell prints `'<unknown>'`; MIG adds ` GPU-I:<n>` inside the parentheses):
//! ```text
//! NVRM: Xid (PCI:0000:00:1e): 79, pid=1234, name=python3, GPU has fallen off the bus.
//! NVRM: Xid (PCI:0000:3b:00): 13, Graphics SM Warp Exception on (GPC 0, TPC 0, SM 0): ...
//! NVRM: Xid (PCI:0000:01:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.
//! NVRM: Xid (PCI:0000:01:00 GPU-I:05): 31, pid=2179, name=python, Ch 00000010, ...
//! ```
//! `/dev/kmsg` prefixes each record with `<priority>,<seq>,<usec>,<flags>;` and gives one
//! record per read, starting at the oldest in the ring: the watcher seeks to the end first so
//! an earlier boot's (or an earlier agent's) Xids are not counted again, and reads on through
//! EPIPE, which only says older records were overwritten before they were read.
//!
//! Owns the line format and the reading. Never decides what an Xid means.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use super::event::{PciAddr, XidEvent, XidGpu};
use crate::config::XidSource;

const MARK: &str = "NVRM: Xid (";
/// Longest driver message kept (the rest of a line is dropped).
const MAX_MESSAGE: usize = 200;
/// How long to wait at the end of a file or FIFO (tests, replays) before reading again.
const AT_END: Duration = Duration::from_millis(200);

/// One Xid line, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsgXid {
    pub bus: PciAddr,
    pub xid: u64,
    pub pid: Option<u32>,
    pub process: Option<String>,
    pub message: String,
}

/// Parses one line of the kernel log; `None` for every line that is not a well-formed Xid.
pub fn parse_line(line: &str) -> Option<KmsgXid> {
    let rest = &line[line.find(MARK)? + MARK.len()..];
    let close = rest.find(')')?;
    let addr = rest[..close]
        .strip_prefix("PCI:")?
        .split_whitespace()
        .next()?;
    let bus = PciAddr::parse(addr)?;
    let rest = rest[close + 1..].strip_prefix(':')?.trim_start();
    let (xid, mut rest) = rest.split_once(',').unwrap_or((rest, ""));
    let xid = xid.trim().parse().ok()?;
    rest = rest.trim_start();
    let mut pid = None;
    if let Some(r) = rest.strip_prefix("pid=") {
        let (value, r) = field(r);
        pid = value.parse().ok();
        rest = r;
    }
    let mut process = None;
    if let Some(r) = rest.strip_prefix("name=") {
        let (value, r) = field(r);
        process = Some(clean(value)).filter(|v| !v.is_empty() && !v.contains("<unknown>"));
        rest = r;
    }
    Some(KmsgXid {
        bus,
        xid,
        pid,
        process,
        message: clean(rest.trim()),
    })
}

/// A `key=value, ` field's value and what follows it.
fn field(text: &str) -> (&str, &str) {
    match text.split_once(',') {
        Some((v, r)) => (v.trim(), r.trim_start()),
        None => (text.trim(), ""),
    }
}

/// The driver's words, made safe to log: control characters replaced, length bounded.
fn clean(text: &str) -> String {
    text.chars()
        .take(MAX_MESSAGE)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Opens the kernel log at `path` and reads it on a thread, sending each Xid to `send` until
/// the receiver is gone. Fails only if the file cannot be opened.
pub fn watch(path: &Path, send: Sender<XidEvent>, log: fn(&str)) -> io::Result<()> {
    let mut file = File::open(path)?;
    // A FIFO or a pipe cannot seek (ESPIPE): it has no old records to skip anyway.
    let _ = file.seek(SeekFrom::End(0));
    let shown = path.display().to_string();
    std::thread::Builder::new()
        .name("xid-kmsg".into())
        .spawn(move || read_records(file, &send, &shown, log))?;
    Ok(())
}

fn read_records(mut file: File, send: &Sender<XidEvent>, shown: &str, log: fn(&str)) {
    // One /dev/kmsg record is at most a few KiB; a shorter buffer makes read fail (EINVAL).
    let mut buf = vec![0u8; 16 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    let mut told = false;
    loop {
        match file.read(&mut buf) {
            Ok(0) => std::thread::sleep(AT_END),
            Ok(n) => {
                pending.extend_from_slice(&buf[..n]);
                while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=end).collect();
                    if let Some(x) = parse_line(&String::from_utf8_lossy(&line)) {
                        if send.send(event(x)).is_err() {
                            return;
                        }
                    }
                }
                if pending.len() > buf.len() {
                    pending.clear();
                }
            }
            // Overrun: records were overwritten before they were read; the next read goes on.
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                if !told {
                    log(&format!("kernel log {shown}: {e}; retrying every second"));
                    told = true;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

fn event(x: KmsgXid) -> XidEvent {
    XidEvent {
        gpu: XidGpu::Bus(x.bus),
        xid: x.xid,
        pid: x.pid,
        process: x.process,
        message: x.message,
        source: XidSource::Kmsg,
        at: Instant::now(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bus(text: &str) -> PciAddr {
        PciAddr::parse(text).unwrap()
    }

    #[test]
    fn a_kmsg_record_with_pid_and_name_is_read_whole() {
        let x = parse_line(
            "4,1234,5678901,-;NVRM: Xid (PCI:0000:00:1e): 79, pid=1234, name=python3, GPU has fallen off the bus.",
        )
        .unwrap();
        assert_eq!(
            x,
            KmsgXid {
                bus: bus("0000:00:1e"),
                xid: 79,
                pid: Some(1234),
                process: Some("python3".into()),
                message: "GPU has fallen off the bus.".into(),
            }
        );
    }

    #[test]
    fn an_older_driver_line_without_pid_keeps_its_message() {
        let x = parse_line("[  812.334] NVRM: Xid (PCI:0000:3b:00): 13, Graphics SM Warp Exception on (GPC 0, TPC 0, SM 0): Out Of Range Address").unwrap();
        assert_eq!((x.xid, x.pid, x.process.as_deref()), (13, None, None));
        assert_eq!(x.bus, bus("0000:3b:00"));
        assert!(
            x.message
                .starts_with("Graphics SM Warp Exception on (GPC 0"),
            "{}",
            x.message
        );
        let x = parse_line(
            "kernel: NVRM: Xid (PCI:0000:01:00): 79, pid=1122, GPU has fallen off the bus.",
        )
        .unwrap();
        assert_eq!((x.xid, x.pid), (79, Some(1122)));
        assert_eq!(x.message, "GPU has fallen off the bus.");
    }

    #[test]
    fn unknown_pid_and_mig_instances_are_understood() {
        let x = parse_line("NVRM: Xid (PCI:0000:01:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.").unwrap();
        assert_eq!((x.xid, x.pid, x.process), (79, None, None));
        let x = parse_line("NVRM: Xid (PCI:0000:01:00 GPU-I:05): 31, pid=2179, name=python, Ch 00000010, intr 10000000.").unwrap();
        assert_eq!((x.bus, x.xid, x.pid), (bus("0000:01:00"), 31, Some(2179)));
        assert_eq!(x.message, "Ch 00000010, intr 10000000.");
    }

    #[test]
    fn garbage_lines_are_not_xids() {
        for line in [
            "",
            "6,99,1,-;eth0: link up",
            "NVRM: GPU 0000:01:00.0: GPU has fallen off the bus.",
            "NVRM: Xid (PCI:0000:01:00): abc, pid=1",
            "NVRM: Xid (PCI:zz:01:00): 79, pid=1",
            "NVRM: Xid (0000:01:00): 79",
            "NVRM: Xid (PCI:0000:01:00",
            "NVRM: Xid (PCI:0000:01:00) 79",
            "NVRM: Xid (PCI:0000:01:00): -3, x",
        ] {
            assert_eq!(parse_line(line), None, "{line:?}");
        }
        let x =
            parse_line("NVRM: Xid (PCI:0000:01:00): 48, pid=9, name=a\u{1b}[31mb, m\u{7}").unwrap();
        assert_eq!(x.process.as_deref(), Some("a?[31mb"));
        assert_eq!(x.message, "m?");
    }
}
