//! The CloudFormation templates in deploy/: every one passes cfn-lint, and each scales on a series
//! the agent publishes. The service policy is checked against the issue-13 metric contract
//! (`contract` below), the instance-level policy against what `records` publishes today.
//!
//! Templates are read with cfn-lint's own YAML decoder (`!Ref` becomes `{"Ref": ...}`), so the
//! tests see the structure CloudFormation sees, not text that happens to match.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::require;
use gpu_share::metrics::records::{records, Record};
use gpu_share::metrics::{ContainerInfo, ContainerUse, GpuSample, Sample};
use serde_json::Value;

const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy");

/// The service-level metric contract shared by the engineers on issue 13 (docs/scaling.md).
mod contract {
    pub const NAMESPACE: &str = "GPUShare";
    /// One datum per task per sample: the task's SM utilisation summed over its processes.
    pub const SERVICE_UTILIZATION: &str = "ServiceGPUUtilization";
    pub const SERVICE_MEMORY: &str = "ServiceGPUMemoryUsed";
    pub const SERVICE_DIMENSIONS: [&str; 2] = ["ClusterName", "ServiceName"];
    pub const FAMILY_DIMENSIONS: [&str; 2] = ["ClusterName", "TaskDefinitionFamily"];
    /// The mean over the service's tasks: what scales with the task count.
    pub const STATISTIC: &str = "Average";
    pub const UNIT: &str = "Percent";
}

fn templates() -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(DEPLOY)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml" | "json" | "template")
            )
        })
        .collect();
    found.sort();
    found
}

/// The template as CloudFormation reads it, through cfn-lint's decoder.
fn template(name: &str) -> Value {
    let path = Path::new(DEPLOY).join(name);
    let script = "import json, sys\n\
                  from cfnlint.decode import decode\n\
                  t, errors = decode(sys.argv[1])\n\
                  if errors: sys.exit(str(errors))\n\
                  print(json.dumps(t, default=str))";
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "decoding {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The one resource of `kind` in a template.
fn resource<'a>(t: &'a Value, kind: &str) -> &'a Value {
    let found: Vec<&Value> = t["Resources"]
        .as_object()
        .unwrap()
        .values()
        .filter(|r| r["Type"] == kind)
        .collect();
    assert_eq!(found.len(), 1, "one {kind} expected");
    &found[0]["Properties"]
}

fn reference(name: &str) -> Value {
    serde_json::json!({ "Ref": name })
}

fn sorted(names: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
    v.sort();
    v
}

