//! Whether the create that recorded an entry (its pid becomes runc's) still runs: a pid and a
//! time in clock ticks since boot. Owns reading and comparing start times only; it never
//! reads or changes the state.

use std::path::Path;

/// Whether `pid` is still the process that recorded `start_time` (a tick at which it ran): a
/// process holding the pid now that started later is another one.
pub fn still_running(pid: i32, start_time: u64) -> bool {
    process_start_time(pid).is_some_and(|started| started <= start_time)
}

/// A process's start time (field 22 of `/proc/<pid>/stat`), in clock ticks since boot.
pub fn process_start_time(pid: i32) -> Option<u64> {
    start_time_in(Path::new(&format!("/proc/{pid}/stat")))
}

/// Now, in the clock ticks since boot of [`process_start_time`]: a time at which this process
/// runs, so never before its start. Read from the vDSO's `CLOCK_BOOTTIME`, the clock the
/// kernel stamps a process's start with: `/proc/self/stat` would be the exact start, but the
/// first read of a process's own `/proc` entries builds them (about 8 µs of a create).
pub fn own_start_time() -> Option<u64> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec to write; glibc answers CLK_TCK from the aux vector.
    let (clock, hz) = unsafe {
        (
            libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut now),
            libc::sysconf(libc::_SC_CLK_TCK),
        )
    };
    if clock != 0 {
        return None;
    }
    let (secs, nanos) = (
        u64::try_from(now.tv_sec).ok()?,
        u64::try_from(now.tv_nsec).ok()?,
    );
    ticks(secs, nanos, u64::try_from(hz).ok()?)
}

/// `secs` and `nanos` since boot in ticks of `hz`, rounded down as the kernel's
/// `nsec_to_clock_t` rounds a start time.
fn ticks(secs: u64, nanos: u64, hz: u64) -> Option<u64> {
    let per_tick = 1_000_000_000u64.checked_div(hz)?;
    secs.checked_mul(hz)?.checked_add(nanos / per_tick)
}

fn start_time_in(stat: &Path) -> Option<u64> {
    // Room for the whole line up front: a /proc file has no size to go by.
    let bytes = crate::read_whole::read_path(stat, 0, 1024, 64 * 1024).ok()?;
    let stat = std::str::from_utf8(&bytes).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count from its end.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_start_time_is_at_or_after_the_start_proc_gives() {
        let me = std::process::id() as i32;
        let started = process_start_time(me).unwrap();
        let own = own_start_time().unwrap();
        assert!(started <= own, "started {started}, own {own}");
        // Ticks of the clock /proc counts in: this test process is seconds old, not hours.
        assert!(own - started < 100 * 3600, "started {started}, own {own}");
    }

    #[test]
    fn ticks_round_down_as_the_kernel_does() {
        assert_eq!(ticks(12, 0, 100), Some(1200));
        assert_eq!(ticks(12, 9_999_999, 100), Some(1200));
        assert_eq!(ticks(12, 10_000_000, 100), Some(1201));
        assert_eq!(ticks(1, 999_999_999, 1000), Some(1999));
        assert_eq!(ticks(1, 0, 0), None);
    }
}
