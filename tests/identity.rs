//! Dimensions looked up where the config leaves them unset: the instance id and Auto Scaling
//! group from instance metadata (IMDSv2), the cluster from the ECS agent's introspection API,
//! both served here by a small stand-in on 127.0.0.1.

mod common;

use common::agent::Agent;
use common::http::{self, Request, Response, Server};
use common::{fake_nvml, require};
use serde_json::Value;

/// Answers IMDSv2 (instance metadata only with the token it handed out) and the ECS agent's
/// /v1/metadata.
fn serve() -> Server {
    http::serve(|r: &Request| {
        let token_ok = r.header("x-aws-ec2-metadata-token") == Some("t0ken");
        match (r.method.as_str(), r.path.as_str()) {
            // IMDS states the token's lifetime in a header; clients check it.
            ("PUT", "/latest/api/token") => {
                Response::text("t0ken").header("X-aws-ec2-metadata-token-ttl-seconds", "21600")
            }
            ("GET", "/latest/meta-data/instance-id") if token_ok => Response::text("i-0fake"),
            ("GET", "/latest/meta-data/tags/instance/aws:autoscaling:groupName") if token_ok => {
                Response::text("gpu-asg")
            }
            ("GET", "/v1/metadata") => Response::text(
                r#"{"Cluster":"arn:aws:ecs:us-east-1:123456789012:cluster/gpu-cluster","ContainerInstanceArn":"x","Version":"Amazon ECS Agent - v1.80.0"}"#,
            ),
            _ => Response::not_found("text/plain"),
        }
    })
}

/// The first EMF line of one sample of the agent `configure` makes, with both lookup endpoints
/// pointed at `stand_in`.
fn first_line(stand_in: &Server, configure: impl FnOnce(Agent) -> Agent) -> Value {
    let stand_in = stand_in.url();
    let agent = configure(Agent::new(&fake_nvml()))
        .imds_endpoint(&stand_in)
        .ecs_agent_endpoint(&stand_in)
        .without_docker()
        .gpus("GPU-11111111-0000-4000-8000-000000000000,Tesla T4,100,50,00000000:00:1E.0,0,40,1,50,30000");
    let out = agent.once("emf");
    serde_json::from_str(out.lines().next().unwrap()).unwrap()
}

#[test]
fn unset_dimensions_come_from_instance_metadata_and_the_ecs_agent() {
    if !require(
        "unset_dimensions_come_from_instance_metadata_and_the_ecs_agent",
        &["cc"],
    ) {
        return;
    }
    let stand_in = serve();
    let first = first_line(&stand_in, |a| a);
    let asked = stand_in.seen();
    assert_eq!(first["InstanceId"], "i-0fake", "asked: {asked:?}");
    assert_eq!(first["AutoScalingGroupName"], "gpu-asg");
    assert_eq!(first["ClusterName"], "gpu-cluster");
    assert_eq!(
        first["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        serde_json::json!([
            ["InstanceId", "AutoScalingGroupName", "ClusterName"],
            ["AutoScalingGroupName"]
        ])
    );
    assert!(
        asked.contains(&"PUT /latest/api/token".to_owned()),
        "{asked:?}"
    );
}

#[test]
fn config_values_are_not_looked_up() {
    if !require("config_values_are_not_looked_up", &["cc"]) {
        return;
    }
    let stand_in = serve();
    let first = first_line(&stand_in, |a| {
        a.instance_id("i-set")
            .auto_scaling_group("asg-set")
            .cluster("cluster-set")
    });
    assert_eq!(first["InstanceId"], "i-set");
    assert_eq!(first["ClusterName"], "cluster-set");
    assert!(stand_in.seen().is_empty());
}
