//! Tests that need root and network or mount namespaces. Each is `#[ignore]`d, so a plain
//! `cargo test` lists them as ignored instead of passing them unrun; `make test` runs them
//! with `cargo test --test privileged -- --ignored` when it runs as root.

#[path = "../it/fixtures/mod.rs"]
mod fixtures;
#[path = "../it/support/mod.rs"]
mod support;

mod memory_cgroup;
mod registry_rules;
mod static_binary;
