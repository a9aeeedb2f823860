//! docker-image-pusher: move container images between archives, a local cache and registries.
//!
//! A layer byte travels: archive entry (`archive`) -> blob task (`push`) -> worker
//! (`scheduler`) -> upload session (`upload`) -> registry (`registry`). Beside the workers,
//! `monitor` samples the transfer, resizes the worker gate in dynamic mode and feeds the
//! display (`progress`).

pub mod archive;
pub mod cli;
pub mod commands;
pub mod digest;
pub mod error;
pub mod image;
pub mod layout;
pub mod monitor;
pub mod progress;
pub mod push;
pub mod reference;
pub mod registry;
pub mod resolve;
pub mod scheduler;
pub mod units;
pub mod upload;
