//! docker-image-pusher: move container images between archives, a local cache and registries.

pub mod archive;
pub mod digest;
pub mod error;
pub mod image;
pub mod layout;
pub mod reference;
