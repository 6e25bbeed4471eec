//! The service-level series end to end: real containers of a private dockerd with the labels and
//! the metadata URI the ECS agent gives them, a stand-in for the agent's task metadata server
//! (what it answers at 127.0.0.1:51679) naming each task's service, the fake NVML reporting
//! per-process SM utilisation for the containers' real pids on one shared GPU, and moto's
//! CloudWatch API, read back with ListMetrics and GetMetricStatistics.

mod common;

use std::path::Path;

use common::agent::Agent;
use common::dockerd::{Dockerd, EcsLabels};
use common::http::{self, Request, Response, Server};
use common::moto::Moto;
use common::{fake_nvml, require, shim_bin};

const CLUSTER: &str = "gpu-cluster";
const GIB: u64 = 1 << 30;

/// One ECS task of the test: its service, its id and the SM utilisation and memory its one
/// process uses on GPU 0.
struct Task {
    service: &'static str,
    id: &'static str,
    sm: u32,
    bytes: u64,
}

const TASKS: [Task; 3] = [
    Task {
        service: "svc-a",
        id: "a1",
        sm: 30,
        bytes: GIB,
    },
    Task {
        service: "svc-a",
        id: "a2",
        sm: 50,
        bytes: 3 * GIB,
    },
    Task {
        service: "svc-b",
        id: "b1",
        sm: 15,
        bytes: 2 * GIB,
    },
];

fn arn(id: &str) -> String {
    format!("arn:aws:ecs:us-east-1:123456789012:task/{CLUSTER}/{id}")
}

/// The agent's task metadata server for `TASKS`: `/v4/<endpoint id>/task` (endpoint id
/// `ep-<task id>`), with `ServiceName` for the first service and only `Group` for the second
/// (as agents before `ServiceName` answer).
fn serve_task_metadata() -> Server {
    http::serve(|r: &Request| {
        let task = TASKS
            .iter()
            .find(|t| r.path == format!("/v4/ep-{}/task", t.id));
        match task {
            Some(t) if t.service == "svc-a" => Response::json(
                &serde_json::json!({"Cluster": CLUSTER, "TaskARN": arn(t.id),
                    "Family": "inference", "ServiceName": t.service,
                    "Group": format!("service:{}", t.service)}),
            ),
            Some(t) => Response::json(&serde_json::json!({"Cluster": CLUSTER,
                "TaskARN": arn(t.id), "Family": "inference",
                "Group": format!("service:{}", t.service)})),
            None => Response::not_found("application/json"),
        }
    })
}

/// Runs one container per task, labelled as the ECS agent labels them; their (id, pid)s in order.
fn run_tasks(d: &Dockerd) -> Vec<(String, String)> {
    TASKS
        .iter()
        .map(|t| {
            let labels = EcsLabels {
                task_arn: &arn(t.id),
                family: "inference",
                container_name: "model",
                cluster: CLUSTER,
            };
            let metadata_uri = format!(
                "ECS_CONTAINER_METADATA_URI_V4=http://169.254.170.2/v4/ep-{}",
                t.id
            );
            d.run_ecs_task_container(&labels, &[&metadata_uri])
        })
        .collect()
}

/// The agent publishing one sample to `moto` under `namespace`, for the containers' `pids`.
fn agent(moto: &Moto, d: &Dockerd, metadata: &Server, pids: &[String], namespace: &str) -> Agent {
    let procs: Vec<String> = TASKS
        .iter()
        .zip(pids)
        .map(|(t, pid)| format!("0:{pid}:{}", t.bytes))
        .collect();
    let util: Vec<String> = TASKS
        .iter()
        .zip(pids)
        .map(|(t, pid)| format!("0:{pid}:{}:5", t.sm))
        .collect();
    Agent::new(&fake_nvml())
        .devices_root(Path::new("/"))
        .instance_id("i-0abc")
        .no_discovery()
        .namespace(namespace)
        .cloudwatch(&moto.url())
        .docker_host(&d.url())
        .task_metadata_endpoint(&metadata.url())
        .gpus(&format!(
            "GPU-11111111-0000-4000-8000-000000000000,Tesla T4,{},{},00000000:00:1E.0,0,95,20,50,40000",
            16 * GIB,
            10 * GIB
        ))
        .procs(&procs.join(";"))
        .proc_util(&util.join(";"))
}

