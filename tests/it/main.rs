//! The integration tests, one crate: the support code and the fixtures compile once, and
//! each module below holds the tests of one area, named for the behaviour they pin down.
//! Tests that need root and namespaces live in the `privileged` crate.

mod fixtures;
mod support;

mod analytics_report;
mod body_caps;
mod bounded_input;
mod cache_commands;
mod cache_extract;
mod cache_pull;
mod cache_trust;
mod compression;
mod compression_memory;
mod copy;
mod credential_safety;
mod fault_tolerance;
mod field_archives;
mod fixtures_selftest;
mod fuzz_regressions;
mod harness_selftest;
mod honest_flags;
mod hostile_input;
mod incremental_bundles;
mod mirror;
mod no_downgrade;
mod push_auth;
mod push_cli;
mod push_engine;
mod push_formats;
mod remote_text;
mod resume;
mod retry_budget;
mod split_volumes;
