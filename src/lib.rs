//! gpu-share: an OCI runtime shim that lets several containers share NVIDIA GPUs.
//!
//! `gpu-share-runtime` is called exactly as runc is. For `create` and `run` it adds the GPU
//! device nodes, cgroup rules, `NVIDIA_VISIBLE_DEVICES` and the NVIDIA hook to the bundle's
//! `config.json`, then becomes runc with the same argv; every other command becomes runc at once.

pub mod atomic;
pub mod bump;
pub mod capping;
pub mod caps;
pub mod cdi;
pub mod config;
pub mod create;
pub mod decimal;
pub mod decision;
pub mod docker;
pub mod doctor;
pub mod gpu;
pub mod health;
pub mod host;
pub mod lock_file;
pub mod metrics;
pub mod mps;
pub mod placement;
pub mod plan;
pub mod read_whole;
pub mod request;
pub mod runc_call;
pub mod runc_exec;
pub mod runc_log;
pub mod shim_log;
pub mod spec;
pub mod timestamp;
