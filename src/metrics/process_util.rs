//! Per-process SM utilisation from NVML's process utilisation samples
//! (`nvmlDeviceGetProcessUtilization`), with the per-GPU cursor NVML intends: each call asks
//! only for the samples newer than the newest one already seen on that GPU, so every driver
//! sample is counted once and a process idle since the last call reads 0.
//!
//! Owns what a reading means (samples, none since the cursor, no figure at all) and how the
//! samples of one window become one utilisation per pid. Never calls NVML (the sampler does and
//! hands the outcome in) and never looks at `/proc` or containers.

use std::collections::HashMap;

/// One of NVML's per-process samples, the fields of it that are used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtilSample {
    pub pid: u32,
    /// The CPU time the driver took it at, in microseconds.
    pub timestamp_us: u64,
    pub sm_util: u32,
}

/// What one `nvmlDeviceGetProcessUtilization` call on one GPU gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reading {
    Samples(Vec<UtilSample>),
    /// `NVML_ERROR_NOT_FOUND`: no process had a sample since the cursor. NVML only keeps samples
    /// of processes with non-zero utilisation, so every process on the GPU was idle: 0.
    NoneSince,
    /// `NVML_ERROR_NOT_SUPPORTED` (or the call failed, or the driver lacks it): no figure.
    /// Published as no datum, never as a 0 that would read as an idle GPU.
    Absent,
}

/// Each process's SM utilisation on one GPU over the window the reading covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PerPid {
    /// Utilisation by pid; a process with no sample in the window was idle.
    Known(HashMap<u32, u32>),
    Absent,
}

impl PerPid {
    /// `pid`'s utilisation: 0 when it had no sample, `None` when the GPU gives no figure.
    pub fn of(&self, pid: u32) -> Option<u32> {
        match self {
            PerPid::Known(by_pid) => Some(by_pid.get(&pid).copied().unwrap_or(0)),
            PerPid::Absent => None,
        }
    }
}

/// The newest sample timestamp seen on each GPU (by NVML index), kept between samples.
#[derive(Debug, Default)]
pub struct Cursors {
    last_seen: HashMap<u32, u64>,
}

impl Cursors {
    /// What to pass NVML as `lastSeenTimeStamp` for `gpu`: 0 (every buffered sample) at first.
    pub fn since(&self, gpu: u32) -> u64 {
        self.last_seen.get(&gpu).copied().unwrap_or(0)
    }

    /// The utilisation per pid on `gpu` from its reading, advancing the cursor past it. A pid
    /// with several samples in the window gets their mean; samples NVML should not have
    /// returned (not newer than the cursor, pid 0: unused slots of its buffer) are skipped.
    pub fn per_pid(&mut self, gpu: u32, reading: Reading) -> PerPid {
        let samples = match reading {
            Reading::Samples(s) => s,
            Reading::NoneSince => return PerPid::Known(HashMap::new()),
            Reading::Absent => return PerPid::Absent,
        };
        let since = self.since(gpu);
        let mut sums: HashMap<u32, (u64, u64)> = HashMap::new();
        let mut newest = since;
        for s in samples
            .iter()
            .filter(|s| s.pid != 0 && s.timestamp_us > since)
        {
            let e = sums.entry(s.pid).or_default();
            e.0 += u64::from(s.sm_util);
            e.1 += 1;
            newest = newest.max(s.timestamp_us);
        }
        self.last_seen.insert(gpu, newest);
        PerPid::Known(
            sums.into_iter()
                .map(|(pid, (sum, n))| (pid, ((sum + n / 2) / n) as u32))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(pid: u32, timestamp_us: u64, sm_util: u32) -> UtilSample {
        UtilSample {
            pid,
            timestamp_us,
            sm_util,
        }
    }

    #[test]
    fn a_pid_with_several_samples_gets_their_mean_and_an_idle_one_zero() {
        let mut c = Cursors::default();
        let got = c.per_pid(
            0,
            Reading::Samples(vec![s(10, 5, 20), s(10, 6, 41), s(11, 6, 7)]),
        );
        assert_eq!(got.of(10), Some(31));
        assert_eq!(got.of(11), Some(7));
        assert_eq!(got.of(12), Some(0));
    }

    #[test]
    fn the_cursor_advances_per_gpu_and_old_samples_are_not_counted_twice() {
        let mut c = Cursors::default();
        assert_eq!(c.since(0), 0);
        c.per_pid(0, Reading::Samples(vec![s(10, 100, 50)]));
        assert_eq!(c.since(0), 100);
        assert_eq!(c.since(1), 0);
        // A driver that hands back the old sample again: not newer than the cursor.
        let again = c.per_pid(0, Reading::Samples(vec![s(10, 100, 50), s(0, 900, 99)]));
        assert_eq!(again.of(10), Some(0));
        assert_eq!(c.since(0), 100);
    }

    #[test]
    fn not_found_is_zero_and_not_supported_is_absent() {
        let mut c = Cursors::default();
        c.per_pid(0, Reading::Samples(vec![s(10, 100, 50)]));
        assert_eq!(c.per_pid(0, Reading::NoneSince).of(10), Some(0));
        assert_eq!(c.since(0), 100);
        assert_eq!(c.per_pid(1, Reading::Absent).of(10), None);
    }
}
