//! `gpu-share`: the operator's tool for hosts that run gpu-share-runtime.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use gpu_share::config::{Config, CONFIG_ENV};
use gpu_share::doctor::{self, Status};
use gpu_share::host;

/// Share NVIDIA GPUs between containers on Amazon ECS GPU instances.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// The configuration file [default: $GPU_SHARE_CONFIG, else /etc/gpu-share/config.toml]
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// The GPUs the runtime sees, with the live containers on each
    List {
        /// One JSON array of objects instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Check the driver, NVML, runc, the NVIDIA hook, the config, dockerd and the state file
    Doctor {
        /// dockerd's configuration, read when `docker info` does not answer
        #[arg(long, value_name = "PATH", default_value = "/etc/docker/daemon.json")]
        daemon_json: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config_path = cli.config.clone().unwrap_or_else(Config::path_from_env);
    match cli.command {
        Commands::List { json } => list(&config_path, json),
        Commands::Doctor { daemon_json } => {
            let checks = doctor::run(&doctor::Inputs {
                config_path,
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
    }
}

fn list(config_path: &std::path::Path, json: bool) -> ExitCode {
    let fail = |msg: String| {
        eprintln!("gpu-share: {msg}");
        ExitCode::FAILURE
    };
    let config = match Config::load(config_path) {
        Ok(c) => c,
        Err(e) => return fail(format!("{e} (set --config or {CONFIG_ENV})")),
    };
    let view = match host::discover(&config) {
        Ok(v) => v,
        Err(e) => return fail(e.to_string()),
    };
    let load = match host::live_load(&config) {
        Ok(l) => l,
        Err(e) => return fail(e.to_string()),
    };
    let rows = host::rows(&view.inventory, &load);
    if json {
        match serde_json::to_string_pretty(&rows) {
            Ok(text) => println!("{text}"),
            Err(e) => return fail(e.to_string()),
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
