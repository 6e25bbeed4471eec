//! The dimensions every series carries, where known: `InstanceId` and `AutoScalingGroupName`
//! from the instance metadata service (IMDSv2; the group only where instance tags are exposed in
//! metadata), `ClusterName` from the ECS agent's introspection API. A value in the config wins;
//! a lookup that fails leaves the dimension out (the agent still runs off EC2).
//!
//! Owns the lookups and the precedence (config, then lookup, then nothing). Never fails: a
//! missing dimension is not an error. Never builds its own async runtime (IMDS is asked on the
//! agent's).

use std::time::Duration;

use tokio::runtime::Runtime;

use crate::config::MetricsSection;

const INSTANCE_ID: &str = "/latest/meta-data/instance-id";
const ASG_TAG: &str = "/latest/meta-data/tags/instance/aws:autoscaling:groupName";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub instance_id: Option<String>,
    pub auto_scaling_group_name: Option<String>,
    pub cluster_name: Option<String>,
}

impl Identity {
    /// Dimensions in publishing order.
    pub fn dimensions(&self) -> Vec<(String, String)> {
        [
            ("InstanceId", &self.instance_id),
            ("AutoScalingGroupName", &self.auto_scaling_group_name),
            ("ClusterName", &self.cluster_name),
        ]
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| ((*k).to_owned(), v.clone())))
        .collect()
    }
}

/// Config values, then lookups for what the config leaves unset (unless `metrics.discover` is
/// off). IMDS is asked on `runtime`.
pub fn resolve(config: &MetricsSection, runtime: &Runtime) -> Identity {
    let mut id = Identity {
        instance_id: config.instance_id.clone(),
        auto_scaling_group_name: config.auto_scaling_group_name.clone(),
        cluster_name: config.cluster_name.clone(),
    };
    if !config.discover {
        return id;
    }
    if id.instance_id.is_none() || id.auto_scaling_group_name.is_none() {
        let (instance, group) = from_imds(runtime, config.imds_endpoint.as_deref());
        id.instance_id = id.instance_id.or(instance);
        id.auto_scaling_group_name = id.auto_scaling_group_name.or(group);
    }
    if id.cluster_name.is_none() {
        id.cluster_name = cluster_from_ecs_agent(&config.ecs_agent_endpoint);
    }
    id
}

fn from_imds(runtime: &Runtime, endpoint: Option<&str>) -> (Option<String>, Option<String>) {
    let mut builder = aws_config::imds::Client::builder()
        .connect_timeout(Duration::from_secs(1))
        .read_timeout(Duration::from_secs(1));
    if let Some(e) = endpoint {
        match builder.endpoint(e) {
            Ok(b) => builder = b,
            Err(_) => return (None, None),
        }
    }
    let client = builder.build();
    runtime.block_on(async {
        let get = |path: &'static str| {
            let client = client.clone();
            async move {
                client
                    .get(path)
                    .await
                    .ok()
                    .map(|v| v.as_ref().trim().to_owned())
                    .filter(|v| !v.is_empty())
            }
        };
        let instance = get(INSTANCE_ID).await;
        // Without an instance id this is not EC2: do not wait on a second lookup.
        let group = match instance {
            Some(_) => get(ASG_TAG).await,
            None => None,
        };
        (instance, group)
    })
}

fn cluster_from_ecs_agent(endpoint: &str) -> Option<String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(1)))
        .build()
        .into();
    let url = format!("{}/v1/metadata", endpoint.trim_end_matches('/'));
    let mut response = agent.get(&url).call().ok()?;
    let meta: serde_json::Value = response.body_mut().read_json().ok()?;
    let cluster = meta.get("Cluster")?.as_str()?;
    // The agent reports the cluster's name, or its ARN on some versions: keep the name.
    Some(cluster.rsplit('/').next().unwrap_or(cluster).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_values_win_and_lookups_can_be_off() {
        let config = MetricsSection {
            instance_id: Some("i-config".into()),
            cluster_name: Some("from-config".into()),
            discover: false,
            ..MetricsSection::default()
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let id = resolve(&config, &runtime);
        assert_eq!(
            id.dimensions(),
            vec![
                ("InstanceId".to_owned(), "i-config".to_owned()),
                ("ClusterName".to_owned(), "from-config".to_owned())
            ]
        );
    }
}
