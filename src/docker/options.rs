//! dockerd's flags as a sysconfig file's `OPTIONS` carries them to dockerd: parse, query, edit,
//! render.
//!
//! The AMIs' docker unit reads the file with `EnvironmentFile=-/etc/sysconfig/docker` and runs
//! `ExecStart=/usr/bin/dockerd $OPTIONS ...`, so the words dockerd gets are systemd's, in two
//! steps:
//! 1. systemd's EnvironmentFile rules (`env-file.c`): `#`/`;` lines are comments, `KEY=VALUE`,
//!    single or double quotes, a trailing backslash continues the line, text after a closing
//!    quote is part of the value (there are no trailing comments), and the last assignment wins;
//! 2. `$OPTIONS` split at whitespace, with quotes removed (`EXTRACT_UNQUOTE|EXTRACT_RELAX`), so
//!    `'--label "team=a b"'` is the two words `--label` and `team=a b`.
//!
//! No crate reads systemd's EnvironmentFile syntax, and a POSIX-shell splitter (`shlex`) takes
//! `#` for a comment and reads backslashes differently, so this is a small parser of its own.
//! What systemd versions read differently (backslash escapes other than a line
//! continuation), and a word starting with `#` (a comment systemd would pass to dockerd), are
//! not guessed at: [`Options::refusal`] says why, and nothing is written.
//!
//! Only the winning `OPTIONS` assignment is rewritten; every other byte stays as it was. Flags
//! are read the way dockerd reads them: `--flag value` or `--flag=value`. It knows nothing of
//! gpu-share (that is `sysconfig.rs`), and reads and writes no file.

use std::ops::Range;

const KEY: &str = "OPTIONS";

/// The flags of one sysconfig file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    text: String,
    /// The bytes of the winning `OPTIONS` assignment, key to end of value (not its newline).
    at: Option<Range<usize>>,
    /// Why the file cannot be read and rewritten faithfully, if it cannot.
    refusal: Option<String>,
    /// The words dockerd gets from `$OPTIONS`.
    pub words: Vec<String>,
}

/// One assignment as systemd reads it.
struct Assignment {
    key: String,
    value: String,
    span: Range<usize>,
    /// A backslash that escapes something other than a newline.
    escape: bool,
    /// Unquoted text right after a closing quote (`"..." # note`): systemd makes it part of the
    /// value, which is never what was meant.
    after_quote: bool,
}

/// systemd's EnvironmentFile parser, as a state machine over the text.
fn assignments(text: &str) -> Vec<Assignment> {
    #[derive(Clone, Copy, PartialEq)]
    enum S {
        PreKey,
        Key,
        PreValue,
        Value,
        ValueEscape,
        Single,
        Double,
        DoubleEscape,
        Comment,
        CommentEscape,
    }
    let ws = |c: char| c == ' ' || c == '\t';
    let nl = |c: char| c == '\n' || c == '\r';
    let mut out = Vec::new();
    let (mut s, mut key, mut value, mut start, mut escape) =
        (S::PreKey, String::new(), String::new(), 0, false);
    // Where trailing unquoted whitespace begins, to strip it as systemd does.
    let mut trailing: Option<usize> = None;
    let (mut after_quote, mut quoted) = (false, false);
    fn finish(
        out: &mut Vec<Assignment>,
        key: &mut String,
        value: &mut String,
        span: Range<usize>,
        (escape, after_quote): (bool, bool),
        trailing: Option<usize>,
    ) {
        if let Some(t) = trailing {
            value.truncate(t);
        }
        out.push(Assignment {
            key: std::mem::take(key).trim_end().to_owned(),
            value: std::mem::take(value),
            span,
            escape,
            after_quote,
        });
    }
    for (i, c) in text.char_indices() {
        match s {
            S::PreKey if c == '#' || c == ';' => s = S::Comment,
            S::PreKey if !ws(c) && !nl(c) => {
                (s, start, escape, after_quote, quoted) = (S::Key, i, false, false, false);
                key.push(c);
            }
            S::PreKey => {}
            S::Key if nl(c) => {
                key.clear();
                s = S::PreKey;
            }
            S::Key if c == '=' => (s, trailing) = (S::PreValue, None),
            S::Key => key.push(c),
            S::PreValue | S::Value if nl(c) => {
                let t = if s == S::Value { trailing } else { None };
                finish(
                    &mut out,
                    &mut key,
                    &mut value,
                    start..i,
                    (escape, after_quote),
                    t,
                );
                s = S::PreKey;
            }
            S::PreValue if c == '\'' => s = S::Single,
            S::PreValue if c == '"' => s = S::Double,
            S::PreValue | S::Value if c == '\\' => {
                (s, trailing) = (S::ValueEscape, None);
            }
            S::PreValue if ws(c) => {}
            S::PreValue | S::Value => {
                after_quote |= s == S::PreValue && quoted;
                s = S::Value;
                if !ws(c) {
                    trailing = None;
                } else if trailing.is_none() {
                    trailing = Some(value.len());
                }
                value.push(c);
            }
            S::ValueEscape => {
                s = S::Value;
                if !nl(c) {
                    escape = true;
                    value.push(c);
                }
            }
            S::Single if c == '\'' => (s, quoted) = (S::PreValue, true),
            S::Single => {
                // Some systemd versions read a backslash in single quotes as an escape, others do not.
                escape |= c == '\\';
                value.push(c);
            }
            S::Double if c == '"' => (s, quoted) = (S::PreValue, true),
            S::Double if c == '\\' => s = S::DoubleEscape,
            S::Double => value.push(c),
            S::DoubleEscape => {
                s = S::Double;
                if !nl(c) {
                    escape = true;
                    value.push(c);
                }
            }
            S::Comment if c == '\\' => s = S::CommentEscape,
            S::Comment if nl(c) => s = S::PreKey,
            S::Comment => {}
            S::CommentEscape => s = S::Comment,
        }
    }
    if !matches!(s, S::PreKey | S::Key | S::Comment | S::CommentEscape) {
        let t = if s == S::Value { trailing } else { None };
        finish(
            &mut out,
            &mut key,
            &mut value,
            start..text.len(),
            (escape, after_quote),
            t,
        );
    }
    out
}

