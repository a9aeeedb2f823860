//! docker-image-pusher: move container images between archives, a local cache and registries.
//!
//! The layers, top to bottom (a module uses only those below it; `docs/architecture.md`
//! has the tree): `cli` (flags and environment to options, one file per command) ->
//! `ops` (one use case each: push, pull, save, extract, verify) -> `transfer` (one blob,
//! resumable), `pool` (many blobs: scheduler and monitor), `ui` (what the terminal shows)
//! -> `registry` (the distribution API; `registry::http` holds auth, credentials, retry,
//! TLS), `cache` (the OCI-layout cache and the resume state), `archive` (archive readers),
//! `compress` (the codec) -> `image` (references, digests, manifests, layouts) -> `text`,
//! `error`, `interrupt`.
//!
//! A layer byte travels: archive entry (`archive`) -> blob task (`ops::push`) -> worker
//! (`pool::scheduler`, run by `ops::batch`) -> upload session (`transfer::upload`:
//! monolithic or chunks, saved and resumed by `transfer::session`) -> registry
//! (`registry`, over `registry::http::transport`). Beside the workers, `pool::monitor`
//! samples the transfer, resizes the worker gate in dynamic mode and feeds the display
//! (`ui::progress`).
//!
//! With `--compress`, an uncompressed layer takes a detour: archive entry -> blocks
//! compressed in parallel (`compress`: the pool, ordered frames, deterministic output) ->
//! compressed stream uploaded while it is produced (`transfer::compressed_upload`) ->
//! manifests rebuilt around the compressed layers (`compress::manifest`) before they go
//! up. Whether to compress at all is push policy (`ops::push::plan`).
//!
//! Into the cache (`cache`, an OCI image layout): registry -> blob task (`ops::pull`) ->
//! worker (`pool`) -> resumable download (`transfer::download`) -> partial file ->
//! `blobs/sha256/`; or archive entry -> verified copy (`ops::extract`) -> `blobs/sha256/`.
//! Out of it: `ops::push` (the cache is a `BlobSource`), `ops::save` (one archive for a USB
//! stick), `ops::verify`. Registry to registry (`ops::copy`): the source registry is the
//! `BlobSource` (`transfer::relay`, a GET resumed by range) of an ordinary push, nothing
//! stored on the way; `ops::push::all` pushes every image of a bundle on one pool.
//!
//! What must survive a crash lives in `cache::state` (open upload sessions, where blobs are
//! known to be, under `<cache>/uploads/`); `interrupt` turns Ctrl-C into a stop at a safe
//! point. The compressed form of each layer compressed once is remembered in the cache
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
