//! JSON text to a `serde_json::Value`, refusing an object whose keys runc would read differently.
//!
//! serde_json keeps the last of two equal keys. runc (Go's encoding/json, decoding into structs)
//! decodes a repeated key into the same field again, merging objects, and it matches a struct's
//! keys case-insensitively, so `"Process"` is more of `"process"`. Acting on such a spec would edit
//! one thing while runc, and the NVIDIA hook, run another. Rather than mimic Go's merge, an object
//! holding the same key twice, or two keys Go folds to one, is refused, naming the key and where
//! it is. Objects Go decodes as maps (`annotations`, `linux.sysctl`, ...) keep their case: there
//! only an exact repeat is refused.
//!
//! One pass, keys checked as the value is built. It knows JSON and Go's reading of it, not GPUs.

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// serde_json (with `arbitrary_precision`) hands a number to a visitor as a one-entry map under
/// this key; its own `Value` reads it the same way. Pinned by the tests below.
pub(super) const NUMBER_TOKEN: &str = "$serde_json::private::Number";

/// Objects of the OCI spec that Go decodes as maps, where keys are case-sensitive.
const GO_MAPS: &[&[&str]] = &[
    &["annotations"],
    &["linux", "sysctl"],
    &["linux", "resources", "unified"],
    &["linux", "resources", "rdma"],
    &["linux", "netDevices"],
];

/// Two keys of one object that runc reads as one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repeated {
    /// The later key, as written.
    pub key: String,
    /// The earlier one, as written: `key` itself, or a spelling Go folds to the same.
    pub earlier: String,
    /// Where the object is: "at the top level", "in process", "in linux.devices[2]".
    pub at: String,
}

impl fmt::Display for Repeated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Repeated { key, earlier, at } = self;
        if key == earlier {
            write!(f, "{key:?} appears twice {at}")
        } else {
            write!(
                f,
                "{key:?} and {earlier:?} are one key to runc (Go matches keys case-insensitively) {at}"
            )
        }
    }
}

#[derive(Debug)]
pub enum Error {
    Json(serde_json::Error),
    Repeated {
        repeated: Repeated,
        line: usize,
        column: usize,
    },
}

/// Parses `bytes` as one JSON value, refusing repeated keys.
pub fn from_slice(bytes: &[u8]) -> Result<Value, Error> {
    from_slice_at(bytes, &[])
}

/// Parses `bytes`, the value found under the keys `path` of a document, as [`from_slice`]
/// does: `path` says which objects are Go's maps and names the place in messages. Line and
/// column are counted from the start of `bytes`.
pub fn from_slice_at(bytes: &[u8], path: &[&str]) -> Result<Value, Error> {
    fn nest(at: &At<'_>, rest: &[&str], bytes: &[u8]) -> Result<Value, Error> {
        match rest.split_first() {
            None => parse_at(bytes, at),
            Some((key, rest)) => nest(&At::Key(at, key), rest, bytes),
        }
    }
    nest(&At::Top, path, bytes)
}

fn parse_at(bytes: &[u8], at: &At<'_>) -> Result<Value, Error> {
    let found = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = ValueSeed { at, found: &found }
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v));
    parsed.map_err(|e| failed(e, found.into_inner()))
}

/// The repeated key the visitor found where the parse stopped at `e`, else serde_json's error.
pub(super) fn failed(e: serde_json::Error, repeated: Option<Repeated>) -> Error {
    let (line, column) = (e.line(), e.column());
    repeated.map_or(Error::Json(e), |repeated| Error::Repeated {
        repeated,
        line,
        column,
    })
}

/// Where a value sits, from the top: for messages, and to tell Go's maps from its structs.
enum At<'a> {
    Top,
    Key(&'a At<'a>, &'a str),
    Index(&'a At<'a>, usize),
}

impl At<'_> {
    /// The keys down to here, or `None` below an array.
    fn keys(&self) -> Option<Vec<&str>> {
        match self {
            At::Top => Some(Vec::new()),
            At::Key(up, key) => up.keys().map(|mut keys| {
                keys.push(key);
                keys
            }),
            At::Index(..) => None,
        }
    }

    fn is_go_map(&self) -> bool {
        let At::Key(_, last) = self else {
            return false;
        };
        GO_MAPS.iter().any(|m| m.last() == Some(last))
            && self.keys().is_some_and(|k| GO_MAPS.contains(&k.as_slice()))
    }

    fn render(&self, out: &mut String) {
        match self {
            At::Top => {}
            At::Key(up, key) => {
                up.render(out);
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            At::Index(up, i) => {
                up.render(out);
                out.push_str(&format!("[{i}]"));
            }
        }
    }

    fn describe(&self) -> String {
        let mut path = String::new();
        self.render(&mut path);
        if path.is_empty() {
            "at the top level".to_owned()
        } else {
            format!("in {path}")
        }
    }
}

/// Objects up to this many keys are checked by comparing the new key with each earlier one;
/// larger ones keep a set of folded keys, so a huge object still costs linear time.
const SCAN_KEYS: usize = 32;

