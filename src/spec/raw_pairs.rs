//! One JSON object read as `(key, raw value text)` pairs: the keys checked as Go's structs read
//! them, the values validated as JSON but not built.
//!
//! This is how the spec's top level, `process` and `linux` are read where the fast reading
//! (`scan`) is unsure: serde then validates every subtree and words any refusal. It owns
//! nothing of which keys matter (that is `lazy`) and never builds a `Value`.

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::unique_keys::{failed, repeated_field, Error, Repeated};

/// The pairs of one object, in order.
pub type Pairs<'a> = Vec<(String, &'a RawValue)>;

/// Reads `bytes` (which must hold one JSON object) as pairs, refusing two keys runc takes for
/// one. `at` is where the object is, for messages. Line and column count from `bytes`' start.
pub fn from_slice<'a>(bytes: &'a [u8], at: &[&str]) -> Result<Pairs<'a>, Error> {
    let found = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = (&mut de)
        .deserialize_map(PairsVisitor { at, found: &found })
        .and_then(|v| de.end().map(|()| v));
    parsed.map_err(|e| failed(e, found.into_inner()))
}

struct PairsVisitor<'p, 'f> {
    at: &'p [&'p str],
    found: &'f RefCell<Option<Repeated>>,
}

impl<'de> Visitor<'de> for PairsVisitor<'_, '_> {
    type Value = Pairs<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Pairs<'de>, A::Error> {
        let mut pairs: Pairs<'de> = Vec::with_capacity(16);
        let mut folds: Option<HashSet<String>> = None;
        while let Some(key) = map.next_key::<String>()? {
            if let Some(repeated) = repeated_field(&pairs, self.at, &mut folds, &key) {
                *self.found.borrow_mut() = Some(repeated);
                return Err(de::Error::custom("a key runc would read differently"));
            }
            let value: &'de RawValue = map.next_value()?;
            pairs.push((key, value));
        }
        Ok(pairs)
    }
}
