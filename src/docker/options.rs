//! dockerd's flags as a sysconfig file's `OPTIONS="..."` line carries them, as Amazon Linux's
//! docker unit passes them (`ExecStart=/usr/bin/dockerd $OPTIONS ...`): parse, query, edit,
//! render.
//!
//! Only the `OPTIONS` line is rewritten; every other line stays as it was. Flags are read the
//! way dockerd reads them: `--flag value` or `--flag=value`. It knows nothing of gpu-share or of
//! which flags matter (that is `sysconfig.rs`), and reads and writes no file.

/// The flags of one sysconfig file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Every line of the file, the `OPTIONS` line among them.
    lines: Vec<String>,
    /// Index of the `OPTIONS=` line, if there is one.
    at: Option<usize>,
    /// Its words.
    pub words: Vec<String>,
}

impl Options {
    pub fn parse(text: &str) -> Options {
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        let at = lines
            .iter()
            .position(|l| l.trim_start().starts_with("OPTIONS="));
        let words = at
            .map(|i| {
                let value = lines[i].trim_start()["OPTIONS=".len()..].trim();
                let unquoted = value
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                    .unwrap_or(value);
                unquoted.split_whitespace().map(str::to_owned).collect()
            })
            .unwrap_or_default();
        Options { lines, at, words }
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

    /// The file with the `OPTIONS` line rewritten (added at the end if there was none).
    pub fn render(&self) -> String {
        let line = format!("OPTIONS=\"{}\"", self.words.join(" "));
        let mut lines = self.lines.clone();
        match self.at {
            Some(i) => lines[i] = line,
            None => lines.push(line),
        }
        let mut text = lines.join("\n");
        text.push('\n');
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AL2: &str = "# extra options\nOPTIONS=\"--default-ulimit nofile=32768:65536 --default-runtime nvidia\"\nDAEMON_MAXFILES=1048576\n";

    #[test]
    fn reads_both_flag_forms() {
        let o = Options::parse("OPTIONS='--add-runtime=a=/x --add-runtime b=/y --debug'\n");
        assert_eq!(o.values("add-runtime"), ["a=/x", "b=/y"]);
        assert!(o.values("default-runtime").is_empty());
    }

    #[test]
    fn rewrites_only_the_options_line() {
        let mut o = Options::parse(AL2);
        assert_eq!(o.values("default-runtime"), ["nvidia"]);
        o.remove("default-runtime", |_| true);
        o.add("default-runtime", "gpu-share");
        assert_eq!(
            o.render(),
            "# extra options\nOPTIONS=\"--default-ulimit nofile=32768:65536 --default-runtime gpu-share\"\nDAEMON_MAXFILES=1048576\n"
        );
    }

    #[test]
    fn a_file_without_options_gets_a_line() {
        let mut o = Options::parse("DAEMON_MAXFILES=1\n");
        o.add("default-runtime", "gpu-share");
        assert_eq!(
            o.render(),
            "DAEMON_MAXFILES=1\nOPTIONS=\"--default-runtime gpu-share\"\n"
        );
    }
}