#[test]
fn every_template_in_deploy_passes_cfn_lint() {
    if !require("every_template_in_deploy_passes_cfn_lint", &["cfn-lint"]) {
        return;
    }
    let all = templates();
    for expected in [
        "capacity-provider.yaml",
        "gpu-autoscaling.yaml",
        "service-gpu-scaling.yaml",
    ] {
        assert!(
            all.iter().any(|p| p.ends_with(expected)),
            "{expected} missing from {all:?}"
        );
    }
    let out = Command::new("cfn-lint").args(&all).output().unwrap();
    assert!(
        out.status.success(),
        "cfn-lint {all:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn service_policy_tracks_the_contract_series() {
    if !require("service_policy_tracks_the_contract_series", &["cfn-lint"]) {
        return;
    }
    let t = template("service-gpu-scaling.yaml");
    let target = resource(&t, "AWS::ApplicationAutoScaling::ScalableTarget");
    assert_eq!(target["ServiceNamespace"], "ecs");
    assert_eq!(target["ScalableDimension"], "ecs:service:DesiredCount");
    assert_eq!(
        target["ResourceId"],
        serde_json::json!({ "Fn::Sub": "service/${ClusterName}/${ServiceName}" })
    );
    assert_eq!(target["MinCapacity"], reference("MinTasks"));
    assert_eq!(target["MaxCapacity"], reference("MaxTasks"));

    let policy = resource(&t, "AWS::ApplicationAutoScaling::ScalingPolicy");
    assert_eq!(policy["PolicyType"], "TargetTrackingScaling");
    let config = &policy["TargetTrackingScalingPolicyConfiguration"];
    assert_eq!(config["TargetValue"], reference("TargetGpuUtilization"));
    assert_eq!(config["ScaleOutCooldown"], reference("ScaleOutCooldown"));
    assert_eq!(config["ScaleInCooldown"], reference("ScaleInCooldown"));
    let metric = &config["CustomizedMetricSpecification"];
    assert_eq!(metric["MetricName"], contract::SERVICE_UTILIZATION);
    assert_eq!(metric["Statistic"], contract::STATISTIC);
    assert_eq!(metric["Unit"], contract::UNIT);
    assert_eq!(metric["Namespace"], reference("Namespace"));
    assert_eq!(t["Parameters"]["Namespace"]["Default"], contract::NAMESPACE);

    // CloudWatch matches a dimension set whole: exactly the contract's names, each value the
    // parameter of the same name.
    let dims = metric["Dimensions"].as_array().unwrap();
    let mut names: Vec<String> = dims
        .iter()
        .map(|d| d["Name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    assert_eq!(names, sorted(&contract::SERVICE_DIMENSIONS));
    for d in dims {
        assert_eq!(d["Value"], reference(d["Name"].as_str().unwrap()));
    }
}

#[test]
fn capacity_provider_protects_instances_it_manages() {
    if !require(
        "capacity_provider_protects_instances_it_manages",
        &["cfn-lint"],
    ) {
        return;
    }
    let t = template("capacity-provider.yaml");
    let provider = &resource(&t, "AWS::ECS::CapacityProvider")["AutoScalingGroupProvider"];
    assert_eq!(
        provider["AutoScalingGroupArn"],
        reference("AutoScalingGroup")
    );
    let scaling = &provider["ManagedScaling"];
    assert_eq!(scaling["Status"], "ENABLED");
    assert_eq!(scaling["TargetCapacity"], reference("TargetCapacity"));
    assert_eq!(
        scaling["MinimumScalingStepSize"],
        reference("MinimumScalingStepSize")
    );
    assert_eq!(
        scaling["MaximumScalingStepSize"],
        reference("MaximumScalingStepSize")
    );
    assert_eq!(
        provider["ManagedTerminationProtection"],
        reference("ManagedTerminationProtection")
    );
    assert_eq!(
        t["Parameters"]["ManagedTerminationProtection"]["Default"],
        "ENABLED"
    );

    // ECS's termination protection works only on instances the group protects from scale-in,
    // so the two follow one parameter.
    let group = resource(&t, "AWS::AutoScaling::AutoScalingGroup");
    assert_eq!(
        group["NewInstancesProtectedFromScaleIn"],
        serde_json::json!({ "Fn::If": ["ProtectInstances", true, false] })
    );
    assert_eq!(
        t["Conditions"]["ProtectInstances"],
        serde_json::json!({ "Fn::Equals": [reference("ManagedTerminationProtection"), "ENABLED"] })
    );
    // Managed scaling owns the desired capacity; a fixed one would reset it on every update.
    assert!(group.get("DesiredCapacity").is_none());

    let association = resource(&t, "AWS::ECS::ClusterCapacityProviderAssociations");
    assert_eq!(association["Cluster"], reference("ClusterName"));
    assert_eq!(
        association["CapacityProviders"],
        serde_json::json!([reference("GpuCapacityProvider")])
    );
    assert_eq!(
        association["DefaultCapacityProviderStrategy"][0]["CapacityProvider"],
        reference("GpuCapacityProvider")
    );
}

#[test]
fn instance_policy_scales_on_a_series_the_agent_publishes() {
    if !require(
        "instance_policy_scales_on_a_series_the_agent_publishes",
        &["cfn-lint"],
    ) {
        return;
    }
    let t = template("gpu-autoscaling.yaml");
    let policy = resource(&t, "AWS::AutoScaling::ScalingPolicy");
    let metric = &policy["TargetTrackingConfiguration"]["CustomizedMetricSpecification"];
    assert_eq!(metric["MetricName"], "GPUUtilization");
    assert_eq!(metric["Dimensions"][0]["Name"], "AutoScalingGroupName");
    assert_eq!(metric["Dimensions"].as_array().unwrap().len(), 1);
    assert_eq!(t["Parameters"]["Namespace"]["Default"], contract::NAMESPACE);
    // It must not share its group with a capacity provider, whose managed scaling owns it.
    assert!(t["Resources"]
        .as_object()
        .unwrap()
        .values()
        .all(|r| r["Type"] != "AWS::ECS::CapacityProvider"));

    let published = records(&sample(), &base());
    assert!(publishes(
        &published,
        "GPUUtilization",
        "Percent",
        &["AutoScalingGroupName"]
    ));
    assert_eq!(
        gpu_share::config::MetricsSection::default().namespace,
        contract::NAMESPACE
    );
}

#[test]
fn agent_publishes_what_the_service_policy_tracks() {
    let published = records(&sample(), &base());
    assert_eq!(
        gpu_share::config::MetricsSection::default().namespace,
        contract::NAMESPACE
    );
    // The cluster dimension reaches every record under the contract's name.
    assert!(published
        .iter()
        .all(|r| r.dimensions.iter().any(|(k, _)| k == "ClusterName")));

    let service_series = [
        (contract::SERVICE_UTILIZATION, contract::UNIT),
        (contract::SERVICE_MEMORY, "Bytes"),
    ];
    for (metric, unit) in service_series {
        for dims in [contract::SERVICE_DIMENSIONS, contract::FAMILY_DIMENSIONS] {
            assert!(
                publishes(&published, metric, unit, &dims),
                "{metric} ({unit}) under {dims:?} missing from {published:#?}"
            );
        }
    }
}

/// Whether some record publishes `metric` in `unit` under exactly the dimension set `dims`.
fn publishes(published: &[Record], metric: &str, unit: &str, dims: &[&str]) -> bool {
    let want = sorted(dims);
    published.iter().any(|r| {
        r.metrics.iter().any(|m| m.name == metric && m.unit == unit)
            && r.dimension_sets.iter().any(|set| {
                let mut s = set.clone();
                s.sort();
                s == want
            })
    })
}

fn base() -> Vec<(String, String)> {
    vec![
        ("InstanceId".to_owned(), "i-1".to_owned()),
        ("AutoScalingGroupName".to_owned(), "asg".to_owned()),
        ("ClusterName".to_owned(), "gpu-cluster".to_owned()),
    ]
}

/// One T4 and one task of service `web` using 30% of it.
fn sample() -> Sample {
    let gpu = GpuSample {
        index: 0,
        uuid: "GPU-1".into(),
        name: "Tesla T4".into(),
        utilization_gpu_percent: 30,
        utilization_memory_percent: 1,
        memory_used_bytes: 1 << 30,
        memory_total_bytes: 16 << 30,
        temperature_celsius: 40,
        power_watts: 30.0,
    };
    let info = ContainerInfo {
        task_arn: Some("arn:aws:ecs:us-east-1:1:task/gpu-cluster/abc".into()),
        task_family: Some("web".into()),
        container_name: Some("app".into()),
        cluster_name: Some("gpu-cluster".into()),
        service_name: Some("web".into()),
        ..Default::default()
    };
    let task = ContainerUse {
        container_id: "c1".into(),
        gpu_index: 0,
        gpu_memory_bytes: 1 << 30,
        sm_util_percent: Some(30),
        processes: 1,
        info,
    };
    Sample {
        timestamp_ms: 0,
        gpus: vec![gpu],
        containers: vec![task],
        host_processes: 0,
    }
}
