//! `gpu-share-runtime`: runc's command line in, runc out.
//!
//! Pass-through commands exec runc before reading any file. `create`/`run` edit the bundle
//! first. A failure before runc runs is one line on stderr and in runc's `--log` (in its
//! `--log-format`), and exit status 1, with the bundle untouched.

use std::ffi::OsString;
use std::process::ExitCode;

use gpu_share::create;
use gpu_share::runc_call::{Action, RuncCall};
use gpu_share::runc_exec::{default_runc, exec_runc};
use gpu_share::runc_log;

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let call = RuncCall::parse(&args);
    let runc = match call.action() {
        Action::PassThrough => default_runc().map_err(|e| e.to_string()),
        Action::EditBundle => create::prepare(&call)
            .map_err(|e| format!("{} {}: {e}", command_name(&call), call.container_label())),
    };
    let message = match runc {
        Ok(runc) => exec_runc(&runc, &args).to_string(),
        Err(message) => message,
    };
    fail(&call, &message)
}

fn command_name(call: &RuncCall) -> String {
    call.command
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn fail(call: &RuncCall, message: &str) -> ExitCode {
    let line = format!("gpu-share-runtime: {message}");
    eprintln!("{line}");
    if let Some(log) = call.log_path() {
        runc_log::write_error(log, call.log_format, &line);
    }
    ExitCode::FAILURE
}
