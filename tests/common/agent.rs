//! The metrics agent, `gpu-share metrics`, on the fake NVML library: one builder for its TOML
//! config and its command line.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// `gpu-share metrics` with its config in a temp dir of its own. A key not set here is left out
/// of the TOML, so the agent's default applies. The config file is (re)written whenever a
/// command is made, so it is always what the builder says.
pub struct Agent {
    dir: tempfile::TempDir,
    binary: PathBuf,
    devices_root: Option<PathBuf>,
    nvml_library: PathBuf,
    /// `[metrics]` keys in the order set, each with its TOML value.
    metrics: Vec<(&'static str, String)>,
    gpus: Option<String>,
    procs: Option<String>,
    proc_util: Option<String>,
    proc_util_error: Option<String>,
    aws_credentials: bool,
}

impl Agent {
    /// The agent loading the NVML library at `nvml_library` (usually [`super::fake_nvml`]).
    pub fn new(nvml_library: &Path) -> Agent {
        Agent {
            dir: tempfile::tempdir().unwrap(),
            binary: super::cli_bin(),
            devices_root: None,
            nvml_library: nvml_library.to_owned(),
            metrics: Vec::new(),
            gpus: None,
            procs: None,
            proc_util: None,
            proc_util_error: None,
            aws_credentials: false,
        }
    }

    /// Runs the CLI at `path` instead of the one cargo built (the demo runs the one it is given).
    pub fn binary(mut self, path: impl Into<PathBuf>) -> Agent {
        self.binary = path.into();
        self
    }

    /// The agent's temp dir, for the test's own files beside the config.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `[devices] root`: where it reads `/proc` from.
    pub fn devices_root(mut self, root: &Path) -> Agent {
        self.devices_root = Some(root.to_owned());
        self
    }

    /// A fake `/proc` with one `cgroup` file per `(pid, cgroup path)`, made the devices root.
    pub fn cgroups(self, procs: &[(u32, &str)]) -> Agent {
        let root = self.dir.path().join("root");
        for (pid, cgroup) in procs {
            let p = root.join(format!("proc/{pid}"));
            std::fs::create_dir_all(&p).unwrap();
            std::fs::write(p.join("cgroup"), format!("0::{cgroup}\n")).unwrap();
        }
        self.devices_root(&root)
    }

    /// `[nvml] library`.
    pub fn nvml_library(mut self, library: &Path) -> Agent {
        self.nvml_library = library.to_owned();
        self
    }

    /// Sets `[metrics] key` to `value`, already written as TOML.
    pub fn metrics_key(mut self, key: &'static str, value: String) -> Agent {
        self.metrics.retain(|(k, _)| *k != key);
        self.metrics.push((key, value));
        self
    }

    fn string(self, key: &'static str, value: &str) -> Agent {
        self.metrics_key(key, format!("{value:?}"))
    }

    pub fn interval(self, seconds: u64) -> Agent {
        self.metrics_key("interval_seconds", seconds.to_string())
    }

    pub fn namespace(self, namespace: &str) -> Agent {
        self.string("namespace", namespace)
    }

    /// The `InstanceId` dimension.
    pub fn instance_id(self, id: &str) -> Agent {
        self.string("instance_id", id)
    }

    /// The `AutoScalingGroupName` dimension.
    pub fn auto_scaling_group(self, name: &str) -> Agent {
        self.string("auto_scaling_group_name", name)
    }

    /// The `ClusterName` dimension.
    pub fn cluster(self, name: &str) -> Agent {
        self.string("cluster_name", name)
    }

    /// Publishes to the CloudWatch API at `endpoint_url` in us-east-1, with test credentials
    /// and no instance metadata for the AWS SDK.
    pub fn cloudwatch(mut self, endpoint_url: &str) -> Agent {
        self.aws_credentials = true;
        self.string("endpoint_url", endpoint_url)
            .string("region", "us-east-1")
    }

    pub fn buffer_max_datums(self, datums: usize) -> Agent {
        self.metrics_key("buffer_max_datums", datums.to_string())
    }

    /// `discover = false`: unset dimensions are not looked up.
    pub fn no_discovery(self) -> Agent {
        self.metrics_key("discover", "false".to_owned())
    }

    /// The instance metadata service (IMDSv2) to look dimensions up from.
    pub fn imds_endpoint(self, url: &str) -> Agent {
        self.string("imds_endpoint", url)
    }

