//! The runtime's allocator: a bump arena in `.bss`, for a process that lives a millisecond and
//! then becomes runc.
//!
//! A create parses a spec into a tree of small strings and maps, edits it, writes it and execs:
//! thousands of small allocations, freed only at exit (or never: `execve` drops the address
//! space). glibc's `malloc`/`free` spent about a quarter of the create's instructions on them.
//! Here an allocation is an aligned bump of one offset, and freeing is a no-op except for the
//! most recent allocation, which is rolled back (so a growing `Vec`, a temporary `String` or a
//! `format!` buffer reuses its own bytes and `realloc` extends in place).
//!
//! The arena costs nothing until touched: `.bss` is mapped at `execve` with no syscall, and
//! only the pages used are faulted in. It is kept small (the runtime's is 1 MiB) so that its
//! mapping can never hold a transparent huge page, whose first touch would zero 2 MiB. What does not fit (a huge spec) goes to the system
//! allocator, which also frees what it gave, told apart by address.
//!
//! Owns that arena. It must never hand out overlapping memory, never free arena memory to the
//! system allocator, and never be used by a long-lived process (`gpu-share`, the tests): only
//! the runtime binary installs it as `#[global_allocator]`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Page-aligned storage, so the arena's first page is not shared with other statics.
#[repr(C, align(4096))]
struct Region<const N: usize>(UnsafeCell<[u8; N]>);

/// A bump allocator over `N` bytes of its own, falling back to [`System`] past them.
pub struct Bump<const N: usize> {
    region: Region<N>,
    /// Offset of the first free byte.
    next: AtomicUsize,
}

// The region is only ever reached through offsets claimed atomically from `next`: no two
// callers are handed the same bytes.
unsafe impl<const N: usize> Sync for Bump<N> {}

impl<const N: usize> Bump<N> {
    pub const fn new() -> Self {
        Bump {
            region: Region(UnsafeCell::new([0; N])),
            next: AtomicUsize::new(0),
        }
    }

    fn base(&self) -> usize {
        self.region.0.get() as usize
    }

    /// The arena offset of `ptr`, if it lies in the arena.
    fn offset_of(&self, ptr: *mut u8) -> Option<usize> {
        (ptr as usize).checked_sub(self.base()).filter(|&o| o < N)
    }

    /// Bytes of the arena in use.
    pub fn used(&self) -> usize {
        self.next.load(Ordering::Relaxed)
    }

    /// Claims `layout` from the arena; `None` when it does not fit.
    fn claim(&self, layout: Layout) -> Option<*mut u8> {
        let base = self.base();
        let mut cur = self.next.load(Ordering::Relaxed);
        loop {
            let start = (base + cur).checked_next_multiple_of(layout.align())? - base;
            let end = start.checked_add(layout.size())?;
            if end > N {
                return None;
            }
            match self
                .next
                .compare_exchange_weak(cur, end, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Some((base + start) as *mut u8),
                Err(now) => cur = now,
            }
        }
    }
}

impl<const N: usize> Default for Bump<N> {
    fn default() -> Self {
        Self::new()
    }
}

unsafe impl<const N: usize> GlobalAlloc for Bump<N> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match self.claim(layout) {
            Some(p) => p,
            None => System.alloc(layout),
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let Some(offset) = self.offset_of(ptr) else {
            return System.dealloc(ptr, layout);
        };
        // Only the latest allocation can be given back; anything else stays until exit.
        let _ = self.next.compare_exchange(
            offset + layout.size(),
            offset,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Some(offset) = self.offset_of(ptr) else {
            return System.realloc(ptr, layout, new_size);
        };
        if new_size <= layout.size() {
            let _ = self.next.compare_exchange(
                offset + layout.size(),
                offset + new_size,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            return ptr;
        }
        // The latest allocation grows where it is, when the arena has the room.
        if let Some(end) = offset.checked_add(new_size).filter(|&e| e <= N) {
            if self
                .next
                .compare_exchange(
                    offset + layout.size(),
                    end,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                return ptr;
            }
        }
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        let new = self.alloc(new_layout);
        if !new.is_null() {
            std::ptr::copy_nonoverlapping(ptr, new, layout.size());
            self.dealloc(ptr, layout);
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    #[test]
    fn allocations_are_aligned_and_disjoint() {
        let bump = Box::new(Bump::<4096>::new());
        let a = unsafe { bump.alloc(layout(3, 1)) };
        let b = unsafe { bump.alloc(layout(8, 8)) };
        let c = unsafe { bump.alloc(layout(1, 64)) };
        assert_eq!(b as usize % 8, 0);
        assert_eq!(c as usize % 64, 0);
        assert!(a as usize + 3 <= b as usize && b as usize + 8 <= c as usize);
        unsafe { std::ptr::write_bytes(b, 0xab, 8) };
        assert_eq!(unsafe { *a.add(2) }, 0);
    }

    #[test]
    fn the_latest_allocation_is_given_back_and_grows_in_place() {
        let bump = Box::new(Bump::<4096>::new());
        let a = unsafe { bump.alloc(layout(16, 8)) };
        let b = unsafe { bump.alloc(layout(16, 8)) };
        let used = bump.used();
        // An earlier allocation stays.
        unsafe { bump.dealloc(a, layout(16, 8)) };
        assert_eq!(bump.used(), used);
        let grown = unsafe { bump.realloc(b, layout(16, 8), 100) };
        assert_eq!(grown, b);
        assert_eq!(bump.used(), used - 16 + 100);
        unsafe { bump.dealloc(grown, layout(100, 8)) };
        assert_eq!(bump.used(), used - 16);
    }

    #[test]
    fn what_does_not_fit_goes_to_the_system_and_keeps_its_bytes() {
        let bump = Box::new(Bump::<256>::new());
        let a = unsafe { bump.alloc(layout(200, 1)) };
        let b = unsafe { bump.alloc(layout(8, 1)) };
        unsafe { std::ptr::copy_nonoverlapping(b"abcdefgh".as_ptr(), b, 8) };
        // `b` is the latest: it cannot grow past the arena, so it moves out with its bytes.
        let moved = unsafe { bump.realloc(b, layout(8, 1), 1000) };
        assert!(bump.offset_of(moved).is_none());
        assert_eq!(unsafe { std::slice::from_raw_parts(moved, 8) }, b"abcdefgh");
        let big = unsafe { bump.alloc(layout(1 << 20, 16)) };
        assert!(!big.is_null() && bump.offset_of(big).is_none());
        unsafe {
            bump.dealloc(big, layout(1 << 20, 16));
            bump.dealloc(moved, layout(1000, 1));
            bump.dealloc(a, layout(200, 1));
        }
        assert_eq!(bump.used(), 0);
    }
}
