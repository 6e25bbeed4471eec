//! The plain reader against `toml`: what it reads, it reads as `toml` does; the rest it leaves.

use proptest::prelude::*;

use super::*;

/// The runtime's sections of `text` as `toml` reads them, or its error.
fn by_toml(text: &str) -> Result<String, String> {
    crate::config::runtime_sections_by_toml(text).map(|s| format!("{s:?}"))
}

fn by_plain(text: &str) -> Option<String> {
    read(text).map(|s| format!("{s:?}"))
}

/// Read by the plain reader, and the same as `toml`'s.
fn plain_and_same(text: &str) {
    let plain = by_plain(text).unwrap_or_else(|| panic!("not read as plain:\n{text}"));
    assert_eq!(Ok(plain), by_toml(text), "{text}");
}

#[test]
fn the_configs_operators_write_are_read_without_toml() {
    // The AMI's (packer/config.toml.pkrtpl), the tests', and every runtime key at once.
    plain_and_same(
        "# baked\n\n[sharing]\ndefault = \"all\"\nplacement = \"spread\"\nmax_per_gpu = 4\n",
    );
    plain_and_same("[devices]\nroot = \"/tmp/x\"\n[log]\npath = \"/tmp/x.log\"\nlevel = \"debug\"\n[state]\ndir = \"/tmp/s\"\n[hook]\npath = \"/tmp/h\"\n");
    plain_and_same(concat!(
        "[runtime]\npath = '/usr/bin/runc'\n",
        "[devices]\r\nroot = \"/\" # the host\r\ninjection = \"cdi\"\r\n",
        "  [sharing]  # indented\n\tdefault = \"none\"\ncontainer_requests = \"deny\"\nreserved = \"task\"\n",
        "[isolation]\nmode = \"mps\"\ncontrol = \"/usr/bin/nvidia-cuda-mps-control\"\ndir = \"/run/m\"\n",
        "memory = \"4GiB\"\nmax_memory = 17179869184\nreserved_memory = \"512MiB\"\n",
        "compute_percent = 50\nmax_compute_percent = 100\nanswer_timeout_ms = 0\n",
        "[metrics]\ndiscover = false\ninterval_seconds = 10\nnamespace = \"X\"\n[nvml]\nlibrary = \"x\"\n",
        "[health]\nwhatever = true",
    ));
    plain_and_same("");
}

#[test]
fn anything_past_the_subset_is_left_to_toml() {
    for text in [
        "[devices]\nroot = \"/a\\tb\"\n",           // an escape
        "[devices]\nroot = \"\"\"/a\"\"\"\n",       // a multi-line string
        "[health]\ncritical_xids = [79]\n",         // an array
        "[sharing]\nplacement = { a = 1 }\n",       // an inline table
        "devices.root = \"/\"\n",                   // a dotted key
        "root = \"/\"\n",                           // a key outside every section
        "[devices]\nroot = \"/\"\nroot = \"/x\"\n", // a key twice
        "[log]\n[log]\n",                           // a section twice
        "[metrics.x]\n",                            // a sub-table
        "[ devices ]\n",                            // spaces in a header
        "[devices]\nrooot = \"/\"\n",               // an unknown key
        "[device]\n",                               // an unknown section
        "[sharing]\nmax_per_gpu = +4\n",            // a sign
        "[sharing]\nmax_per_gpu = 1_000\n",         // an underscore
        "[sharing]\nmax_per_gpu = 04\n",            // a leading zero
        "[sharing]\nmax_per_gpu = 4294967296\n",    // out of range
        "[sharing]\nmax_per_gpu = \"4\"\n",         // a string for a number
        "[sharing]\nplacement = \"Spread\"\n",      // not one of its values
        "[metrics]\nx = 1.5\n",                     // a float
        "[metrics]\nx = 1979-05-27\n",              // a date
        "[devices]\rroot = \"/\"\n",                // a lone carriage return
        "[devices]\nroot = \"/\u{1}\"\n",           // a control character
        "[devices]\nroot = \"/\" x\n",              // text after a value
        "[isolation]\nmemory = \"4 gigs\"\n",       // a size ByteSize refuses
        // Past i64 (TOML's integers), which toml reads into a u64 field; the subset does not.
        "[isolation]\nanswer_timeout_ms = 9223372036854775808\n",
    ] {
        assert_eq!(by_plain(text), None, "{text:?}");
    }
    // More entries than a config has: toml's, so the duplicate check never grows long.
    let many: String = (0..MAX_ENTRIES).map(|i| format!("k{i} = 1\n")).collect();
    assert!(by_plain(&format!("[health]\n{many}")).is_none());
    assert!(by_plain(&format!("[health]\n{}", &many[many.find("k1 ").unwrap()..])).is_some());
}

/// Every section a config may have: the runtime's, then `gpu-share`'s.
fn known_sections() -> Vec<&'static str> {
    RUNTIME.iter().chain(TOOL_SECTIONS).copied().collect()
}

