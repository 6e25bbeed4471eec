//! The fast reading builds what serde builds, and leaves to serde whatever it is not sure of.

use super::*;
use crate::spec::unique_keys;
use crate::spec::values::value_of;

fn fixture() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/docker-config.json"
    ))
    .unwrap()
}

#[test]
fn valid_json_is_built_as_serde_builds_it() {
    let texts = [
        r#"{"z":1,"a":[1.50,-0,1e400,2E-3,18446744073709551616,-9223372036854775809,-7,0,true,null,"s\n"],"m":{"A":{},"b":[]}}"#,
        r#" [ "\u00e9\ud83d\ude00 é" , "tab\there\"q\"\\\/\b\f\r" , "\u0000" , [ ] , { } ] "#,
        "\t\r\n{\"k\" :\n[ 1 ,{\"x\": false} ] }\n",
        "\"just a string\"",
        "-0.0e+0",
    ];
    let fixture = fixture();
    for bytes in texts.iter().map(|t| t.as_bytes()).chain([&fixture[..]]) {
        let ours = value_of(bytes).unwrap();
        let theirs = unique_keys::from_slice(bytes).unwrap();
        assert_eq!(ours, theirs, "{}", String::from_utf8_lossy(bytes));
        assert_eq!(ours.to_string(), theirs.to_string());
    }
}

#[test]
fn malformed_json_is_left_to_serde() {
    let texts: &[&[u8]] = &[
        b"",
        b"{",
        b"{\"a\":}",
        b"{\"a\":1,}",
        b"[1,]",
        b"[1 2]",
        b"{\"a\" 1}",
        b"{a:1}",
        b"01",
        b"1.",
        b"1e",
        b"-",
        b".5",
        b"+1",
        b"tru",
        b"nul",
        b"truex",
        b"\"tab\there\"",
        b"\"\\x\"",
        b"\"\\u12g4\"",
        b"\"unterminated",
        b"\"\xff\"",
        b"[1]]",
        b"{} {}",
        b"NaN",
        b"\xef\xbb\xbf{}",
        b"{\"a\":1}\x0c",
    ];
    for t in texts {
        assert_eq!(value_of(t), Err(Unsure), "{}", String::from_utf8_lossy(t));
        let skipped = Scanner::new(t).and_then(|mut s| {
            s.skip_value()?;
            s.end()
        });
        assert_eq!(skipped, Err(Unsure), "{}", String::from_utf8_lossy(t));
        assert!(unique_keys::from_slice(t).is_err());
    }
}

#[test]
fn what_serde_reads_its_own_way_is_left_to_it() {
    let deep = format!("{}{}", "[".repeat(120), "]".repeat(120));
    let many: Vec<String> = (0..33).map(|i| format!("\"k{i}\":{i}")).collect();
    let many = format!("{{{}}}", many.join(","));
    let texts = [
        r#"{"a":1,"a":2}"#,
        r#"{"env":1,"Env":2}"#,
        "{\"k\":1,\"\u{212a}\":2}",
        r#"{"$serde_json::private::Number":"1"}"#,
        r#""\ud800""#,
        r#""\udc00""#,
        r#""\ud800\u0041""#,
        deep.as_str(),
        many.as_str(),
    ];
    for t in texts {
        assert_eq!(value_of(t.as_bytes()), Err(Unsure), "{t}");
    }
}

#[test]
fn skipping_checks_what_serde_checks_and_no_more() {
    // serde's raw reading takes any four hex digits and any repeated key.
    for t in [
        r#"{"a":"\ud800","a":[{"b":{}},[]]}"#,
        r#"[[[{"x":[1,{"y":null}]}]],"]",-1.5e-7]"#,
    ] {
        let mut s = Scanner::new(t.as_bytes()).unwrap();
        assert_eq!(s.skip_value(), Ok(0..t.len()));
        assert!(serde_json::from_str::<&serde_json::value::RawValue>(t).is_ok());
    }
    let fixture = fixture();
    let mut s = Scanner::new(&fixture).unwrap();
    assert_eq!(s.skip_value(), Ok(0..fixture.trim_ascii_end().len()));
}