/// `$OPTIONS` as systemd splits it: at whitespace, quotes removed, an unclosed quote running to
/// the end. (Values with backslashes are refused before, so none is handled here.) Also the
/// first word that starts with an unquoted `#`: a comment to a person, an argument to dockerd.
fn split(value: &str) -> (Vec<String>, Option<String>) {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quote: Option<char> = None;
    let mut hash: Option<usize> = None;
    for c in value.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => word.get_or_insert_with(String::new).push(c),
            None if c.is_whitespace() => words.extend(word.take()),
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                word.get_or_insert_with(String::new);
            }
            None => {
                if c == '#' && word.is_none() && hash.is_none() {
                    hash = Some(words.len());
                }
                word.get_or_insert_with(String::new).push(c);
            }
        }
    }
    words.extend(word);
    let hash = hash.and_then(|i| words.get(i).cloned());
    (words, hash)
}

/// One word as `$OPTIONS` must hold it to split back into that word.
fn quote_word(w: &str) -> Option<String> {
    let plain = !w.is_empty()
        && !w
            .chars()
            .any(|c| c.is_whitespace() || c == '\'' || c == '"');
    if plain {
        Some(w.to_owned())
    } else if !w.contains('\'') {
        Some(format!("'{w}'"))
    } else if !w.contains('"') {
        Some(format!("\"{w}\""))
    } else {
        None
    }
}

impl Options {
    pub fn parse(text: &str) -> Options {
        let last = assignments(text).into_iter().rev().find(|a| a.key == KEY);
        let (words, hash) = last.as_ref().map(|a| split(&a.value)).unwrap_or_default();
        let refusal = match &last {
            Some(a) if a.escape || a.value.contains('\\') => Some(format!(
                "its OPTIONS has a backslash escape, which systemd versions read differently: {}",
                &text[a.span.clone()]
            )),
            Some(a) if a.after_quote => Some(format!(
                "systemd passes the text after OPTIONS' closing quote to dockerd as part of it (there are no trailing comments): {}",
                &text[a.span.clone()]
            )),
            _ => hash.map(|w| {
                format!("systemd passes `{w}` in OPTIONS to dockerd as an argument: a comment must be on a line of its own")
            }),
        };
        Options {
            text: text.to_owned(),
            at: last.map(|a| a.span),
            refusal,
            words,
        }
    }

    /// Why this file cannot be read and rewritten faithfully; `None` when it can.
    pub fn refusal(&self) -> Option<&str> {
        self.refusal.as_deref()
    }

    /// The values given to `--name` (both forms), in order.
    pub fn values(&self, name: &str) -> Vec<String> {
        let long = format!("--{name}");
        let eq = format!("--{name}=");
        let mut out = Vec::new();
        let mut i = 0;
        while i < self.words.len() {
            let w = &self.words[i];
            if let Some(v) = w.strip_prefix(&eq) {
                out.push(v.to_owned());
            } else if *w == long {
                if let Some(v) = self.words.get(i + 1) {
                    out.push(v.clone());
                    i += 1;
                }
            }
            i += 1;
        }
        out
    }

    /// Removes every `--name` (both forms) whose value `drop` selects.
    pub fn remove(&mut self, name: &str, drop: impl Fn(&str) -> bool) {
        let long = format!("--{name}");
        let eq = format!("--{name}=");
        let mut kept = Vec::with_capacity(self.words.len());
        let mut i = 0;
        while i < self.words.len() {
            let w = &self.words[i];
            if let Some(v) = w.strip_prefix(&eq) {
                if !drop(v) {
                    kept.push(w.clone());
                }
            } else if *w == long && i + 1 < self.words.len() {
                if !drop(&self.words[i + 1]) {
                    kept.push(w.clone());
                    kept.push(self.words[i + 1].clone());
                }
                i += 1;
            } else {
                kept.push(w.clone());
            }
            i += 1;
        }
        self.words = kept;
    }

    /// Appends `--name value`.
    pub fn add(&mut self, name: &str, value: &str) {
        self.words.push(format!("--{name}"));
        self.words.push(value.to_owned());
    }

    /// The file with the winning `OPTIONS` assignment rewritten (added at the end if there was
    /// none); `None` where a word cannot be written so that systemd splits it back.
    pub fn render(&self) -> Option<String> {
        let value = self
            .words
            .iter()
            .map(|w| quote_word(w))
            .collect::<Option<Vec<_>>>()?
            .join(" ");
        // Double quotes unless the value holds one; no backslash is ever needed.
        let line = if !value.contains('"') {
            format!("{KEY}=\"{value}\"")
        } else if !value.contains('\'') {
            format!("{KEY}='{value}'")
        } else {
            return None;
        };
        let mut text = self.text.clone();
        match &self.at {
            Some(r) => text.replace_range(r.clone(), &line),
            None => {
                if !text.is_empty() && !text.ends_with('\n') {
                    text.push('\n');
                }
                text.push_str(&line);
                text.push('\n');
            }
        }
        Some(text)
    }
}

#[cfg(test)]
mod tests;
