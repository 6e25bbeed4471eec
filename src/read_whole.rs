//! Reading a small file whole in the fewest syscalls the create path can afford.
//!
//! `std::fs::read` asks the file's size (`statx`), reads that much, then reads again only to
//! see the end (0 bytes). Here the buffer has room for one byte more than expected, so a file
//! that holds what it said ends with one short `read`: a shorter read than asked is the end of
//! a regular file, and a `/proc` file made in one go (`/proc/PID/stat`, the driver's
//! `information`) gives all of itself in its first read when the buffer can hold it. A read
//! that fills the buffer (a file that grew, a long `/proc` file) goes on to the real end.
//!
//! Not for `/proc` files of many records (`maps`, `mounts`): their reads stop at a record
//! boundary well short of the buffer, so the first short read is not their end. Every file the
//! create path reads is a regular file or a one-record `/proc` file.
//!
//! Owns only how bytes are read. It never decides which files are read, nor what their bytes
//! mean, and never follows a file past `limit` bytes.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Files expected up to a page are read on the stack first (the page and the one byte that
/// shows the end). No larger: every page of a stack buffer is touched by the stack probe on
/// entry, each a page fault of its own in a process this short.
const ON_STACK: usize = 4096 + 1;

/// Reads `file` to its end, expecting about `expected` bytes (its size, or a guess for a file
/// without one). Stops with `InvalidData` past `limit` bytes.
///
/// A file expected to be small is read into a buffer on the stack and copied into a vector of
/// its exact length: a guess's unused room would otherwise sit in the runtime's bump arena,
/// pushing what is allocated next onto a page of its own (a page fault each).
pub fn read_to_end(file: &mut File, expected: usize, limit: usize) -> io::Result<Vec<u8>> {
    let want = expected.min(limit) + 1;
    if want <= ON_STACK {
        let mut stack = [std::mem::MaybeUninit::<u8>::uninit(); ON_STACK];
        let n = read_into(file, &mut stack[..want])?;
        // SAFETY: `read` initialised the first `n` bytes.
        let read = unsafe { std::slice::from_raw_parts(stack.as_ptr().cast::<u8>(), n) };
        if n < want {
            return if n > limit {
                Err(too_large(limit))
            } else {
                Ok(read.to_vec())
            };
        }
        let mut bytes = Vec::with_capacity(2 * want);
        bytes.extend_from_slice(read);
        return read_rest(file, bytes, limit);
    }
    read_rest(file, Vec::with_capacity(want), limit)
}

fn too_large(limit: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("larger than {limit} bytes"),
    )
}

/// Reads on into `bytes`' spare room, growing it, until the end or past `limit`.
fn read_rest(file: &mut File, mut bytes: Vec<u8>, limit: usize) -> io::Result<Vec<u8>> {
    loop {
        let room = bytes.capacity() - bytes.len();
        let n = read_into_spare(file, &mut bytes)?;
        if n == 0 || n < room {
            break;
        }
        if bytes.len() > limit {
            return Err(too_large(limit));
        }
        bytes.reserve(bytes.len().max(4096));
    }
    if bytes.len() > limit {
        return Err(too_large(limit));
    }
    Ok(bytes)
}

/// Opens `path` read-only (close-on-exec, plus `flags`) and reads it whole, expecting about
/// `expected` bytes: open, one read, close for a file that fits.
pub fn read_path(path: &Path, flags: i32, expected: usize, limit: usize) -> io::Result<Vec<u8>> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC | flags)
        .open(path)?;
    read_to_end(&mut file, expected, limit)
}

/// One `read` into the spare capacity of `bytes`, retried on EINTR; the count read.
fn read_into_spare(file: &mut File, bytes: &mut Vec<u8>) -> io::Result<usize> {
    let n = read_into(file, bytes.spare_capacity_mut())?;
    // SAFETY: `read` initialised these `n` bytes, all within the capacity.
    unsafe { bytes.set_len(bytes.len() + n) };
    Ok(n)
}

/// One `read` into `buf`, retried on EINTR; the count read, whose bytes are then initialised.
///
/// Into uninitialised room, not a zero-filled one: zeroing would write (and so fault in) every
/// page of a buffer sized for the largest file expected, where `read` touches only the bytes
/// the file has.
fn read_into(file: &mut File, buf: &mut [std::mem::MaybeUninit<u8>]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is writable memory of `buf.len()` bytes; `read` writes at most that many.
        let n = unsafe {
            libc::read(
                file.as_raw_fd(),
                buf.as_mut_ptr().cast::<libc::c_void>(),
                buf.len(),
            )
        };
        match usize::try_from(n) {
            Ok(n) => return Ok(n.min(buf.len())),
            Err(_) => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(bytes: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, bytes).unwrap();
        (dir, path)
    }

    #[test]
    fn reads_a_file_whole_whatever_size_was_expected() {
        let content: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        let (_d, path) = file_with(&content);
        for expected in [0, 1, 100, 4096, 19_999, 20_000, 20_001, 100_000] {
            let got = read_path(&path, 0, expected, 1 << 20).unwrap();
            assert_eq!(got, content, "expected {expected}");
        }
    }

    #[test]
    fn an_empty_file_is_empty() {
        let (_d, path) = file_with(b"");
        assert_eq!(read_path(&path, 0, 0, 10).unwrap(), b"");
        assert_eq!(read_path(&path, 0, 100, 10).unwrap(), b"");
    }

    #[test]
    fn a_file_past_the_limit_is_refused() {
        let (_d, path) = file_with(&[b'x'; 5000]);
        let e = read_path(&path, 0, 10, 4999).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        let e = read_path(&path, 0, 6000, 4999).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert_eq!(read_path(&path, 0, 10, 5000).unwrap().len(), 5000);
    }

    #[test]
    fn a_one_record_proc_file_reads_whole() {
        for (path, expected) in [("/proc/self/comm", 16), ("/proc/self/comm", 1)] {
            let got = read_path(Path::new(path), 0, expected, 1 << 16).unwrap();
            assert_eq!(
                got,
                std::fs::read(path).unwrap(),
                "{path}, expecting {expected}"
            );
        }
        let stat = read_path(Path::new("/proc/self/stat"), 0, 1024, 1 << 16).unwrap();
        let pid = format!("{} ", std::process::id());
        assert!(stat.starts_with(pid.as_bytes()) && stat.ends_with(b"\n"));
        // The 52 fields of the line (the command name, field 2, has no space here).
        assert_eq!(stat.split(|&b| b == b' ').count(), 52);
    }
}
