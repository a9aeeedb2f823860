//! docker-image-pusher: move container images between archives, a local cache and registries.
//!
//! A layer byte travels: archive entry (`archive`) -> blob task (`push`) -> worker
//! (`scheduler`) -> upload session (`upload`) -> registry (`registry`). Beside the workers,
//! `monitor` samples the transfer, resizes the worker gate in dynamic mode and feeds the
//! display (`progress`).
//!
//! With `--compress`, an uncompressed layer takes a detour: archive entry -> blocks
//! compressed in parallel (`compress`: the pool, ordered frames, deterministic output) ->
//! compressed stream uploaded while it is produced (`compressed_upload`) -> manifests
//! rebuilt around the compressed layers (`compress::manifest`) before they go up.
//!
//! Into the cache (`cache`, an OCI image layout): registry -> blob task (`pull`) -> worker
//! (`scheduler`) -> resumable download (`download`) -> partial file -> `blobs/sha256/`;
//! or archive entry -> verified copy (`extract`) -> `blobs/sha256/`. Out of it: `push`
//! (the cache is a `BlobSource`), `save` (one archive for a USB stick), `verify`.
//!
//! What must survive a crash lives in `state` (open upload sessions, where blobs are known
//! to be, under `<cache>/uploads/`); `interrupt` turns Ctrl-C into a stop at a safe point.
//! The compressed form of each layer compressed once is remembered in the cache
//! (`cache::variants`).

pub mod archive;
pub mod cache;
pub mod cli;
pub(crate) mod compress;
pub mod error;
pub mod image;
pub(crate) mod interrupt;
pub(crate) mod ops;
pub(crate) mod pool;
pub mod registry;
pub(crate) mod text;
pub(crate) mod transfer;
pub(crate) mod ui;

// Paths from before the layer folders, which fuzz targets, tests and examples name.
pub use image::{digest, layout, reference};
