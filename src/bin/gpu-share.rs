//! `gpu-share`: the operator's tool for hosts that run gpu-share-runtime.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use gpu_share::config::{Config, CONFIG_ENV};
use gpu_share::docker::{self, Paths};
use gpu_share::doctor::{self, Status};
use gpu_share::health::{self, clear::Target as GpuTarget};
use gpu_share::host;
use gpu_share::metrics::agent::{self, Mode, Sink};
use gpu_share::runc_exec;

/// Share NVIDIA GPUs between containers on Amazon ECS GPU instances.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

/// gpu-share's own configuration file.
#[derive(Args)]
struct ConfigArg {
    /// The configuration file [default: $GPU_SHARE_CONFIG, else /etc/gpu-share/config.toml]
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
}

impl ConfigArg {
    fn path(&self) -> PathBuf {
        self.config.clone().unwrap_or_else(Config::path_from_env)
    }
}

#[derive(Subcommand)]
enum Commands {
    /// The GPUs the runtime sees, with the live containers on each
    List {
        #[command(flatten)]
        config: ConfigArg,
        /// One JSON array of objects instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Check the driver, NVML, runc, the NVIDIA hook, the config, dockerd and the state file
    Doctor {
        #[command(flatten)]
        config: ConfigArg,
        /// dockerd's configuration, read when `docker info` does not answer
        #[arg(long, value_name = "PATH", default_value = docker::DEFAULT_DAEMON_JSON)]
        daemon_json: PathBuf,
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
    /// GPU health: clear a GPU the metrics agent marked unhealthy after a critical Xid
    Gpu {
        #[command(subcommand)]
        action: GpuAction,
    },
}

#[derive(Subcommand)]
enum GpuAction {
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
enum Output {
    Cloudwatch,
    Emf,
    Json,
}

#[derive(Subcommand)]
enum Target {
    /// dockerd: /etc/docker-runtimes.d, OPTIONS in /etc/sysconfig/docker, or daemon.json
    Docker(DockerArgs),
}

#[derive(Args)]
struct DockerArgs {
    /// dockerd's daemon.json
    #[arg(long = "config", value_name = "PATH", default_value = docker::DEFAULT_DAEMON_JSON)]
    daemon_json: PathBuf,
    /// The file whose OPTIONS dockerd's unit passes as flags
    #[arg(long, value_name = "PATH", default_value = docker::DEFAULT_SYSCONFIG)]
    sysconfig: PathBuf,
    /// The ECS-optimized AMI's runtimes directory (each executable becomes --add-runtime)
    #[arg(long, value_name = "DIR", default_value = docker::DEFAULT_RUNTIMES_DIR)]
    runtimes_dir: PathBuf,
    /// Where what was replaced is recorded for unconfigure
    #[arg(long, value_name = "PATH", default_value = docker::DEFAULT_RECORD)]
    record: PathBuf,
    /// The runtime to register [default: gpu-share-runtime beside this program]
    #[arg(long, value_name = "PATH")]
    runtime_path: Option<PathBuf>,
    /// Where daemon.json or --add-runtime flags get `nvidia`'s path: the link DIR/nvidia to the
    /// runtime, made by configure (with DIR if missing) and removed by unconfigure. dockerd runs
    /// a runtime with argv[0] = its path, so the runtime knows `nvidia`'s containers by
    /// argv[0]'s file name. Not used with the runtimes directory, whose `nvidia` entry is such a
    /// link already. Keep DIR off PATH
    #[arg(long, value_name = "DIR", default_value = docker::DEFAULT_CHANNEL_DIR)]
    channel_dir: PathBuf,
    /// Print the changes as a diff and change nothing
    #[arg(long)]
    dry_run: bool,
    /// Restart docker through systemd afterwards
    #[arg(long)]
    restart: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Commands::List { config, json } => list(&config.path(), json),
        Commands::Doctor {
            config,
            daemon_json,
        } => {
            let checks = doctor::run(&doctor::Inputs {
                config_path: config.path(),
                daemon_json,
            });
            for c in &checks {
                println!("{c}");
            }
            if checks.iter().any(|c| c.status == Status::Fail) {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Commands::Metrics {
            config,
            once,
            output,
        } => run_metrics(&config.path(), once, output),
        Commands::Configure {
            target: Target::Docker(args),
        } => configure_docker(&args, true),
        Commands::Unconfigure {
            target: Target::Docker(args),
        } => configure_docker(&args, false),
        Commands::Gpu {
            action: GpuAction::Clear { config, gpu, all },
        } => clear_gpu(&config.path(), gpu.as_deref(), all),
    }
}

fn clear_gpu(config_path: &Path, gpu: Option<&str>, all: bool) -> ExitCode {
    let target = match (all, gpu) {
        (true, _) => GpuTarget::All,
        (false, Some(g)) => match GpuTarget::parse(g) {
            Some(t) => t,
            None => {
                return fail(format!(
                    "gpu clear {g:?}: give a GPU index or a GPU-... UUID"
                ))
            }
        },
        (false, None) => return fail("gpu clear: give a GPU index or UUID, or --all"),
    };
    let config = match Config::load(config_path) {
        Ok(c) => c,
        Err(e) => return fail(format!("{e} (set --config or {CONFIG_ENV})")),
    };
    match health::clear::clear(&config.state.dir, &target) {
        Ok(cleared) if cleared.is_empty() => println!("no GPU was marked unhealthy"),
        Ok(cleared) => {
            for u in cleared {
                println!(
                    "GPU {} cleared (was {})",
                    u.index,
                    health::report::describe(&u)
                );
            }
        }
        Err(e) => return fail(e),
    }
    ExitCode::SUCCESS
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("gpu-share: {msg}");
    ExitCode::FAILURE
}

fn list(config_path: &Path, json: bool) -> ExitCode {
    let config = match Config::load(config_path) {
        Ok(c) => c,
        Err(e) => return fail(format!("{e} (set --config or {CONFIG_ENV})")),
    };
    let view = match host::discover(&config) {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    host::refresh_cache(&config, &view);
    let load = match host::live_load(&config) {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
    let health = host::health(&config);
    let rows = host::rows(&view.inventory, &load, &health);
    if json {
        match serde_json::to_string_pretty(&rows) {
            Ok(text) => println!("{text}"),
            Err(e) => return fail(e),
        }
    } else {
        print!("{}", host::table(&rows));
        let source = view.inventory.source.as_str();
        match &view.nvml_error {
            None => println!("source: {source}"),
            Some(e) => println!("source: {source} ({e})"),
        }
    }
    ExitCode::SUCCESS
}

fn run_metrics(config_path: &Path, once: bool, output: Output) -> ExitCode {
    let config = match Config::load(config_path) {
        Ok(c) => c,
        Err(e) => return fail(format!("{e} (set --config or {CONFIG_ENV})")),
    };
    let sink = match output {
        Output::Cloudwatch => Sink::CloudWatch,
        Output::Emf => Sink::Emf,
        Output::Json => Sink::Json,
    };
    let mode = if once { Mode::Once } else { Mode::Forever };
    match agent::run(&config, sink, mode) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

/// The runtime to register: beside this program, else where `make install` puts it (the same
/// rule `doctor` uses to tell the shim from runc, `runc_exec::NotRunc::installed_runtime`).
fn installed_runtime() -> PathBuf {
    std::env::current_exe()
        .ok()
        .map(|me| me.with_file_name(runc_exec::RUNTIME_NAME))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(runc_exec::RUNTIME_INSTALLED))
}

fn configure_docker(args: &DockerArgs, configure: bool) -> ExitCode {
    // dockerd runs from `/`, and a relative path has no parent to make: every path is made
    // absolute against where this runs before anything is read or written.
    let abs = |p: &PathBuf| std::path::absolute(p).map_err(|e| format!("{}: {e}", p.display()));
    let absolute = || -> Result<(Paths, PathBuf), String> {
        let runtime = args.runtime_path.clone().unwrap_or_else(installed_runtime);
        Ok((
            Paths {
                daemon_json: abs(&args.daemon_json)?,
                sysconfig: abs(&args.sysconfig)?,
                runtimes_dir: abs(&args.runtimes_dir)?,
                record: abs(&args.record)?,
                channel_dir: abs(&args.channel_dir)?,
            },
            abs(&runtime)?,
        ))
    };
    let (paths, runtime) = match absolute() {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let planned = docker::read_current(&paths).and_then(|current| {
        if configure {
            docker::plan_configure(&paths, &current, &runtime).map(|(edits, _)| edits)
        } else {
            docker::plan_unconfigure(&paths, &current)
        }
    });
    let edits = match planned {
        Ok(e) => e,
        Err(e) => return fail(e),
    };
    if edits.is_empty() {
        println!("dockerd is already configured: nothing to change");
        return ExitCode::SUCCESS;
    }
    print!("{}", docker::describe(&edits));
    if args.dry_run {
        return ExitCode::SUCCESS;
    }
    if let Err(e) = docker::apply(&edits) {
        return fail(e);
    }
    if args.restart {
        let ok = std::process::Command::new("systemctl")
            .args(["restart", "docker"])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return fail("systemctl restart docker failed; restart docker to apply the change");
        }
    } else {
        println!("restart docker to apply the change (or pass --restart)");
    }
    ExitCode::SUCCESS
}
