//! One line of `gpu-share doctor`'s report: a status, the check's name and what it found.
//!
//! A leaf: every check module builds its lines from here, and it looks at nothing.

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub status: Status,
    pub name: &'static str,
    pub detail: String,
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self.status {
            Status::Ok => "OK  ",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        };
        write!(f, "{s} {:<16} {}", self.name, self.detail)
    }
}

pub(crate) fn check(status: Status, name: &'static str, detail: impl Into<String>) -> Check {
    Check {
        status,
        name,
        detail: detail.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_read_as_status_name_detail() {
        let c = check(Status::Warn, "nvml", "not loaded");
        assert_eq!(c.to_string(), "WARN nvml             not loaded");
    }
}
