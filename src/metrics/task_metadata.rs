//! A task's ECS service, from the task metadata the ECS agent serves (version 4: the task's
//! `ServiceName`, else its `Group`, `service:NAME` for a service's task).
//!
//! ECS tells a service's name to nothing else on the host: not in the docker labels, not in the
//! agent's introspection API (`/v1/tasks`). The agent serves task metadata on the host at
//! `127.0.0.1:51679` (what `169.254.170.2` is routed to for the tasks) under the path in each
//! container's `ECS_CONTAINER_METADATA_URI_V4`, which dockerd gives us with the labels. The
//! answer is checked against the task's own ARN label, and kept per task: a task's service never
//! changes. A lookup that fails is retried a minute later, and never fails a sample.
//!
//! Owns the metadata request, its checks and the cache. Never asks dockerd (the metadata URI
//! comes in with the `ContainerInfo`) and never decides what is published.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::sample::ContainerInfo;

/// How long a task whose lookup failed waits before it is asked again.
const RETRY_AFTER: Duration = Duration::from_secs(60);
/// Tasks remembered at most; past it the cache starts over (tasks come and go for months).
const MAX_TASKS: usize = 4096;

/// The service of each task, looked up once.
pub struct TaskServices {
    /// The agent's task metadata server (`http://127.0.0.1:51679`); `None`: never asked.
    endpoint: Option<String>,
    agent: ureq::Agent,
    /// Task ARN → its service (`None`: a standalone task).
    known: RefCell<HashMap<String, Option<String>>>,
    failed: RefCell<HashMap<String, Instant>>,
}

impl TaskServices {
    /// Looks services up at `endpoint`; an empty one turns lookups off.
    pub fn new(endpoint: &str) -> TaskServices {
        let endpoint = endpoint.trim_end_matches('/');
        TaskServices {
            endpoint: (!endpoint.is_empty()).then(|| endpoint.to_owned()),
            agent: ureq::Agent::config_builder()
                .timeout_global(Some(Duration::from_secs(1)))
                .build()
                .into(),
            known: RefCell::new(HashMap::new()),
            failed: RefCell::new(HashMap::new()),
        }
    }

    /// Sets `info.service_name` when `info` is an ECS task's container whose service is known
    /// or can be looked up now.
    pub fn fill(&self, info: &mut ContainerInfo) {
        let Some(arn) = info.task_arn.as_deref() else {
            return;
        };
        if let Some(service) = self.known.borrow().get(arn) {
            info.service_name.clone_from(service);
            return;
        }
        let (Some(endpoint), Some(uri)) = (&self.endpoint, info.metadata_uri_v4.as_deref()) else {
            return;
        };
        if self
            .failed
            .borrow()
            .get(arn)
            .is_some_and(|at| at.elapsed() < RETRY_AFTER)
        {
            return;
        }
        let Some(url) = task_url(endpoint, uri) else {
            // Not a URI the agent makes: nothing to ask, now or later.
            self.remember(arn, None);
            return;
        };
        match self.ask(&url, arn) {
            Some(service) => {
                info.service_name.clone_from(&service);
                self.failed.borrow_mut().remove(arn);
                self.remember(arn, service);
            }
            None => {
                let mut failed = self.failed.borrow_mut();
                if failed.len() >= MAX_TASKS {
                    failed.clear();
                }
                failed.insert(arn.to_owned(), Instant::now());
            }
        }
    }

    fn remember(&self, arn: &str, service: Option<String>) {
        let mut known = self.known.borrow_mut();
        if known.len() >= MAX_TASKS {
            known.clear();
        }
        known.insert(arn.to_owned(), service);
    }

    /// The task's service (`Some(None)`: standalone), or `None` when the agent did not answer
    /// for this task.
    fn ask(&self, url: &str, arn: &str) -> Option<Option<String>> {
        let mut response = self.agent.get(url).call().ok()?;
        let task: serde_json::Value = response.body_mut().read_json().ok()?;
        service_of(&task, arn)
    }
}

/// The agent's URL for the task metadata of the container whose metadata URI is `uri`
/// (`http://169.254.170.2/v4/<id>`): the same path on the host's `endpoint`, plus `/task`.
pub fn task_url(endpoint: &str, uri: &str) -> Option<String> {
    let (_, path) = uri.strip_prefix("http://")?.split_once('/')?;
    let id = path.strip_prefix("v4/")?.trim_end_matches('/');
    // The agent's ids are UUID-like; anything else is not its URI (a container may set its
    // own environment), and must not steer the request elsewhere on the agent.
    let plain = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    plain.then(|| format!("{endpoint}/v4/{id}/task"))
}

