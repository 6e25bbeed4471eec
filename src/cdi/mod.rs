//! NVIDIA's CDI specs: reading the ones `nvidia-ctk cdi generate` / `nvidia-cdi-refresh` write
//! (`etc/cdi`, `var/run/cdi` under `devices.root`), the digest that keeps a create from reading
//! YAML, which device is which GPU, and the injection a create uses (`devices.injection`).
//!
//! This is the I/O side of CDI: it reads specs, the digest and device nodes. Applying the edits
//! to config.json is `plan::cdi`'s (pure); choosing GPUs is `placement`'s. It never runs
//! nvidia-ctk and never writes a spec.

pub mod digest;
pub mod edits;
pub mod inject;
pub mod nodes;
pub mod packed;
pub mod report;
pub mod select;
pub mod spec;
pub mod store;
pub mod text;

pub use inject::{choose, CdiError, Injection, Required, Resolved};
pub use report::{Report, Severity};
