//! Dimensions looked up where the config leaves them unset: the instance id and Auto Scaling
//! group from instance metadata (IMDSv2), the cluster from the ECS agent's introspection API,
//! both served here by a small stand-in on 127.0.0.1.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use common::agent::Agent;
use common::{fake_nvml, require};
use serde_json::Value;

/// Answers IMDSv2 and the ECS agent's /v1/metadata; records the paths asked for.
fn serve() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            let mut token_ok = false;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                token_ok |= h
                    .to_ascii_lowercase()
                    .starts_with("x-aws-ec2-metadata-token: t0ken");
            }
            let mut parts = request.split_whitespace();
            let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            log.lock().unwrap().push(format!("{method} {path}"));
            let (status, body) = match (method, path) {
                ("PUT", "/latest/api/token") => ("200 OK", "t0ken".to_owned()),
                ("GET", "/latest/meta-data/instance-id") if token_ok => ("200 OK", "i-0fake".to_owned()),
                ("GET", "/latest/meta-data/tags/instance/aws:autoscaling:groupName") if token_ok => {
                    ("200 OK", "gpu-asg".to_owned())
                }
                ("GET", "/v1/metadata") => (
                    "200 OK",
                    r#"{"Cluster":"arn:aws:ecs:us-east-1:123456789012:cluster/gpu-cluster","ContainerInstanceArn":"x","Version":"Amazon ECS Agent - v1.80.0"}"#.to_owned(),
                ),
                _ => ("404 Not Found", String::new()),
            };
            // IMDS states the token's lifetime in a header; clients check it.
            let ttl = if method == "PUT" {
                "X-aws-ec2-metadata-token-ttl-seconds: 21600\r\n"
            } else {
                ""
            };
            let mut s = stream;
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\n{ttl}Content-Length: {}\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, seen)
}

/// The first EMF line of one sample of the agent `configure` makes, with both lookup endpoints
/// pointed at the stand-in on `port`.
fn first_line(port: u16, configure: impl FnOnce(Agent) -> Agent) -> Value {
    let stand_in = format!("http://127.0.0.1:{port}");
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
    let (port, seen) = serve();
    let first = first_line(port, |a| a);
    let asked = seen.lock().unwrap().clone();
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
    let (port, seen) = serve();
    let first = first_line(port, |a| {
        a.instance_id("i-set")
            .auto_scaling_group("asg-set")
            .cluster("cluster-set")
    });
    assert_eq!(first["InstanceId"], "i-set");
    assert_eq!(first["ClusterName"], "cluster-set");
    assert!(seen.lock().unwrap().is_empty());
}
