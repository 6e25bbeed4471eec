//! `gpu-share`: the operator's tool for hosts that run gpu-share-runtime.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use gpu_share::config::{Config, IsolationMode, CONFIG_ENV};
use gpu_share::docker::{self, Paths};
use gpu_share::doctor::{self, Status};
use gpu_share::host;
use gpu_share::metrics::agent::{self, Mode, Sink};
use gpu_share::mps;
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
}

#[derive(Subcommand)]
enum MpsAction {
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
            fix,
        } => run_doctor(
            &doctor::Inputs {
                config_path: config.path(),
                daemon_json,
            },
            fix,
        ),
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
        Commands::Mps { action } => mps_command(action),
    }
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("gpu-share: {msg}");
    ExitCode::FAILURE
}

/// With `fix`, the links first (one line per change, one per link it could not make), then the
/// report, which shows what the links are now.
fn run_doctor(inputs: &doctor::Inputs, fix: bool) -> ExitCode {
    let mut fix_failed = false;
    if fix {
        match doctor::fix(inputs) {
            Ok(fixed) => {
                for done in &fixed.done {
                    println!("fix: {done}");
                }
                for e in &fixed.failed {
                    eprintln!("gpu-share: {e}");
                }
                if fixed.done.is_empty() && fixed.failed.is_empty() {
                    println!(
                        "fix: {} /dev/char link(s) in place: nothing to change",
                        fixed.in_place
                    );
                }
                fix_failed = !fixed.failed.is_empty();
            }
            Err(e) => return fail(e),
        }
    }
    let checks = doctor::run(inputs);
    for c in &checks {
        println!("{c}");
    }
    if fix_failed || checks.iter().any(|c| c.status == Status::Fail) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
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
    let rows = host::rows(&view.inventory, &load);
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

fn mps_command(action: MpsAction) -> ExitCode {
    let path = match &action {
        MpsAction::Start { config, .. }
        | MpsAction::Stop { config }
        | MpsAction::Status { config } => config.path(),
    };
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => return fail(format!("{e} (set --config or {CONFIG_ENV})")),
    };
    let iso = &config.isolation;
    let mut failed = false;
    match action {
        MpsAction::Start { gpu, .. } => {
            if iso.mode != IsolationMode::Mps {
                println!(
                    "isolation.mode is \"{}\": no MPS daemon to start",
                    iso.mode.as_str()
                );
            }
            let started = match mps::start_defaults(&config, &gpu) {
                Ok(s) => s,
                Err(e) => return fail(e),
            };
            for (daemon, outcome) in started {
                match outcome {
                    Ok(mps::Started::Started) => println!("{}: started", daemon.name()),
                    Ok(mps::Started::AlreadyRunning) => {
                        println!("{}: already running", daemon.name())
                    }
                    Err(e) => {
                        eprintln!("gpu-share: {e}");
                        failed = true;
                    }
                }
            }
        }
        MpsAction::Stop { .. } => {
            for daemon in mps::owned(iso) {
                match daemon.stop(iso) {
                    Ok(mps::Stopped::Stopped) => println!("{}: stopped", daemon.name()),
                    Ok(mps::Stopped::NotRunning) => println!("{}: not running", daemon.name()),
                    Err(e) => {
                        eprintln!("gpu-share: {e}");
                        failed = true;
                    }
                }
            }
        }
        MpsAction::Status { .. } => {
            let daemons = mps::owned(iso);
            if daemons.is_empty() {
                println!("no MPS daemon under {}", iso.dir.display());
            }
            for daemon in daemons {
                match daemon.status(iso) {
                    Ok(servers) => println!(
                        "{}: answering, {} server(s), pipe dir {}",
                        daemon.name(),
                        servers.len(),
                        daemon.pipe_dir.display()
                    ),
                    Err(e) => {
                        println!("{}: down: {e}", daemon.name());
                        failed = true;
                    }
                }
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
