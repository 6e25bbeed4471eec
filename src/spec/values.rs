//! `Value`s built from a [`Scanner`]'s tokens, exactly as serde_json (through `unique_keys`)
//! builds them: numbers as serde normalises their text, key order kept, and an object with two
//! keys Go folds to one left to serde ([`Unsure`]), as is all `scan` leaves to it.
//!
//! It builds values only: which paths are built is `lazy`'s, the syntax is `scan`'s.

use serde_json::{Map, Number, Value};

use super::scan::{Scanner, Unsure};
use super::unique_keys::{go_fold_eq, NUMBER_TOKEN};

/// Nesting past this depth (serde's own limit for built values is 128) is left to serde.
const MAX_DEPTH: usize = 100;

/// Objects with this many keys are left to serde, whose check stays linear on huge objects.
const SCAN_KEYS: usize = 32;

/// The value that comes next, built.
pub fn value(s: &mut Scanner<'_>) -> Result<Value, Unsure> {
    value_at(s, 0)
}

fn value_at(s: &mut Scanner<'_>, depth: usize) -> Result<Value, Unsure> {
    Ok(match s.peek() {
        Some(b'"') => {
            s.bump();
            Value::String(s.string()?)
        }
        Some(b'{') if depth < MAX_DEPTH => {
            s.bump();
            let mut object = Map::with_capacity(7);
            let mut first = true;
            while let Some(key) = s.next_key(&mut first)? {
                if object.is_empty() && key == NUMBER_TOKEN {
                    return Err(Unsure);
                }
                check_new_key(&object, &key)?;
                let value = value_at(s, depth + 1)?;
                object.insert(key, value);
            }
            Value::Object(object)
        }
        Some(b'[') if depth < MAX_DEPTH => {
            s.bump();
            let mut items = Vec::new();
            if s.peek() == Some(b']') {
                s.bump();
                return Ok(Value::Array(items));
            }
            loop {
                items.push(value_at(s, depth + 1)?);
                match s.peek() {
                    Some(b',') => s.bump(),
                    Some(b']') => {
                        s.bump();
                        return Ok(Value::Array(items));
                    }
                    _ => return Err(Unsure),
                }
            }
        }
        Some(b'-' | b'0'..=b'9') => number_value(s.number()?)?,
        Some(b't') => s.literal(b"true").map(|()| Value::Bool(true))?,
        Some(b'f') => s.literal(b"false").map(|()| Value::Bool(false))?,
        Some(b'n') => s.literal(b"null").map(|()| Value::Null)?,
        _ => return Err(Unsure),
    })
}

/// A number as serde builds it: a `u64` where it fits, else its text as serde normalises it.
fn number_value(text: &str) -> Result<Value, Unsure> {
    if text.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(n) = text.parse::<u64>() {
            return Ok(Value::from(n));
        }
    }
    text.parse::<Number>()
        .map(Value::Number)
        .map_err(|_| Unsure)
}

/// Refuses `key` where the object has a key Go folds to the same, or is too large to scan.
pub fn check_new_key(object: &Map<String, Value>, key: &str) -> Result<(), Unsure> {
    if object.len() >= SCAN_KEYS {
        return Err(Unsure);
    }
    let ascii = key.is_ascii();
    for k in object.keys() {
        let same = if k.len() == key.len() && k.eq_ignore_ascii_case(key) {
            true
        } else if ascii && (k.len() <= key.len() || k.is_ascii()) {
            // Go folds char by char: a key with fewer bytes than an ASCII key has fewer chars,
            // and two ASCII keys fold by ASCII case alone.
            false
        } else {
            go_fold_eq(k, key)
        };
        if same {
            return Err(Unsure);
        }
    }
    Ok(())
}

/// `text` read whole as one value, built.
pub fn value_of(text: &[u8]) -> Result<Value, Unsure> {
    let mut s = Scanner::new(text)?;
    let value = value(&mut s)?;
    s.end()?;
    Ok(value)
}