    /// The ECS agent's introspection API to look the cluster up from.
    pub fn ecs_agent_endpoint(self, url: &str) -> Agent {
        self.string("ecs_agent_endpoint", url)
    }

    /// The ECS agent's task metadata server, asked for each task's service.
    pub fn task_metadata_endpoint(self, url: &str) -> Agent {
        self.string("task_metadata_endpoint", url)
    }

    /// `task_dimensions`: per-task series (`TaskArn` a dimension) beside the services'.
    pub fn task_dimensions(self, on: bool) -> Agent {
        self.metrics_key("task_dimensions", on.to_string())
    }

    /// The dockerd asked for containers' labels (`unix:///path`).
    pub fn docker_host(self, url: &str) -> Agent {
        self.string("docker_host", url)
    }

    /// No dockerd to ask for labels.
    pub fn without_docker(self) -> Agent {
        self.docker_host("unix:///nonexistent.sock")
    }

    /// The fake NVML's GPUs (`FAKE_NVML_GPUS`); without this it has none.
    pub fn gpus(mut self, gpus: &str) -> Agent {
        self.gpus = Some(gpus.to_owned());
        self
    }

    /// The fake NVML's processes (`FAKE_NVML_PROCS`); without this it has none.
    pub fn procs(mut self, procs: &str) -> Agent {
        self.procs = Some(procs.to_owned());
        self
    }

    /// The fake NVML's per-process utilisation samples (`FAKE_NVML_PROC_UTIL`:
    /// `gpu:pid:sm:mem[:timestamp_us]`; no timestamp is always new); without this it has none.
    pub fn proc_util(mut self, samples: &str) -> Agent {
        self.proc_util = Some(samples.to_owned());
        self
    }

    /// GPUs whose process utilisation call fails (`FAKE_NVML_PROC_UTIL_ERROR`: `gpu:code`).
    pub fn proc_util_error(mut self, errors: &str) -> Agent {
        self.proc_util_error = Some(errors.to_owned());
        self
    }

    /// The config file's text.
    pub fn toml(&self) -> String {
        let mut t = String::new();
        if let Some(root) = &self.devices_root {
            t.push_str(&format!(
                "[devices]\nroot = {:?}\n",
                root.display().to_string()
            ));
        }
        t.push_str(&format!(
            "[nvml]\nlibrary = {:?}\n[metrics]\n",
            self.nvml_library.display().to_string()
        ));
        for (key, value) in &self.metrics {
            t.push_str(&format!("{key} = {value}\n"));
        }
        t
    }

    /// Writes the config file; its path.
    pub fn config(&self) -> PathBuf {
        let path = self.dir.path().join("config.toml");
        std::fs::write(&path, self.toml()).unwrap();
        path
    }

    /// `gpu-share metrics --output OUTPUT --config CONFIG`, sampling until stopped; stdin empty,
    /// stdout and stderr left to the caller.
    pub fn command(&self, output: &str) -> Command {
        let mut c = Command::new(&self.binary);
        c.args(["metrics", "--output", output, "--config"])
            .arg(self.config())
            .env_remove("FAKE_NVML_INIT_ERROR")
            .stdin(Stdio::null());
        match &self.gpus {
            Some(g) => c.env("FAKE_NVML_GPUS", g),
            None => c.env_remove("FAKE_NVML_GPUS"),
        };
        for (name, value) in [
            ("FAKE_NVML_PROCS", &self.procs),
            ("FAKE_NVML_PROC_UTIL", &self.proc_util),
            ("FAKE_NVML_PROC_UTIL_ERROR", &self.proc_util_error),
        ] {
            match value {
                Some(v) => c.env(name, v),
                None => c.env_remove(name),
            };
        }
        if self.aws_credentials {
            c.env("AWS_ACCESS_KEY_ID", "test")
                .env("AWS_SECRET_ACCESS_KEY", "test")
                .env_remove("AWS_PROFILE")
                .env("AWS_EC2_METADATA_DISABLED", "true");
        }
        c
    }

    /// One sample (`--once`), whatever its outcome.
    pub fn run_once(&self, output: &str) -> Output {
        self.command(output).arg("--once").output().unwrap()
    }

    /// One sample (`--once`), which must succeed; its stdout.
    pub fn once(&self, output: &str) -> String {
        let out = self.run_once(output);
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    }
}
