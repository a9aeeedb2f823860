//! Test fixtures that write container image archives in the formats real
//! tools produce, for the pusher's integration tests.
//!
//! Use from a test crate with `mod common_fixtures;`.
//!
//! | writer | produced by |
//! | --- | --- |
//! | [`write_docker_legacy`] | `docker save`, Docker < 25 |
//! | [`write_docker25`] | `docker save`, Docker 25+ with the graphdriver store |
//! | [`write_docker_containerd_store`] | `docker save`, Docker with the containerd store (29 default) |
//! | [`write_oci_archive`] / [`write_oci_layout_dir`] | `skopeo copy ... oci-archive:` / `oci:` |
//! | [`write_ggcr_tarball`] | go-containerregistry `tarball.Write` (crane, ko) |
//! | [`skopeo_docker_archive`] / [`skopeo_oci_archive`] | the real containers/image writers |
//! | `hostile_*` | broken or malicious archives for error paths |
//!
//! Every writer returns an [`Expected`]: the digests, sizes and media types
//! a correct push must produce.

// Each test crate includes this module and uses a different subset of it,
// so unused items and re-exports are expected (`unused_imports` is allowed
// on the `pub use` lines only, to keep real unused imports visible).
#![allow(dead_code)]

mod containerd;
mod docker;
mod expect;
mod graphs;
mod hostile;
mod image;
mod json;
mod oci;
mod rng;
mod tarw;

#[allow(unused_imports)]
pub use containerd::{Attestations, ContainerdOpts, write_docker_containerd_store};
#[allow(unused_imports)]
pub use docker::{write_docker_legacy, write_docker25, write_ggcr_tarball};
#[allow(unused_imports)]
pub use expect::*;
#[allow(unused_imports)]
pub use graphs::*;
#[allow(unused_imports)]
pub use hostile::*;
#[allow(unused_imports)]
pub use image::{
    ImageRef, IndexEntry, TestImage, TestLayer, digest, digest_hex, docker_manifest, hex,
    index_json, manifest_media_type, oci_index, oci_manifest, oci_manifest_from, sha256_hex,
};
#[allow(unused_imports)]
pub use json::J;
#[allow(unused_imports)]
pub use oci::{
    OciEntry, expected_skopeo_docker_archive, skopeo_available, skopeo_copy_refs,
    skopeo_docker_archive, skopeo_inspect_raw, skopeo_oci_archive, write_oci_archive,
    write_oci_layout_dir,
};
#[allow(unused_imports)]
pub use rng::{Rng, layer_tar};
#[allow(unused_imports)]
pub use tarw::{TarEntry, gzip_bytes, gzip_file, tar_bytes, write_tar};
