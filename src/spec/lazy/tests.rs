use super::*;
use crate::spec::unique_keys::Repeated;

fn lazy(text: &str) -> (Value, Raw) {
    parse(text.as_bytes().to_vec()).unwrap()
}

fn written(v: &Value, raw: &Raw) -> String {
    String::from_utf8(to_vec(v, raw)).unwrap()
}

#[test]
fn untouched_subtrees_are_written_back_byte_for_byte() {
    let text = r#"{"ociVersion": "1.0.2", "root" : {"path":"rootfs" ,"readonly":true},
 "process":{"args":["sh", "-c"], "env":["A=1"], "rlimits":[{"type":"RLIMIT_NOFILE","hard":1e400}]},
 "linux":{"seccomp":{"defaultAction":"SCMP_ACT_ERRNO","n":0.1000,"s":"\u00e9"},"devices":[]}}"#;
    let (mut v, raw) = lazy(text);
    v["process"]["env"]
        .as_array_mut()
        .unwrap()
        .push("B=2".into());
    assert_eq!(
        written(&v, &raw),
        r#"{"ociVersion":"1.0.2","root":{"path":"rootfs" ,"readonly":true},"process":{"args":["sh", "-c"],"env":["A=1","B=2"],"rlimits":[{"type":"RLIMIT_NOFILE","hard":1e400}]},"linux":{"seccomp":{"defaultAction":"SCMP_ACT_ERRNO","n":0.1000,"s":"\u00e9"},"devices":[]}}"#
    );
}

#[test]
fn only_the_parsed_paths_are_built() {
    let (v, _) = lazy(
        r#"{"root":{"path":"r"},"mounts":[],"linux":{"sysctl":{},"cgroupsPath":"/ecs/x"},"process":{"cwd":"/"}}"#,
    );
    assert!(is_placeholder(&v["root"]));
    assert!(is_placeholder(&v["linux"]["sysctl"]));
    assert!(is_placeholder(&v["process"]["cwd"]));
    assert!(is_placeholder(&v["mounts"]));
    assert_eq!(v["linux"]["cgroupsPath"], "/ecs/x");
}

