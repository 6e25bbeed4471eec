//! Where an edit's new array entries go: built into the document as `Value`s, or kept as their
//! JSON text until the spec is written.
//!
//! An edit renders each entry it adds as compact JSON text (what serde_json would write for
//! it), once. A create's spec keeps that text as it is (`lazy::hold_text`): building the entries
//! as `Value`s and serializing them again was most of a create's edit and write. A plain
//! document (no file, no raw text) gets them parsed back into `Value`s, the same entries. A
//! test holds the two to the same bytes.
//!
//! It owns the two destinations only: what an entry says is `plan`'s.

use serde_json::Value;

use super::lazy::{self, Raw};

/// Where [`Appender::append`] puts entries.
pub enum Appender<'a> {
    /// Parsed into `Value`s: a document that is only a `Value`.
    Values,
    /// Kept as text in a spec's raw bytes, with a placeholder in the array.
    Text(&'a mut Raw),
}

/// The text an edit rendered was not JSON: a bug in the edit, never the input's fault.
#[derive(Debug, thiserror::Error)]
#[error("an entry gpu-share rendered for config.json is not JSON ({0}); please report this")]
pub struct NotJson(serde_json::Error);

impl Appender<'_> {
    /// Appends to `array` the entries in `text`: JSON values joined by commas, each written as
    /// serde_json writes it compactly. An empty `text` appends nothing.
    pub fn append(&mut self, array: &mut Vec<Value>, text: &[u8]) -> Result<(), NotJson> {
        if text.is_empty() {
            return Ok(());
        }
        match self {
            Appender::Values => array.extend(parse_entries(text)?),
            Appender::Text(raw) => array.push(lazy::hold_text(raw, text)),
        }
        Ok(())
    }

    /// Makes room for about `len` bytes of entries about to be appended, in one reservation:
    /// growing the text as it comes would copy it, and in the runtime's bump arena leave each
    /// old copy behind on pages of its own. Room never written is never touched.
    pub fn reserve(&mut self, len: usize) {
        if let Appender::Text(raw) = self {
            lazy::reserve_text(raw, len);
        }
    }

    /// Replaces the entries of `array` kept as text by their `Value`s, for an edit that reads
    /// entries an earlier edit of the same plan added. A no-op where there are none.
    pub fn read_back(&self, array: &mut Vec<Value>) -> Result<(), NotJson> {
        let Appender::Text(raw) = self else {
            return Ok(());
        };
        if !array.iter().any(|v| lazy::held_text(raw, v).is_some()) {
            return Ok(());
        }
        let mut built = Vec::with_capacity(array.len());
        for v in array.drain(..) {
            match lazy::held_text(raw, &v) {
                Some(text) => built.extend(parse_entries(text)?),
                None => built.push(v),
            }
        }
        *array = built;
        Ok(())
    }
}

fn parse_entries(text: &[u8]) -> Result<Vec<Value>, NotJson> {
    let mut list = Vec::with_capacity(text.len() + 2);
    list.push(b'[');
    list.extend_from_slice(text);
    list.push(b']');
    serde_json::from_slice(&list).map_err(NotJson)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_and_values_write_the_same_spec() {
        let input = br#"{"mounts":[{"destination":"/a"}],"x":{"y":[1]}}"#.to_vec();
        let text = br#"{"destination":"/b","options":["ro"]},{"destination":"/c\"q"}"#;

        let (mut kept, mut raw) = lazy::parse_full(input.clone()).unwrap();
        let mounts = kept["mounts"].as_array_mut().unwrap();
        Appender::Text(&mut raw).append(mounts, text).unwrap();
        assert_eq!(mounts.len(), 2, "one placeholder for both entries");
        let written = lazy::to_vec(&kept, &raw);

        let (mut built, _) = lazy::parse_full(input).unwrap();
        let mounts = built["mounts"].as_array_mut().unwrap();
        Appender::Values.append(mounts, text).unwrap();
        assert_eq!(mounts.len(), 3);
        assert_eq!(written, serde_json::to_vec(&built).unwrap());
    }

    #[test]
    fn read_back_gives_the_entries_as_values() {
        let (mut kept, mut raw) = lazy::parse_full(br#"{"m":[1]}"#.to_vec()).unwrap();
        let m = kept["m"].as_array_mut().unwrap();
        let mut to = Appender::Text(&mut raw);
        to.append(m, br#"{"a":2},3"#).unwrap();
        to.read_back(m).unwrap();
        assert_eq!(kept, json!({"m": [1, {"a": 2}, 3]}));
    }

    #[test]
    fn text_that_is_not_json_is_an_error_not_a_panic() {
        let mut v = Vec::new();
        assert!(Appender::Values.append(&mut v, b"{").is_err());
        assert!(v.is_empty());
    }
}
