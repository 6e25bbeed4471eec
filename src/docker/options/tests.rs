//! The OPTIONS parser against systemd's reading of EnvironmentFile and `$OPTIONS`.

use super::*;

const AL2: &str = "# extra options\nOPTIONS=\"--default-ulimit nofile=32768:65536 --default-runtime nvidia\"\nDAEMON_MAXFILES=1048576\n";

fn words(text: &str) -> Vec<String> {
    Options::parse(text).words
}

#[test]
fn reads_both_flag_forms() {
    let o = Options::parse("OPTIONS='--add-runtime=a=/x --add-runtime b=/y --debug'\n");
    assert_eq!(o.values("add-runtime"), ["a=/x", "b=/y"]);
    assert!(o.values("default-runtime").is_empty());
}

#[test]
fn reads_the_file_as_systemd_does() {
    assert_eq!(words("OPTIONS=\"--a \\\n  --b\"\n"), ["--a", "--b"]);
    assert_eq!(words("OPTIONS=--a \\\n--b   \n"), ["--a", "--b"]);
    assert_eq!(
        words("OPTIONS=--a\n# OPTIONS=--c\n; x\nOPTIONS=--b\n"),
        ["--b"]
    );
    assert_eq!(
        words("OPTIONS='--label \"team=a b\" --x'"),
        ["--label", "team=a b", "--x"]
    );
    assert_eq!(words("  OPTIONS = \"a\"'b c'\n"), ["ab", "c"]);
    assert_eq!(
        words("# a comment \\\nOPTIONS=--continued-comment\n"),
        Vec::<String>::new()
    );
    assert_eq!(words("OTHER=1\n"), Vec::<String>::new());
}

#[test]
fn refuses_what_it_cannot_read_faithfully() {
    for text in [
        "OPTIONS=\"--a\" # note\n",
        "OPTIONS=--a # note\n",
        "OPTIONS=\"--a \\$x\"\n",
        "OPTIONS='--a\\b'\n",
    ] {
        assert!(Options::parse(text).refusal().is_some(), "{text}");
    }
    assert!(Options::parse("OPTIONS=--a\nX=\\y\n").refusal().is_none());
}

#[test]
fn rewrites_only_the_options_assignment() {
    let mut o = Options::parse(AL2);
    assert_eq!(o.values("default-runtime"), ["nvidia"]);
    o.remove("default-runtime", |_| true);
    o.add("default-runtime", "gpu-share");
    assert_eq!(
        o.render().unwrap(),
        "# extra options\nOPTIONS=\"--default-ulimit nofile=32768:65536 --default-runtime gpu-share\"\nDAEMON_MAXFILES=1048576\n"
    );
    let text = "OPTIONS=--x\nOPTIONS=\"--a \\\n --b\"  \nZ=1";
    let mut o = Options::parse(text);
    o.add("c", "d e");
    let out = o.render().unwrap();
    assert_eq!(out, "OPTIONS=--x\nOPTIONS=\"--a --b --c 'd e'\"\nZ=1");
    assert_eq!(words(&out), ["--a", "--b", "--c", "d e"]);
}

#[test]
fn a_file_without_options_gets_a_line() {
    let mut o = Options::parse("DAEMON_MAXFILES=1");
    o.add("default-runtime", "gpu-share");
    assert_eq!(
        o.render().unwrap(),
        "DAEMON_MAXFILES=1\nOPTIONS=\"--default-runtime gpu-share\"\n"
    );
}

#[test]
fn a_quoted_hash_is_a_word_not_a_comment() {
    let o = Options::parse("OPTIONS=\"--label '#team=a'\"\n");
    assert_eq!(o.words, ["--label", "#team=a"]);
    assert!(o.refusal().is_none(), "{:?}", o.refusal());
}