#[test]
fn expanding_builds_a_held_path_once_and_saves_it_as_edited() {
    let text = r#"{"mounts":[{"destination":"/proc"}],"linux":{"resources":{"a":1}},"hooks":null}"#;
    let (mut v, raw) = lazy(text);
    for path in [MOUNTS, LINUX_RESOURCES, HOOKS, &["linux", "absent"][..]] {
        expand(&mut v, &raw, path).unwrap();
        expand(&mut v, &raw, path).unwrap();
    }
    assert_eq!(v["mounts"][0]["destination"], "/proc");
    assert_eq!(v["hooks"], Value::Null);
    v["linux"]["resources"]["b"] = 2.into();
    assert_eq!(
        written(&v, &raw),
        r#"{"mounts":[{"destination":"/proc"}],"linux":{"resources":{"a":1,"b":2}},"hooks":null}"#
    );
    let (mut v, raw) = lazy(r#"{"mounts":[{"a":1,"a":2}]}"#);
    assert!(expand(&mut v, &raw, MOUNTS).is_err());
}

#[test]
fn a_repeated_key_in_a_raw_subtree_reaches_runc_as_it_was() {
    let text = r#"{"annotations":{"a":"1","a":"2"},"linux":{"sysctl":{"k":"1","k":"2"}}}"#;
    let (v, raw) = lazy(text);
    assert_eq!(written(&v, &raw), text);
}

/// The refusal, with the place the whole parse gives for it.
fn refusal(text: &str) -> (Repeated, usize, usize) {
    let expanded = |text: &str| {
        let (mut v, raw) = parse(text.as_bytes().to_vec())?;
        for path in PARSED {
            expand(&mut v, &raw, path)?;
        }
        Ok((v, raw))
    };
    let position = |r: Result<(Value, Raw), Error>| match r {
        Err(Error::Repeated {
            repeated,
            line,
            column,
        }) => (repeated, line, column),
        _ => panic!("{text} not refused"),
    };
    let lazy = position(expanded(text));
    assert_eq!(lazy, position(parse_full(text.as_bytes().to_vec())));
    lazy
}

#[test]
fn a_repeated_key_on_a_parsed_level_is_refused_where_it_is() {
    let (repeated, line, _) = refusal("{\"process\":{\"cwd\":\"/\",\n  \"env\":[],\"Env\":[]}}");
    assert_eq!((repeated.at.as_str(), line), ("in process", 2));
    let (repeated, ..) = refusal(
        "{\"root\":{},\n \"linux\":{\"resources\":{\"devices\":[{\"allow\":true,\"Allow\":false}]}}}",
    );
    assert_eq!(repeated.at, "in linux.resources.devices[0]");
    let (repeated, ..) = refusal(r#"{"linux":{"x":1},"process":{},"Linux":{}}"#);
    assert_eq!(repeated.at, "at the top level");
}

#[test]
fn an_input_string_is_never_taken_for_a_placeholder() {
    let real = placeholder(0);
    let forged = real
        .as_str()
        .unwrap()
        .replacen(PLACEHOLDER, &format!("{PLACEHOLDER}0"), 1);
    let text =
        serde_json::json!({"root": {"path": "r"}, "linux": {"cgroupsPath": forged}}).to_string();
    let (v, raw) = lazy(&text);
    assert!(!is_placeholder(&v["linux"]["cgroupsPath"]));
    assert_eq!(written(&v, &raw), text);
}

#[test]
fn documents_that_are_not_objects_are_parsed_whole() {
    let (v, raw) = lazy("[1, 2]");
    assert_eq!(written(&v, &raw), "[1,2]");
    let (v, _) = lazy(r#"{"process":null,"linux":[1]}"#);
    assert_eq!(v["process"], Value::Null);
    assert_eq!(v["linux"][0], 1);
}

#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "add it to spec::PARSED")]
fn an_edit_that_reaches_a_raw_subtree_fails_in_debug_builds() {
    let (mut v, _) = lazy(r#"{"root":{"path":"r"}}"#);
    let root = v.as_object_mut().unwrap();
    let _ = crate::spec::object_at(root, "root", "root");
}

fn fixture() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/docker-config.json"
    ))
    .unwrap()
}

/// Bytes that matter to a JSON reader, for mutating a valid spec.
const MUTATIONS: &[u8] = b"{}[]\",:\\/ \n\t0159-+.eEtfnuU\x01\x1f\x7f\xc3\xa9\xff";

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2048))]

    #[test]
    fn the_fast_reading_answers_only_as_serde_would(
        edits in proptest::collection::vec((0usize..2000, 0usize..MUTATIONS.len(), 0u8..3), 1..4),
    ) {
        let mut bytes = fixture();
        for (at, byte, how) in edits {
            let at = at % (bytes.len() + 1);
            match how {
                0 => bytes.insert(at, MUTATIONS[byte]),
                1 if at < bytes.len() => bytes[at] = MUTATIONS[byte],
                _ if at < bytes.len() => {
                    bytes.remove(at);
                }
                _ => {}
            }
        }
        let fast = parse(bytes.clone());
        let serde = parse_with_serde(bytes);
        match (fast, serde) {
            (Ok((v, raw)), Ok((reference, reference_raw))) => {
                proptest::prop_assert_eq!(&v, &reference);
                proptest::prop_assert_eq!(to_vec(&v, &raw), to_vec(&reference, &reference_raw));
                for span in &raw.spans {
                    let text = &raw.bytes[span.clone()];
                    if let Ok(built) = crate::spec::values::value_of(text) {
                        let theirs = unique_keys::from_slice(text);
                        proptest::prop_assert!(theirs.is_ok());
                        proptest::prop_assert_eq!(built, theirs.unwrap());
                    }
                }
            }
            (Err(e), Err(reference)) => {
                proptest::prop_assert_eq!(format!("{e:?}"), format!("{reference:?}"));
            }
            (fast, serde) => proptest::prop_assert!(false, "{:?} against {:?}", fast.err(), serde.err()),
        }
    }
}
