//! Reading a small file whole in the fewest syscalls the create path can afford.
//!
//! `std::fs::read` asks the file's size (`statx`), reads that much, then reads again only to
//! see the end (0 bytes). Here the buffer has room for one byte more than expected, so a file
//! that holds what it said ends with one short `read`: a shorter read than asked is the end of
//! a regular file, and a `/proc` file made in one go (`/proc/PID/stat`, the driver's
//! `information`) gives all of itself in its first read when the buffer can hold it. A read
//! that fills the buffer (a file that grew, a long `/proc` file) goes on to the real end.
//!
//! Owns only how bytes are read. It never decides which files are read, nor what their bytes
//! mean, and never follows a file past `limit` bytes.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Reads `file` to its end, expecting about `expected` bytes (its size, or a guess for a file
/// without one). Stops with `InvalidData` past `limit` bytes.
pub fn read_to_end(file: &mut File, expected: usize, limit: usize) -> io::Result<Vec<u8>> {
    let mut bytes: Vec<u8> = Vec::with_capacity(expected.min(limit) + 1);
    loop {
        let room = bytes.capacity() - bytes.len();
        let n = read_into_spare(file, &mut bytes)?;
        if n == 0 || n < room {
            break;
        }
        if bytes.len() > limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("larger than {limit} bytes"),
            ));
        }
        bytes.reserve(bytes.len().max(4096));
    }
    if bytes.len() > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {limit} bytes"),
        ));
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
///
/// Into the uninitialised spare room, not a zero-filled one: zeroing would write (and so fault
/// in) every page of a buffer sized for the largest file expected, where `read` touches only
/// the bytes the file has.
fn read_into_spare(file: &mut File, bytes: &mut Vec<u8>) -> io::Result<usize> {
    let spare = bytes.spare_capacity_mut();
    loop {
        // SAFETY: `spare` is writable memory of `spare.len()` bytes owned by `bytes`; `read`
        // writes at most that many, and only the count it returns is then marked initialised.
        let n = unsafe {
            libc::read(
                file.as_raw_fd(),
                spare.as_mut_ptr().cast::<libc::c_void>(),
                spare.len(),
            )
        };
        match usize::try_from(n) {
            Ok(n) => {
                // SAFETY: `read` initialised these `n` bytes, all within the capacity.
                unsafe { bytes.set_len(bytes.len() + n) };
                return Ok(n);
            }
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
    fn a_proc_file_reads_whole() {
        let stat = read_path(Path::new("/proc/self/stat"), 0, 1024, 1 << 16).unwrap();
        assert_eq!(stat.last(), Some(&b'\n'));
        let maps = read_path(Path::new("/proc/self/maps"), 0, 16, 1 << 24).unwrap();
        assert_eq!(maps.last(), Some(&b'\n'));
    }
}
