//! A fast, strict reading of JSON text: syntax checked and skipped, or read token by token for
//! `values` to build, in one pass over the bytes with no serde machinery.
//!
//! It answers only where it is sure that serde_json, as `unique_keys` and `raw_pairs` drive it,
//! reads the text the same way: valid JSON (RFC 8259, UTF-8) with no object holding two keys Go
//! folds to one. Anything else is [`Unsure`], and the caller reads the text again with serde,
//! which builds the same result or gives the error with its line and column. So this module
//! never words an error, and a malformed or ambiguous spec is refused exactly as serde refuses
//! it. It also leaves to serde what is rare and fiddly: a built string with a lone surrogate
//! escape, a built value nested deeper than 100 or holding an object of 32 keys or more
//! (`values`' limits), a skipped one nested 128 deep, an object led by serde's private number
//! key, and any two keys that fold to one (serde tells Go's maps, where only an exact repeat
//! is refused, from its structs).
//!
//! It knows JSON only: which paths are built is `lazy`'s.

use std::ops::Range;

use super::compact::plain_len;

/// The text needs serde's reading: it may be malformed, repeat a key, or hold what this module
/// leaves to serde. Never shown: serde words the refusal.
#[derive(Debug, PartialEq, Eq)]
pub struct Unsure;

/// A cursor over one JSON text.
pub struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Scanner<'a> {
    /// A scanner at the start of `bytes`, which must be UTF-8 throughout (as serde requires).
    pub fn new(bytes: &'a [u8]) -> Result<Scanner<'a>, Unsure> {
        let text = std::str::from_utf8(bytes).map_err(|_| Unsure)?;
        Ok(Scanner {
            text,
            bytes,
            pos: 0,
        })
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    /// The next byte that is not whitespace, not consumed.
    pub fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.bytes.get(self.pos).copied()
    }

    /// Consumes the byte [`Scanner::peek`] gave.
    pub fn bump(&mut self) {
        self.pos += 1;
    }

    fn eat(&mut self, byte: u8) -> Result<(), Unsure> {
        if self.bytes.get(self.pos) == Some(&byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(Unsure)
        }
    }

    /// Nothing but whitespace is left.
    pub fn end(&mut self) -> Result<(), Unsure> {
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(Unsure),
        }
    }

    /// Opens the object that must come next.
    pub fn begin_object(&mut self) -> Result<(), Unsure> {
        self.ws();
        self.eat(b'{')
    }

    /// The next key of the object being read, leaving the scanner at its value; `None` once the
    /// object is closed. `first` is true until the first call for an object.
    pub fn next_key(&mut self, first: &mut bool) -> Result<Option<String>, Unsure> {
        self.ws();
        match self.bytes.get(self.pos) {
            Some(b'}') => {
                self.pos += 1;
                return Ok(None);
            }
            Some(b',') if !*first => {
                self.pos += 1;
                self.ws();
            }
            _ if *first => {}
            _ => return Err(Unsure),
        }
        *first = false;
        self.eat(b'"')?;
        let key = self.string()?;
        self.ws();
        self.eat(b':')?;
        self.ws();
        Ok(Some(key))
    }

    /// Checks the value that comes next and returns where its text is, unbuilt.
    pub fn skip_value(&mut self) -> Result<Range<usize>, Unsure> {
        self.ws();
        let start = self.pos;
        // One bit per open bracket, set for an object; serde's raw reading has no depth limit,
        // deeper text is left to it.
        let (mut stack, mut depth) = (0u128, 0u32);
        loop {
            // A value is expected here.
            self.ws();
            match self.bytes.get(self.pos) {
                Some(b'{') => {
                    self.pos += 1;
                    self.ws();
                    if self.bytes.get(self.pos) != Some(&b'}') {
                        depth += 1;
                        stack = stack << 1 | 1;
                        if depth >= 128 {
                            return Err(Unsure);
                        }
                        self.member_key()?;
                        continue;
                    }
                    self.pos += 1;
                }
                Some(b'[') => {
                    self.pos += 1;
                    self.ws();
                    if self.bytes.get(self.pos) != Some(&b']') {
                        depth += 1;
                        stack <<= 1;
                        if depth >= 128 {
                            return Err(Unsure);
                        }
                        continue;
                    }
                    self.pos += 1;
                }
                _ => self.scalar()?,
            }
            // A value ended: close what it ends, up to the next member.
            loop {
                if depth == 0 {
                    return Ok(start..self.pos);
                }
                self.ws();
                let in_object = stack & 1 == 1;
                match (self.bytes.get(self.pos), in_object) {
                    (Some(b','), true) => {
                        self.pos += 1;
                        self.ws();
                        self.member_key()?;
                        break;
                    }
                    (Some(b','), false) => {
                        self.pos += 1;
                        break;
                    }
                    (Some(b'}'), true) | (Some(b']'), false) => {
                        self.pos += 1;
                        depth -= 1;
                        stack >>= 1;
                    }
                    _ => return Err(Unsure),
                }
            }
        }
    }

    /// A skipped object's `"key":`, the scanner at its opening quote.
    fn member_key(&mut self) -> Result<(), Unsure> {
        self.eat(b'"')?;
        self.skip_string()?;
        self.ws();
        self.eat(b':')
    }

    /// A string, number or literal, checked and skipped.
    fn scalar(&mut self) -> Result<(), Unsure> {
        match self.bytes.get(self.pos) {
            Some(b'"') => {
                self.pos += 1;
                self.skip_string()
            }
            Some(b'-' | b'0'..=b'9') => self.number().map(drop),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            _ => Err(Unsure),
        }
    }

    pub fn literal(&mut self, word: &[u8]) -> Result<(), Unsure> {
        if self.bytes[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(Unsure)
        }
    }

    /// A number's text, checked against JSON's grammar; what follows it is the caller's.
    pub fn number(&mut self) -> Result<&'a str, Unsure> {
        let start = self.pos;
        if self.bytes.get(self.pos) == Some(&b'-') {
            self.pos += 1;
        }
        match self.bytes.get(self.pos) {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(Unsure),
        }
        if self.bytes.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            self.one_or_more_digits()?;
        }
        if let Some(b'e' | b'E') = self.bytes.get(self.pos) {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.bytes.get(self.pos) {
                self.pos += 1;
            }
            self.one_or_more_digits()?;
        }
        Ok(&self.text[start..self.pos])
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    fn one_or_more_digits(&mut self) -> Result<(), Unsure> {
        let start = self.pos;
        self.digits();
        if self.pos == start {
            return Err(Unsure);
        }
        Ok(())
    }

    /// Past the plain text of a string, to its next quote, backslash or control character.
    fn plain(&mut self) {
        self.pos += plain_len(&self.bytes[self.pos..]);
    }

    /// The rest of a string after its opening quote, checked (escapes as serde's raw reading
    /// checks them: any four hex digits after `\u`) and skipped.
    #[inline(always)]
    fn skip_string(&mut self) -> Result<(), Unsure> {
        loop {
            self.plain();
            match self.bytes.get(self.pos) {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match self.bytes.get(self.pos) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                            self.pos += 1
                        }
                        Some(b'u') => {
                            self.pos += 1;
                            self.hex4()?;
                        }
                        _ => return Err(Unsure),
                    }
                }
                _ => return Err(Unsure),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, Unsure> {
        let digits = self.bytes.get(self.pos..self.pos + 4).ok_or(Unsure)?;
        let mut n = 0;
        for &d in digits {
            n = n << 4 | char::from(d).to_digit(16).ok_or(Unsure)?;
        }
        self.pos += 4;
        Ok(n)
    }

    /// The rest of a string after its opening quote, unescaped.
    pub fn string(&mut self) -> Result<String, Unsure> {
        let start = self.pos;
        self.plain();
        if self.bytes.get(self.pos) == Some(&b'"') {
            self.pos += 1;
            return Ok(self.text[start..self.pos - 1].to_owned());
        }
        let mut out = self.text[start..self.pos].to_owned();
        loop {
            match self.bytes.get(self.pos) {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    self.unescape(&mut out)?;
                }
                Some(0x20..) => {
                    let run = self.pos;
                    self.plain();
                    out.push_str(&self.text[run..self.pos]);
                }
                _ => return Err(Unsure),
            }
        }
    }

    /// One escape after its backslash, onto `out`. A surrogate escape must be a high one
    /// followed by a low one, as serde requires of a string it builds.
    fn unescape(&mut self, out: &mut String) -> Result<(), Unsure> {
        let b = *self.bytes.get(self.pos).ok_or(Unsure)?;
        self.pos += 1;
        let c = match b {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let n = self.hex4()?;
                let n = if (0xD800..0xDC00).contains(&n) {
                    self.eat(b'\\')?;
                    self.eat(b'u')?;
                    let low = self.hex4()?;
                    if !(0xDC00..0xE000).contains(&low) {
                        return Err(Unsure);
                    }
                    0x10000 + ((n - 0xD800) << 10) + (low - 0xDC00)
                } else {
                    n
                };
                char::from_u32(n).ok_or(Unsure)?
            }
            _ => return Err(Unsure),
        };
        out.push(c);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
