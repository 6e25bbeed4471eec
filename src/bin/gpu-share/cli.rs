//! The command line: clap's definitions of every subcommand and flag, and nothing else.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use gpu_share::config::Config;
use gpu_share::docker;

/// Share NVIDIA GPUs between containers on Amazon ECS GPU instances.
#[derive(Parser)]
#[command(version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Commands,
}

/// gpu-share's own configuration file.
#[derive(Args)]
pub struct ConfigArg {
    /// The configuration file [default: $GPU_SHARE_CONFIG, else /etc/gpu-share/config.toml]
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
}

impl ConfigArg {
    pub fn path(&self) -> PathBuf {
        self.config.clone().unwrap_or_else(Config::path_from_env)
    }
}

#[derive(Subcommand)]
pub enum Commands {
    /// The GPUs the runtime sees, with the live containers on each
    List {
        #[command(flatten)]
        config: ConfigArg,
        /// One JSON array of objects instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Check the driver, the /dev/char links, NVML, runc, the NVIDIA hook, the config, dockerd
    /// and the state file; changes nothing unless --fix is given
    Doctor {
        #[command(flatten)]
        config: ConfigArg,
        /// dockerd's configuration, read when `docker info` does not answer
        #[arg(long, value_name = "PATH", default_value = docker::DEFAULT_DAEMON_JSON)]
        daemon_json: PathBuf,
        /// First make the missing /dev/char/MAJOR:MINOR links of the NVIDIA device nodes under
        /// devices.root (systemd needs them to keep GPUs in running containers across a
        /// daemon-reload), replacing a symlink that leads elsewhere; a file in a link's place is
        /// left alone and reported. Nothing else is changed. Exits non-zero if a link cannot be
        /// made
        #[arg(long)]
        fix: bool,
    },
    /// Sample GPU and per-container GPU use every metrics.interval_seconds and print it
    Metrics {
        #[command(flatten)]
        config: ConfigArg,
        /// Take one sample, print it and exit
        #[arg(long)]
        once: bool,
        /// cloudwatch: PutMetricData; emf: Embedded Metric Format lines on stdout (for the
        /// CloudWatch agent); json: the sample as it is
        #[arg(long, value_enum, default_value_t = Output::Cloudwatch)]
        output: Output,
    },
    /// Make gpu-share-runtime dockerd's default runtime (and its `nvidia` runtime)
    Configure {
        #[command(subcommand)]
        target: Target,
    },
    /// Put back dockerd's configuration as it was before `configure docker`
    Unconfigure {
        #[command(subcommand)]
        target: Target,
    },
    /// The MPS control daemons gpu-share owns under isolation.dir (docs/isolation.md)
    Mps {
        #[command(subcommand)]
        action: MpsAction,
    },
    /// GPU health: clear a GPU the metrics agent marked unhealthy after a critical Xid
    Gpu {
        #[command(subcommand)]
        action: GpuAction,
    },
}

#[derive(Subcommand)]
pub enum MpsAction {
    /// Start the daemon with the default caps (isolation.memory, isolation.compute_percent) on
    /// each GPU, and set its limits; one already answering is left as it is
    Start {
        #[command(flatten)]
        config: ConfigArg,
        /// Only this GPU (an index); repeat for several
        #[arg(long, value_name = "INDEX")]
        gpu: Vec<u32>,
    },
    /// Tell every daemon under isolation.dir to quit, and wait for it
    Stop {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Whether each daemon under isolation.dir answers; exits 1 if one does not
    Status {
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(Subcommand)]
pub enum GpuAction {
    /// Mark a GPU healthy again, once it is fixed: placement gives it new containers again
    Clear {
        #[command(flatten)]
        config: ConfigArg,
        /// The GPU: its index or its whole UUID (GPU-...)
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        gpu: Option<String>,
        /// Every GPU marked unhealthy
        #[arg(long)]
        all: bool,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Cloudwatch,
    Emf,
    Json,
}

#[derive(Subcommand)]
pub enum Target {
    /// dockerd: /etc/docker-runtimes.d, OPTIONS in /etc/sysconfig/docker, or daemon.json
    Docker(DockerArgs),
}

#[derive(Args)]
pub struct DockerArgs {
    /// dockerd's daemon.json
    #[arg(long = "config", value_name = "PATH", default_value = docker::DEFAULT_DAEMON_JSON)]
    pub daemon_json: PathBuf,
    /// The file whose OPTIONS dockerd's unit passes as flags
    #[arg(long, value_name = "PATH", default_value = docker::DEFAULT_SYSCONFIG)]
    pub sysconfig: PathBuf,
    /// The ECS-optimized AMI's runtimes directory (each executable becomes --add-runtime)
    #[arg(long, value_name = "DIR", default_value = docker::DEFAULT_RUNTIMES_DIR)]
    pub runtimes_dir: PathBuf,
    /// Where what was replaced is recorded for unconfigure
    #[arg(long, value_name = "PATH", default_value = docker::DEFAULT_RECORD)]
    pub record: PathBuf,
    /// The runtime to register [default: gpu-share-runtime beside this program]
    #[arg(long, value_name = "PATH")]
    pub runtime_path: Option<PathBuf>,
    /// Where daemon.json or --add-runtime flags get `nvidia`'s path: the link DIR/nvidia to the
    /// runtime, made by configure (with DIR if missing) and removed by unconfigure. dockerd runs
    /// a runtime with argv[0] = its path, so the runtime knows `nvidia`'s containers by
    /// argv[0]'s file name. Not used with the runtimes directory, whose `nvidia` entry is such a
    /// link already. Keep DIR off PATH
    #[arg(long, value_name = "DIR", default_value = docker::DEFAULT_CHANNEL_DIR)]
    pub channel_dir: PathBuf,
    /// Print the changes as a diff and change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Restart docker through systemd afterwards
    #[arg(long)]
    pub restart: bool,
}
