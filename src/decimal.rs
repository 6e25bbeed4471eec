//! Integers as decimal text, without the formatting machinery: a create writes a few dozen
//! (device numbers, GPU indices, placeholder indices) and `format!` is cold code it need not
//! load. Owns that one conversion; it never allocates.

/// The longest a `u64` is in decimal.
pub const MAX_DIGITS: usize = 20;

/// `n` in decimal, written at the end of `buf`.
pub fn decimal(mut n: u64, buf: &mut [u8; MAX_DIGITS]) -> &str {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    std::str::from_utf8(&buf[at..]).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_std_writes_them() {
        let mut buf = [0; MAX_DIGITS];
        for n in [0, 7, 10, 195, u64::from(u32::MAX), u64::MAX] {
            assert_eq!(decimal(n, &mut buf), n.to_string());
        }
    }
}
