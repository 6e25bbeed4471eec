//! The few text primitives the digest's file is made of: length-prefixed fields, and a
//! word-at-a-time checksum (also used as a cheap fingerprint to find repeated strings).
//!
//! A field is `<length>:<bytes>`, or `-` for none: a reader slices it out without looking at its
//! bytes (no escapes, no separator to search for), which is what lets a create read the digest
//! in about the time a `memcpy` of it takes. A leaf: it knows bytes and strings, not CDI.

use std::fmt::{Display, Write};

/// Appends `s` as a field.
pub fn field_into(out: &mut String, s: &str) {
    let _ = write!(out, "{}:", s.len());
    out.push_str(s);
}

/// Appends an optional field: `-` for `None`.
pub fn opt_into(out: &mut String, s: Option<&str>) {
    match s {
        Some(s) => field_into(out, s),
        None => out.push('-'),
    }
}

/// Appends an optional number as a field.
pub fn num_into(out: &mut String, n: Option<impl Display>) {
    match n {
        Some(n) => field_into(out, &n.to_string()),
        None => out.push('-'),
    }
}

/// Reads lines of fields: a tag byte, fields, a newline. Every method is `None` where the text
/// is not what the writers above wrote; nothing panics on any input.
pub struct Reader<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Reader<'a> {
    pub fn new(text: &'a str) -> Reader<'a> {
        Reader { text, at: 0 }
    }

    /// How far it has read.
    pub fn at(&self) -> usize {
        self.at
    }

    pub fn is_done(&self) -> bool {
        self.at >= self.text.len()
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    /// The next byte, consumed.
    pub fn byte(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.at += 1;
        Some(b)
    }

    /// Consumes the newline that ends a line; false where the line goes on.
    pub fn end_of_line(&mut self) -> bool {
        let end = self.peek() == Some(b'\n');
        self.at += usize::from(end);
        end
    }

    /// An optional field: `Some(None)` for `-`.
    pub fn opt(&mut self) -> Option<Option<&'a str>> {
        let bytes = self.text.as_bytes();
        let start = self.at;
        if bytes.get(start) == Some(&b'-') {
            self.at += 1;
            return Some(None);
        }
        // One to nine digits, then a colon: no digest holds a field of a gigabyte, and nine
        // digits cannot overflow.
        let (mut at, mut len) = (start, 0usize);
        loop {
            match *bytes.get(at)? {
                d @ b'0'..=b'9' if at - start < 9 => len = len * 10 + usize::from(d - b'0'),
                b':' if at > start => break,
                _ => return None,
            }
            at += 1;
        }
        let field = self.text.get(at + 1..at + 1 + len)?;
        self.at = at + 1 + len;
        Some(Some(field))
    }

    /// A field that must be there.
    pub fn field(&mut self) -> Option<&'a str> {
        self.opt()?
    }

    /// A field that must be there, owned.
    pub fn owned(&mut self) -> Option<String> {
        self.field().map(str::to_owned)
    }

    /// An optional field, owned.
    pub fn opt_owned(&mut self) -> Option<Option<String>> {
        Some(self.opt()?.map(str::to_owned))
    }

    /// An optional number.
    pub fn opt_num<T: std::str::FromStr>(&mut self) -> Option<Option<T>> {
        match self.opt()? {
            Some(s) => s.parse().ok().map(Some),
            None => Some(None),
        }
    }

    /// A number that must be there.
    pub fn num<T: std::str::FromStr>(&mut self) -> Option<T> {
        self.opt_num()?
    }

    /// Owned fields up to the end of the line.
    pub fn rest_owned(&mut self, out: &mut Vec<String>) -> Option<()> {
        while !self.end_of_line() {
            out.push(self.owned()?);
        }
        Some(())
    }
}

/// A 64-bit checksum of `bytes`, eight bytes a step: about one instruction a byte, so that a
/// create can tell a damaged digest before trusting any of it. Not cryptographic: the digest is
/// root's, in root's `state.dir`; this catches truncation and stray edits.
pub fn checksum(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = K ^ bytes.len() as u64;
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        h = (h ^ u64::from_le_bytes(word))
            .wrapping_mul(K)
            .rotate_left(29);
    }
    let mut tail = [0u8; 8];
    tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    h = (h ^ u64::from_le_bytes(tail)).wrapping_mul(K);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_read_back_as_written_whatever_they_hold() {
        let mut out = String::from("x");
        for s in ["", "plain", "a\tb:c", "line\nnext", "-", "12:ü"] {
            field_into(&mut out, s);
        }
        opt_into(&mut out, None);
        num_into(&mut out, Some(-5i64));
        out.push('\n');
        let mut r = Reader::new(&out);
        assert_eq!(r.byte(), Some(b'x'));
        let mut got = Vec::new();
        for _ in 0..6 {
            got.push(r.owned().unwrap());
        }
        assert_eq!(got, ["", "plain", "a\tb:c", "line\nnext", "-", "12:ü"]);
        assert_eq!(r.opt(), Some(None));
        assert_eq!(r.num::<i64>(), Some(-5));
        assert!(r.end_of_line() && r.is_done());
    }

    #[test]
    fn malformed_fields_are_none() {
        for bad in [
            "",
            ":",
            "5:abc",
            "x:abc",
            "1x:abc",
            "99999999999999999999999:a",
            "1:\u{e9}",
        ] {
            assert_eq!(Reader::new(bad).field(), None, "{bad:?}");
        }
        assert_eq!(Reader::new("-").field(), None);
        assert_eq!(Reader::new("1:x").num::<u32>(), None);
    }

    #[test]
    fn checksum_sees_one_changed_byte_and_a_truncation() {
        let text = b"k 1 2 3 4\t/etc/cdi\nm /a\t/b\t\tro\tnosuid\n".to_vec();
        let sum = checksum(&text);
        for i in 0..text.len() {
            let mut changed = text.clone();
            changed[i] ^= 1;
            assert_ne!(checksum(&changed), sum, "byte {i}");
            assert_ne!(checksum(&text[..i]), sum, "cut at {i}");
        }
    }
}
