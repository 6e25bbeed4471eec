//! Container id → ECS task, from the docker labels the ECS agent sets
//! (`com.amazonaws.ecs.task-arn`, `...task-definition-family`, `...container-name`,
//! `...cluster`) and the one environment variable it sets that says where the task's metadata is
//! served (`ECS_CONTAINER_METADATA_URI_V4`), asked of dockerd over its socket with bollard and
//! cached per container: neither changes over a container's life.
//!
//! Owns the dockerd client, the label and variable names, and the cache. Never fails a sample (a dockerd that
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
const CLUSTER: &str = "com.amazonaws.ecs.cluster";
/// Set by the ECS agent (1.39.0 and later) in every container of a task.
const METADATA_URI_V4: &str = "ECS_CONTAINER_METADATA_URI_V4";

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
        let config = container.config.unwrap_or_default();
        let mut info = from_labels(&config.labels.unwrap_or_default());
        info.metadata_uri_v4 = config.env.as_deref().and_then(metadata_uri_v4);
        self.cache.borrow_mut().insert(id.to_owned(), info.clone());
        info
    }
}

pub fn from_labels(labels: &HashMap<String, String>) -> ContainerInfo {
    // An empty label says nothing: treated as absent, never published as an empty value.
    let label = |key: &str| labels.get(key).filter(|v| !v.is_empty()).cloned();
    ContainerInfo {
        task_arn: label(TASK_ARN),
        task_family: label(FAMILY),
        container_name: label(CONTAINER_NAME),
        // The agent labels the cluster as configured (`ECS_CLUSTER`): a name or an ARN.
        cluster_name: label(CLUSTER)
            .map(|c| c.rsplit('/').next().unwrap_or(&c).to_owned())
            .filter(|c| !c.is_empty()),
        service_name: None,
        metadata_uri_v4: None,
        gpu_memory_limit_bytes: None,
    }
}

/// The container's task metadata URI, from its environment (`KEY=value` entries).
pub fn metadata_uri_v4(env: &[String]) -> Option<String> {
    env.iter()
        .filter_map(|e| e.split_once('='))
        .find(|(k, _)| *k == METADATA_URI_V4)
        .map(|(_, v)| v.to_owned())
        .filter(|v| !v.is_empty())
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
            (CLUSTER, "arn:aws:ecs:eu-west-1:1:cluster/gpu-cluster"),
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
        assert_eq!(info.cluster_name.as_deref(), Some("gpu-cluster"));
        assert_eq!(from_labels(&HashMap::new()), ContainerInfo::default());
    }

    #[test]
    fn the_task_metadata_uri_is_read_from_the_environment() {
        let env = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            metadata_uri_v4(&env(&[
                "PATH=/bin",
                "ECS_CONTAINER_METADATA_URI=http://169.254.170.2/v3/x",
                "ECS_CONTAINER_METADATA_URI_V4=http://169.254.170.2/v4/abc-1"
            ]))
            .as_deref(),
            Some("http://169.254.170.2/v4/abc-1")
        );
        assert_eq!(
            metadata_uri_v4(&env(&["ECS_CONTAINER_METADATA_URI_V4="])),
            None
        );
        assert_eq!(metadata_uri_v4(&env(&["NOEQUALS"])), None);
    }
}
