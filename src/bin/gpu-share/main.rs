//! `gpu-share`: the operator's tool for hosts that run gpu-share-runtime. Parses the command
//! line (`cli`) and dispatches to one function per command (`commands`).

mod cli;
mod commands;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Commands, GpuAction, Target};
use commands::*;
use gpu_share::doctor;

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
        Commands::Gpu {
            action: GpuAction::Clear { config, gpu, all },
        } => clear_gpu(&config.path(), gpu.as_deref(), all),
    }
}
