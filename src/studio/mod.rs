//! `dfl studio`: a local web app over the workspace, to watch training, clean facesets, label
//! XSeg masks and tune the merge by eye.
//!
//! The studio is a front end, like the CLI: it reads what the stages write and may call their
//! public APIs, and nothing else depends on it. It talks to a running `dfl train` only through
//! files (the model folder's `live.json` and `control.json`), never through shared memory, so
//! either side can die without harming the other.
//!
//! Security: it binds loopback by default; every request needs the session token
//! ([`auth`]); paths in requests resolve inside the workspace or are refused ([`paths`]);
//! nothing it serves runs a command.

mod assets;
pub mod auth;
mod faces;
mod labeller;
mod monitor;
pub mod paths;
mod server;
mod tuner;
pub mod watch;

pub use server::{Running, StudioError, StudioOptions, start};