#[test]
fn two_services_sharing_a_gpu_get_their_own_series() {
    if !require(
        "two_services_sharing_a_gpu_get_their_own_series",
        &["dockerd", "containerd", "runc", "cc", "moto_server"],
    ) {
        return;
    }
    let d = Dockerd::start(&shim_bin(), 1, "");
    let containers = run_tasks(&d);
    let pids: Vec<String> = containers.iter().map(|(_, pid)| pid.clone()).collect();
    let metadata = serve_task_metadata();
    let moto = Moto::start(Moto::free_port());

    let out = agent(&moto, &d, &metadata, &pids, "GPUShare").run_once("cloudwatch");
    assert!(out.status.success(), "{out:?}");

    let service = |name: &str, s: &str| {
        moto.statistics(
            "GPUShare",
            name,
            &[("ClusterName", CLUSTER), ("ServiceName", s)],
        )
    };
    // svc-a: two tasks, 30 % and 50 % of the GPU; Average is the mean over its tasks.
    assert_eq!(
        service("ServiceGPUUtilization", "svc-a"),
        Some((40.0, 80.0, 2.0))
    );
    assert_eq!(
        service("ServiceGPUMemoryUsed", "svc-a"),
        Some((2.0 * GIB as f64, 4.0 * GIB as f64, 2.0))
    );
    // svc-b: its name from the task's group (an agent without ServiceName).
    assert_eq!(
        service("ServiceGPUUtilization", "svc-b"),
        Some((15.0, 15.0, 1.0))
    );
    let family = moto.statistics(
        "GPUShare",
        "ServiceGPUUtilization",
        &[
            ("ClusterName", CLUSTER),
            ("TaskDefinitionFamily", "inference"),
        ],
    );
    assert_eq!(family, Some((95.0 / 3.0, 95.0, 3.0)));

    let listed = moto.list_metrics("GPUShare");
    let per_task: Vec<_> = listed
        .iter()
        .filter(|(_, dims)| dims.iter().any(|d| d.starts_with("TaskArn=")))
        .collect();
    assert!(per_task.is_empty(), "{per_task:?}");
    let service_series: Vec<_> = listed
        .iter()
        .filter(|(name, _)| name.starts_with("Service"))
        .collect();
    // Two metrics under each of svc-a, svc-b and the family: six series for three tasks.
    assert_eq!(service_series.len(), 6, "{service_series:?}");

    // task_dimensions = true: the per-task series as well.
    let out = agent(&moto, &d, &metadata, &pids, "GPUShareTasks")
        .task_dimensions(true)
        .run_once("cloudwatch");
    assert!(out.status.success(), "{out:?}");
    let listed = moto.list_metrics("GPUShareTasks");
    for t in &TASKS {
        let want = (
            "TaskGPUUtilization".to_owned(),
            vec![
                "InstanceId=i-0abc".to_owned(),
                format!("TaskArn={}", arn(t.id)),
            ],
        );
        assert!(listed.contains(&want), "{want:?} not in {listed:?}");
    }
    let task = moto.statistics(
        "GPUShareTasks",
        "TaskGPUUtilization",
        &[("InstanceId", "i-0abc"), ("TaskArn", &arn("a2"))],
    );
    assert_eq!(task, Some((50.0, 50.0, 1.0)));
    assert!(listed.iter().any(|(n, _)| n == "ServiceGPUUtilization"));
    for (id, _) in &containers {
        d.docker_ok(&["rm", "-f", id]);
    }
    d.stop();
}
