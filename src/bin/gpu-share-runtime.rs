//! `gpu-share-runtime`: runc's command line in, runc out.
//!
//! Pass-through commands exec runc before reading any file. `create`/`run` edit the bundle
//! first. A failure before runc runs is one line on stderr and in runc's `--log` (in its
//! `--log-format`), and exit status 1, with the bundle untouched.
//!
//! `no_main`: the C `main` below skips Rust's runtime start-up (stdio polling, ignoring SIGPIPE,
//! reading `/proc/self/maps` for the stack guard, the alternate signal stack). None of it is
//! needed to exec runc, it costs a good part of a millisecond, and leaving signal dispositions
//! alone means runc inherits exactly what its caller set.
//!
//! The allocator is a bump arena (`gpu_share::bump`): this process lives a millisecond and then
//! becomes runc, so freeing is nearly never worth its cost.
#![no_main]

use std::ffi::OsString;
use std::io::Write;

use gpu_share::bump::Bump;
use gpu_share::create;
use gpu_share::request::Channel;
use gpu_share::runc_call::{Action, RuncCall};
use gpu_share::runc_exec::{default_runc, exec_runc};
use gpu_share::runc_log;
use gpu_share::shim_log::one_line;

/// 1 MiB: its mapping (with the rest of `.bss`) stays well under 2 MiB, so no transparent huge
/// page can back it (a first touch would zero 2 MiB). A create uses under 100 KiB of it, and
/// anything past it goes to glibc's allocator.
#[global_allocator]
static ALLOC: Bump<{ 1024 * 1024 }> = Bump::new();

#[no_mangle]
pub extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    // glibc hands argv to Rust's std before `main` runs, so `args_os` works without lang_start.
    let mut argv = std::env::args_os();
    let argv0 = argv.next();
    let args: Vec<OsString> = argv.collect();
    let call = RuncCall::parse(&args);
    let runc = match call.action() {
        Action::PassThrough => default_runc().map_err(|e| e.to_string()),
        // The runtime name dockerd ran us as (argv[0]) is the channel no container can forge.
        Action::EditBundle => create::prepare(&call, Channel::from_argv0(argv0.as_deref()))
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

fn fail(call: &RuncCall, message: &str) -> libc::c_int {
    // The message carries values the container chose: one event stays one line.
    let line = format!("gpu-share-runtime: {}", one_line(message));
    // Never `eprintln!`: stderr may be a closed pipe (with SIGPIPE ignored, the write fails), and
    // a panic there would abort before runc's `--log` line, which is what the caller shows.
    let _ = writeln!(std::io::stderr(), "{line}");
    if let Some(log) = call.log_path() {
        runc_log::write_error(log, call.log_format, &line);
    }
    1
}