/// The service in a v4 task response, if the response is for the task `arn`: `ServiceName`,
/// else a `Group` of `service:NAME`; `Some(None)` for a task of no service.
pub fn service_of(task: &serde_json::Value, arn: &str) -> Option<Option<String>> {
    // A container can claim another task's metadata URI: the answer must be about its task.
    if task.get("TaskARN")?.as_str()? != arn {
        return None;
    }
    let named = task
        .get("ServiceName")
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty());
    let grouped = task
        .get("Group")
        .and_then(|v| v.as_str())
        .and_then(|g| g.strip_prefix("service:"))
        .filter(|s| !s.is_empty());
    Some(named.or(grouped).map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const ARN: &str = "arn:aws:ecs:us-east-1:1:task/c/abc";

    #[test]
    fn the_metadata_path_is_asked_of_the_host_endpoint() {
        assert_eq!(
            task_url(
                "http://127.0.0.1:51679",
                "http://169.254.170.2/v4/0f1e2d3c-aaaa-4bbb-8ccc-0123456789ab"
            )
            .as_deref(),
            Some("http://127.0.0.1:51679/v4/0f1e2d3c-aaaa-4bbb-8ccc-0123456789ab/task")
        );
        for bad in [
            "http://169.254.170.2/v3/abc",
            "http://169.254.170.2/v4/../credentials",
            "http://169.254.170.2/v4/a/b",
            "http://169.254.170.2/v4/",
            "https://169.254.170.2/v4/abc",
            "nonsense",
        ] {
            assert_eq!(task_url("http://127.0.0.1:51679", bad), None, "{bad}");
        }
    }

    #[test]
    fn the_service_comes_from_its_name_else_its_group() {
        let t = json!({"TaskARN": ARN, "ServiceName": "inference", "Group": "service:other"});
        assert_eq!(service_of(&t, ARN), Some(Some("inference".to_owned())));
        let t = json!({"TaskARN": ARN, "Group": "service:inference"});
        assert_eq!(service_of(&t, ARN), Some(Some("inference".to_owned())));
        let t = json!({"TaskARN": ARN, "Group": "family:train"});
        assert_eq!(service_of(&t, ARN), Some(None));
    }

    #[test]
    fn an_answer_about_another_task_is_not_taken() {
        let t = json!({"TaskARN": "arn:aws:ecs:us-east-1:1:task/c/other", "ServiceName": "x"});
        assert_eq!(service_of(&t, ARN), None);
        assert_eq!(service_of(&json!({}), ARN), None);
    }

    /// A task metadata server answering `status` and `body` to every request; counts them.
    fn serve(status: &'static str, body: String) -> (String, std::sync::Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let asked = std::sync::Arc::new(AtomicUsize::new(0));
        let count = asked.clone();
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                count.fetch_add(1, Ordering::SeqCst);
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        (url, asked)
    }

    fn container() -> ContainerInfo {
        ContainerInfo {
            task_arn: Some(ARN.to_owned()),
            metadata_uri_v4: Some("http://169.254.170.2/v4/abc-1".to_owned()),
            ..ContainerInfo::default()
        }
    }

    #[test]
    fn a_task_s_service_is_asked_once() {
        let body = json!({"TaskARN": ARN, "ServiceName": "web"}).to_string();
        let (url, asked) = serve("200 OK", body);
        let services = TaskServices::new(&url);
        for _ in 0..3 {
            let mut info = container();
            services.fill(&mut info);
            assert_eq!(info.service_name.as_deref(), Some("web"));
        }
        assert_eq!(asked.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_failed_lookup_is_not_repeated_at_once() {
        let (url, asked) = serve("500 Internal Server Error", String::new());
        let services = TaskServices::new(&url);
        for _ in 0..3 {
            let mut info = container();
            services.fill(&mut info);
            assert_eq!(info.service_name, None);
        }
        assert_eq!(asked.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn without_an_endpoint_nothing_is_asked() {
        let services = TaskServices::new("");
        let mut info = ContainerInfo {
            task_arn: Some(ARN.to_owned()),
            metadata_uri_v4: Some("http://169.254.170.2/v4/abc".to_owned()),
            ..ContainerInfo::default()
        };
        services.fill(&mut info);
        assert_eq!(info.service_name, None);
    }
}
