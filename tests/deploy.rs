//! The autoscaling CloudFormation template: cfn-lint passes, and it scales on the series the
//! agent really publishes (GPUUtilization under AutoScalingGroupName alone).

mod common;

use std::path::Path;
use std::process::Command;

use common::require;
use gpu_share::metrics::records::records;
use gpu_share::metrics::{GpuSample, Sample};

const TEMPLATE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/gpu-autoscaling.yaml");

#[test]
fn template_passes_cfn_lint() {
    if !require("template_passes_cfn_lint", &["cfn-lint"]) {
        return;
    }
    let out = Command::new("cfn-lint").arg(TEMPLATE).output().unwrap();
    assert!(
        out.status.success(),
        "cfn-lint:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn template_scales_on_a_series_the_agent_publishes() {
    let text = std::fs::read_to_string(Path::new(TEMPLATE)).unwrap();
    assert!(text.contains("MetricName: GPUUtilization"));
    assert!(text.contains("Default: GPUShare"));
    let gpu = GpuSample {
        index: 0,
        uuid: "GPU-1".into(),
        name: "Tesla T4".into(),
        utilization_gpu_percent: 10,
        utilization_memory_percent: 1,
        memory_used_bytes: 1,
        memory_total_bytes: 2,
        temperature_celsius: 40,
        power_watts: 30.0,
    };
    let sample = Sample {
        timestamp_ms: 0,
        gpus: vec![gpu],
        containers: vec![],
        host_processes: 0,
    };
    let base = [
        ("InstanceId".to_owned(), "i-1".to_owned()),
        ("AutoScalingGroupName".to_owned(), "asg".to_owned()),
    ];
    let instance = &records(&sample, &base)[0];
    assert_eq!(instance.metrics[0].name, "GPUUtilization");
    assert!(instance
        .dimension_sets
        .contains(&vec!["AutoScalingGroupName".to_owned()]));
    assert_eq!(
        gpu_share::config::MetricsSection::default().namespace,
        "GPUShare"
    );
}
