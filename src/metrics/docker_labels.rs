//! Container id → ECS task, from the docker labels the ECS agent sets
//! (`com.amazonaws.ecs.task-arn`, `...task-definition-family`, `...container-name`), asked of
//! dockerd over its socket with bollard and cached per container: labels never change.
//!
//! Owns the dockerd client, the label names and the cache. Never fails a sample (a dockerd that
//! does not answer leaves the labels empty) and never builds its own async runtime (it runs on
//! the agent's).

use std::cell::RefCell;
use std::collections::HashMap;

use bollard::query_parameters::InspectContainerOptions;
use bollard::Docker;
use tokio::runtime::Runtime;

use super::sample::ContainerInfo;

const TASK_ARN: &str = "com.amazonaws.ecs.task-arn";
const FAMILY: &str = "com.amazonaws.ecs.task-definition-family";
const CONTAINER_NAME: &str = "com.amazonaws.ecs.container-name";

/// dockerd's client could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum DockerLabelsError {
    #[error("dockerd at {host}: {source}")]
    Connect {
        host: String,
        source: bollard::errors::Error,
    },
}

pub struct DockerLabels<'rt> {
    runtime: &'rt Runtime,
    docker: Docker,
    cache: RefCell<HashMap<String, ContainerInfo>>,
}

impl<'rt> DockerLabels<'rt> {
    /// Connects to dockerd at `host` (`unix:///var/run/docker.sock`); asks it on `runtime`.
    pub fn connect(
        host: &str,
        runtime: &'rt Runtime,
    ) -> Result<DockerLabels<'rt>, DockerLabelsError> {
        let socket = host.strip_prefix("unix://").unwrap_or(host);
        // A short timeout: a dockerd that hangs must not hold up the sample.
        let docker =
            Docker::connect_with_unix(socket, 2, bollard::API_DEFAULT_VERSION).map_err(|e| {
                DockerLabelsError::Connect {
                    host: host.to_owned(),
                    source: e,
                }
            })?;
        Ok(DockerLabels {
            runtime,
            docker,
            cache: RefCell::new(HashMap::new()),
        })
    }

    /// The container's ECS labels; empty where dockerd does not know the container (cached) or
    /// did not answer (not cached, so the next sample asks again).
    pub fn describe(&self, id: &str) -> ContainerInfo {
        if let Some(hit) = self.cache.borrow().get(id) {
            return hit.clone();
        }
        let inspected = self.runtime.block_on(
            self.docker
                .inspect_container(id, None::<InspectContainerOptions>),
        );
        let container = match inspected {
            Ok(c) => c,
            // dockerd does not know it (not one of its containers): that will not change.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {
                self.cache
                    .borrow_mut()
                    .insert(id.to_owned(), ContainerInfo::default());
                return ContainerInfo::default();
            }
            Err(_) => return ContainerInfo::default(),
        };
        let labels = container.config.and_then(|c| c.labels).unwrap_or_default();
        let info = from_labels(&labels);
        self.cache.borrow_mut().insert(id.to_owned(), info.clone());
        info
    }
}

pub fn from_labels(labels: &HashMap<String, String>) -> ContainerInfo {
    ContainerInfo {
        task_arn: labels.get(TASK_ARN).cloned(),
        task_family: labels.get(FAMILY).cloned(),
        container_name: labels.get(CONTAINER_NAME).cloned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecs_labels_are_read() {
        let labels: HashMap<String, String> = [
            (TASK_ARN, "arn:aws:ecs:eu-west-1:1:task/c/abc"),
            (FAMILY, "inference"),
            (CONTAINER_NAME, "model"),
            ("other", "x"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let info = from_labels(&labels);
        assert_eq!(
            info.task_arn.as_deref(),
            Some("arn:aws:ecs:eu-west-1:1:task/c/abc")
        );
        assert_eq!(info.task_family.as_deref(), Some("inference"));
        assert_eq!(info.container_name.as_deref(), Some("model"));
        assert_eq!(from_labels(&HashMap::new()), ContainerInfo::default());
    }
}