/// A line of a config: a header, or a key of some section with a value, right or wrong, in
/// one of the forms TOML has (and some it has not).
fn line() -> impl Strategy<Value = String> {
    let mut headers = known_sections();
    headers.extend(["other", "devices.x"]);
    let header = prop::sample::select(headers).prop_map(|s| format!("[{s}]"));
    let key = prop::sample::select(vec![
        "path",
        "root",
        "injection",
        "default",
        "placement",
        "max_per_gpu",
        "container_requests",
        "reserved",
        "level",
        "dir",
        "mode",
        "control",
        "memory",
        "max_memory",
        "reserved_memory",
        "compute_percent",
        "max_compute_percent",
        "answer_timeout_ms",
        "interval_seconds",
        "x",
    ]);
    let value = prop_oneof![
        prop::sample::select(vec![
            "auto",
            "cdi",
            "legacy",
            "all",
            "none",
            "spread",
            "pack",
            "allow",
            "deny",
            "shared",
            "task",
            "exclusive",
            "off",
            "error",
            "warn",
            "info",
            "debug",
            "mps",
            "4GiB",
            "0",
            "/run/x",
            "rel",
            "",
            "a#b",
            "a'b",
            "é",
        ])
        .prop_flat_map(|s| prop::sample::select(vec![
            format!("\"{s}\""),
            format!("'{s}'"),
            format!("\"{s}\\n\""),
        ])),
        (0u64..1 << 40).prop_map(|n| n.to_string()),
        prop::sample::select(vec![
            "true", "false", "-1", "1.0", "[1]", "0x10", "007", "1_0"
        ])
        .prop_map(str::to_owned),
    ];
    let pair = (
        key,
        value,
        prop::sample::select(vec!["", " # c", "#c", " x"]),
    )
        .prop_map(|(k, v, tail)| format!("{k} = {v}{tail}"));
    prop_oneof![1 => header, 4 => pair, 1 => Just("# comment".to_owned())]
}

/// Each key, with values it takes and values it refuses, in the forms the subset has.
const KEYS: &[(&str, &str, &[&str])] = &[
    (
        "runtime",
        "path",
        &["\"/usr/bin/runc\"", "'/x'", "\"rel\"", "1"],
    ),
    ("devices", "root", &["\"/\"", "'/host'", "\"\""]),
    (
        "devices",
        "injection",
        &["\"auto\"", "'cdi'", "\"legacy\"", "\"CDI\""],
    ),
    ("sharing", "default", &["\"all\"", "\"none\"", "\"some\""]),
    (
        "sharing",
        "placement",
        &["\"all\"", "'spread'", "\"pack\"", "3"],
    ),
    (
        "sharing",
        "max_per_gpu",
        &["0", "4", "4294967295", "4294967296", "\"4\""],
    ),
    (
        "sharing",
        "container_requests",
        &["\"allow\"", "'deny'", "true"],
    ),
    (
        "sharing",
        "reserved",
        &["\"shared\"", "\"task\"", "'exclusive'", "\"own\""],
    ),
    ("hook", "path", &["\"/usr/bin/h\"", "'h'"]),
    ("log", "path", &["\"/var/log/x\""]),
    (
        "log",
        "level",
        &[
            "\"off\"",
            "\"error\"",
            "'warn'",
            "\"info\"",
            "\"debug\"",
            "\"trace\"",
        ],
    ),
    ("state", "dir", &["\"/run/gpu-share\""]),
    ("isolation", "mode", &["\"none\"", "\"mps\"", "\"MPS\""]),
    ("isolation", "control", &["\"c\""]),
    ("isolation", "dir", &["\"/run/m\""]),
    (
        "isolation",
        "memory",
        &["\"4GiB\"", "1073741824", "\"4 gigs\"", "true"],
    ),
    ("isolation", "max_memory", &["\"512MiB\"", "0"]),
    ("isolation", "reserved_memory", &["'1GiB'", "5"]),
    (
        "isolation",
        "compute_percent",
        &["0", "50", "100", "255", "256"],
    ),
    ("isolation", "max_compute_percent", &["100", "\"100\""]),
    (
        "isolation",
        "answer_timeout_ms",
        &["0", "2000", "9223372036854775807"],
    ),
    ("metrics", "interval_seconds", &["10", "\"x\"", "true"]),
    ("nvml", "library", &["\"libnvidia-ml.so.1\""]),
    ("health", "anything", &["1", "'x'", "false"]),
];

/// A config of known sections, each once, with some of their keys, each once.
fn catalogue_config() -> impl Strategy<Value = String> {
    let sections = known_sections();
    let all = sections.len();
    prop::sample::subsequence(sections, 0..=all)
        .prop_flat_map(|chosen| {
            let per_section: Vec<_> = chosen
                .into_iter()
                .map(|section| {
                    let keys: Vec<_> = KEYS.iter().filter(|k| k.0 == section).collect();
                    let n = keys.len();
                    (
                        Just(section),
                        prop::sample::subsequence(keys, 0..=n),
                        any::<u64>(),
                    )
                })
                .collect();
            (per_section, prop::sample::select(vec!["", " # note", "\t"]))
        })
        .prop_map(|(sections, tail)| {
            let mut text = String::new();
            for (section, keys, pick) in sections {
                text += &format!("[{section}]{tail}\n");
                for (i, (_, key, values)) in keys.into_iter().enumerate() {
                    let value = values[(pick as usize + i) % values.len()];
                    text += &format!("{key} = {value}{tail}\n");
                }
            }
            text
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn what_the_plain_reader_reads_toml_reads_the_same(
        lines in prop::collection::vec(line(), 0..12),
        crlf in any::<bool>(),
    ) {
        let text = lines.join(if crlf { "\r\n" } else { "\n" });
        if let Some(plain) = by_plain(&text) {
            prop_assert_eq!(Ok(plain), by_toml(&text), "{}", text);
        }
    }

    #[test]
    fn configs_of_known_keys_read_plain_as_toml_reads_them(text in catalogue_config()) {
        match by_plain(&text) {
            Some(plain) => prop_assert_eq!(Ok(plain), by_toml(&text), "{}", text),
            // Only a value the key refuses (which toml refuses too) leaves the subset here.
            None => prop_assert!(by_toml(&text).is_err(), "toml reads what plain left:\n{}", text),
        }
    }
}
