//! docker-image-pusher: move container images between archives, a local cache and registries.
pub mod reference;
