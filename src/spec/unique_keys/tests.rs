//! What `unique_keys` refuses, what it lets through, and that it reads as serde_json does.

use super::*;

fn repeated(text: &str) -> Repeated {
    match from_slice(text.as_bytes()) {
        Err(Error::Repeated { repeated, .. }) => repeated,
        other => panic!("{text}: {other:?}"),
    }
}

#[test]
fn a_spec_without_repeats_reads_as_serde_json_reads_it() {
    let fixture = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/docker-config.json"
    ))
    .unwrap();
    let text =
        r#"{"z":1,"a":[1.50,-0,1e400,18446744073709551616,true,null,"s\n"],"m":{"A":{},"b":[]}}"#;
    for bytes in [fixture.as_slice(), text.as_bytes()] {
        let ours = from_slice(bytes).unwrap();
        let theirs: Value = serde_json::from_slice(bytes).unwrap();
        assert_eq!(ours, theirs);
        assert_eq!(ours.to_string(), theirs.to_string());
    }
    // Numbers keep their text (arbitrary_precision, as serde_json writes it), key order is kept.
    assert_eq!(
        from_slice(text.as_bytes()).unwrap().to_string(),
        r#"{"z":1,"a":[1.50,-0,1e+400,18446744073709551616,true,null,"s\n"],"m":{"A":{},"b":[]}}"#
    );
}

#[test]
fn a_repeat_is_named_with_where_it_is() {
    let r = repeated(r#"{"process":{},"root":{},"process":{}}"#);
    assert_eq!(r.to_string(), r#""process" appears twice at the top level"#);
    let r = repeated(r#"{"linux":{"devices":[{"path":"/a"},{"path":"/b","path":"/c"}]}}"#);
    assert_eq!(r.to_string(), r#""path" appears twice in linux.devices[1]"#);
    let r = repeated(r#"{"process":{"env":[],"Env":[]}}"#);
    assert_eq!(
        r.to_string(),
        r#""Env" and "env" are one key to runc (Go matches keys case-insensitively) in process"#
    );
    // The Kelvin sign folds to K in Go.
    let r = repeated("{\"kind\":1,\"\u{212a}ind\":2}");
    assert_eq!(r.earlier, "kind");
}

#[test]
fn a_repeat_in_a_large_object_is_found() {
    let keys: Vec<String> = (0..100).map(|i| format!("\"k{i}\":{i}")).collect();
    let object = |extra: &str| format!("{{{},{extra}}}", keys.join(","));
    assert!(from_slice(object("\"k100\":0").as_bytes()).is_ok());
    assert_eq!(repeated(&object("\"k7\":0")).earlier, "k7");
    let r = repeated(&object("\"K42\":0"));
    assert_eq!((r.key.as_str(), r.earlier.as_str()), ("K42", "k42"));
}

#[test]
fn go_maps_keep_their_case_but_not_their_repeats() {
    let ok = r#"{"annotations":{"a":"1","A":"2"},"linux":{"sysctl":{"x":"1","X":"2"}}}"#;
    assert!(from_slice(ok.as_bytes()).is_ok());
    let r = repeated(r#"{"annotations":{"a":"1","a":"2"}}"#);
    assert_eq!(r.to_string(), r#""a" appears twice in annotations"#);
    // A struct inside a map folds again.
    let r = repeated(r#"{"linux":{"netDevices":{"eth0":{"name":"a","Name":"b"}}}}"#);
    assert_eq!(r.at, "in linux.netDevices.eth0");
}

#[test]
fn bad_json_is_still_serde_json_s_error() {
    assert!(matches!(from_slice(b"{\"a\":"), Err(Error::Json(_))));
    assert!(matches!(from_slice(b"{} x"), Err(Error::Json(_))));
    let deep = "[".repeat(200) + &"]".repeat(200);
    assert!(matches!(from_slice(deep.as_bytes()), Err(Error::Json(_))));
}