/// One character as Go's encoding/json compares struct fields: ASCII letters upper-cased, others
/// through lower then upper case (so the Kelvin sign is a `K`).
fn go_fold_char(c: char) -> char {
    fn single(mut it: impl Iterator<Item = char>) -> Option<char> {
        let c = it.next()?;
        it.next().is_none().then_some(c)
    }
    if c.is_ascii() {
        c.to_ascii_uppercase()
    } else {
        let lower = single(c.to_lowercase()).unwrap_or(c);
        single(lower.to_uppercase()).unwrap_or(lower)
    }
}

fn go_fold(key: &str) -> String {
    key.chars().map(go_fold_char).collect()
}

/// Whether Go takes `a` and `b` for the same struct field; without allocating.
pub(super) fn go_fold_eq(a: &str, b: &str) -> bool {
    if a.len() == b.len() && a.eq_ignore_ascii_case(b) {
        return true;
    }
    if a.is_ascii() && b.is_ascii() {
        return false;
    }
    a.chars().map(go_fold_char).eq(b.chars().map(go_fold_char))
}

/// An object's first key, or serde_json's marker for a number, told apart without allocating.
enum FirstKey {
    Number,
    Key(String),
}

impl<'de> DeserializeSeed<'de> for FirstKey {
    type Value = FirstKey;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<FirstKey, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for FirstKey {
    type Value = FirstKey;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, key: &str) -> Result<FirstKey, E> {
        Ok(if key == NUMBER_TOKEN {
            FirstKey::Number
        } else {
            FirstKey::Key(key.to_owned())
        })
    }
}

/// A number's text, as serde_json hands it over under [`NUMBER_TOKEN`].
struct NumberText;

impl<'de> DeserializeSeed<'de> for NumberText {
    type Value = Number;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Number, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for NumberText {
    type Value = Number;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number")
    }

    fn visit_str<E: de::Error>(self, digits: &str) -> Result<Number, E> {
        digits.parse().map_err(de::Error::custom)
    }
}

struct ValueSeed<'a, 'f> {
    at: &'a At<'a>,
    found: &'f RefCell<Option<Repeated>>,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_, '_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_, '_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        loop {
            let at = At::Index(self.at, items.len());
            let seed = ValueSeed {
                at: &at,
                found: self.found,
            };
            match seq.next_element_seed(seed)? {
                Some(item) => items.push(item),
                None => return Ok(Value::Array(items)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        let mut key = match map.next_key_seed(FirstKey::Key(String::new()))? {
            None => return Ok(Value::Object(object)),
            Some(FirstKey::Number) => return map.next_value_seed(NumberText).map(Value::Number),
            Some(FirstKey::Key(key)) => key,
        };
        // Go's structs fold case; its maps do not.
        let go_map = self.at.is_go_map();
        let mut folds = None;
        loop {
            if let Some(earlier) = earlier_spelling(&object, go_map, &mut folds, &key) {
                *self.found.borrow_mut() = Some(Repeated {
                    key,
                    earlier,
                    at: self.at.describe(),
                });
                return Err(de::Error::custom("a key runc would read differently"));
            }
            let at = At::Key(self.at, &key);
            let value = map.next_value_seed(ValueSeed {
                at: &at,
                found: self.found,
            })?;
            object.insert(key, value);
            match map.next_key::<String>()? {
                Some(next) => key = next,
                None => return Ok(Value::Object(object)),
            }
        }
    }
}

/// Where a Go struct (the top level, `process`, `linux`) read as `(key, raw value)` pairs
/// already has a key runc takes for `key`: the same check [`from_slice`] makes, for objects
/// whose values are kept as text. `folds` as in [`earlier_spelling`].
pub(super) fn repeated_field<T>(
    pairs: &[(String, T)],
    at: &[&str],
    folds: &mut Option<HashSet<String>>,
    key: &str,
) -> Option<Repeated> {
    let earlier = if pairs.len() < SCAN_KEYS {
        pairs.iter().map(|(k, _)| k).find(|k| go_fold_eq(k, key))
    } else {
        let folds = folds.get_or_insert_with(|| pairs.iter().map(|(k, _)| go_fold(k)).collect());
        if folds.insert(go_fold(key)) {
            None
        } else {
            pairs.iter().map(|(k, _)| k).find(|k| go_fold_eq(k, key))
        }
    }?;
    Some(Repeated {
        key: key.to_owned(),
        earlier: earlier.clone(),
        at: if at.is_empty() {
            "at the top level".to_owned()
        } else {
            format!("in {}", at.join("."))
        },
    })
}

/// The key already in `object` that `key` repeats, as it was written. `folds` is the set of
/// folded keys, kept once the object is too large to scan.
fn earlier_spelling(
    object: &Map<String, Value>,
    go_map: bool,
    folds: &mut Option<HashSet<String>>,
    key: &str,
) -> Option<String> {
    if go_map {
        return object.contains_key(key).then(|| key.to_owned());
    }
    if object.len() < SCAN_KEYS {
        return object.keys().find(|k| go_fold_eq(k, key)).cloned();
    }
    let folds = folds.get_or_insert_with(|| object.keys().map(|k| go_fold(k)).collect());
    if folds.insert(go_fold(key)) {
        return None;
    }
    object.keys().find(|k| go_fold_eq(k, key)).cloned()
}

#[cfg(test)]
mod tests;
