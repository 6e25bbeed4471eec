//! What each `gpu-share` command does: load the config, call the library, print, exit status.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::cli::{DockerArgs, MpsAction, Output};

use gpu_share::config::{Config, IsolationMode, CONFIG_ENV};
use gpu_share::docker::{self, Paths};
use gpu_share::doctor::{self, Status};
use gpu_share::health::{self, clear::Target as GpuTarget};
use gpu_share::host;
use gpu_share::metrics::agent::{self, Mode, Sink};
use gpu_share::mps;
use gpu_share::runc_exec;

pub fn clear_gpu(config_path: &Path, gpu: Option<&str>, all: bool) -> ExitCode {
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

pub fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("gpu-share: {msg}");
    ExitCode::FAILURE
}

/// With `fix`, the links first (one line per change, one per link it could not make), then the
/// report, which shows what the links are now.
pub fn run_doctor(inputs: &doctor::Inputs, fix: bool) -> ExitCode {
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

pub fn list(config_path: &Path, json: bool) -> ExitCode {
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

pub fn run_metrics(config_path: &Path, once: bool, output: Output) -> ExitCode {
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
pub fn installed_runtime() -> PathBuf {
    std::env::current_exe()
        .ok()
        .map(|me| me.with_file_name(runc_exec::RUNTIME_NAME))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(runc_exec::RUNTIME_INSTALLED))
}

pub fn configure_docker(args: &DockerArgs, configure: bool) -> ExitCode {
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

pub fn mps_command(action: MpsAction) -> ExitCode {
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
