//! `Value`s as compact JSON text, byte for byte as `serde_json::to_writer` writes them, without
//! going through serde's serializer: a create writes every value it built or added.
//!
//! serde_json (with `arbitrary_precision`) writes a number as its text, a string with `"`, `\`
//! and the control characters escaped (the short escapes where JSON has them, `\u00xx` in lower
//! case otherwise) and nothing else escaped, an object's keys in order. The tests hold the two
//! writers to the same bytes. It knows JSON text only: placeholders are `lazy`'s.

use serde_json::Value;

/// What each byte becomes inside a string: 0 itself, `u` a `\u00xx` escape, else the letter
/// after a backslash.
static ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0a] = b'n';
    t[0x0c] = b'f';
    t[0x0d] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

/// Appends `v` to `out`.
pub fn value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => out.extend_from_slice(n.as_str().as_bytes()),
        Value::String(s) => string(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                value(out, item);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            out.push(b'{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                string(out, key);
                out.push(b':');
                value(out, item);
            }
            out.push(b'}');
        }
    }
}

/// Appends `s` as a JSON string.
pub fn string(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    if needs_escape(bytes) {
        escaped(out, bytes);
    } else {
        out.extend_from_slice(bytes);
    }
    out.push(b'"');
}

/// Whether any byte of `bytes` is one to escape: eight at a time with no early exit, since
/// nearly every string has none.
fn needs_escape(bytes: &[u8]) -> bool {
    let mut chunks = bytes.chunks_exact(8);
    let mut hits = 0;
    for chunk in &mut chunks {
        if let Ok(word) = <[u8; 8]>::try_from(chunk) {
            hits |= marks(u64::from_le_bytes(word));
        }
    }
    hits != 0
        || chunks
            .remainder()
            .iter()
            .any(|&b| ESCAPE[usize::from(b)] != 0)
}

/// A high bit in each byte of `x` that JSON escapes, and perhaps in bytes above the first
/// such one (a borrow runs upwards), never below it.
#[inline(always)]
fn marks(x: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below = |x: u64, n: u64| x.wrapping_sub(ONES * n) & !x & HIGH;
    below(x, 0x20)
        | below(x ^ (ONES * u64::from(b'"')), 1)
        | below(x ^ (ONES * u64::from(b'\\')), 1)
}

/// The rest of a string from its first byte to escape.
#[cold]
fn escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut run = 0;
    loop {
        let i = run + plain_len(&bytes[run..]);
        out.extend_from_slice(&bytes[run..i]);
        let Some(&b) = bytes.get(i) else { break };
        run = i + 1;
        let escape = ESCAPE[usize::from(b)];
        out.push(b'\\');
        out.push(escape);
        if escape == b'u' {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        }
    }
}

/// How many bytes lead `bytes` before one JSON escapes in a string (`"`, `\`, a control
/// character): eight at a time, since most strings have none.
#[inline(always)]
pub fn plain_len(bytes: &[u8]) -> usize {
    let mut i = 0;
    while let Some(chunk) = bytes.get(i..i + 8) {
        let Ok(word) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let hits = marks(u64::from_le_bytes(word));
        if hits != 0 {
            // The lowest mark is always a true one.
            return i + (hits.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(&b) = bytes.get(i) {
        if ESCAPE[usize::from(b)] != 0 {
            break;
        }
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ours(v: &Value) -> String {
        let mut out = Vec::new();
        value(&mut out, v);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn values_are_written_as_serde_json_writes_them() {
        let every_byte: String = (0u8..0x80).map(char::from).collect();
        let texts = [
            r#"{"z":1,"a":[1.50,-0,1e400,18446744073709551616,-3,true,false,null],"m":{"A":{},"b":[]}}"#,
            r#"["\u00e9\ud83d\ude00 é","tab\there","\"quoted\"","\/slash","\u0000\u001f\u007f"]"#,
        ];
        let fixture = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/docker-config.json"
        ))
        .unwrap();
        let mut values: Vec<Value> = texts
            .iter()
            .map(|t| serde_json::from_str(t).unwrap())
            .collect();
        values.push(serde_json::from_slice(&fixture).unwrap());
        values.push(Value::String(every_byte));
        values.push(serde_json::json!({"k\n\"": ["", "\u{2028}", "0123456789abcdef\"0123456\\"]}));
        for v in &values {
            assert_eq!(ours(v), serde_json::to_string(v).unwrap());
        }
    }

    #[test]
    fn the_plain_run_ends_at_the_first_byte_to_escape() {
        let fillers = [b'a', b' ', b'!', b'#', b']', 0x7f, 0x80, 0xff];
        for len in 0..20 {
            for filler in fillers {
                for stop in [b'"', b'\\', 0, 0x1f, b'\n'] {
                    let mut bytes = vec![filler; len];
                    bytes.push(stop);
                    bytes.extend_from_slice(&[stop, 0, b'z', b'"', 0x1f, b'\\', 1, 2]);
                    assert_eq!(plain_len(&bytes), len, "{filler:x} then {stop:x} at {len}");
                }
                assert_eq!(plain_len(&vec![filler; len]), len);
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn any_string_is_written_as_serde_json_writes_it(s in "(?s).{0,40}", pad in 0usize..9) {
            let s = format!("{}{s}", "x".repeat(pad));
            let mut out = Vec::new();
            string(&mut out, &s);
            proptest::prop_assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(&s).unwrap());
        }
    }
}
