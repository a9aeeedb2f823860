//! The use cases, one module each: push, pull, copy, save, extract, verify. Each takes its inputs
//! already opened (an archive or the cache, a `Repository`) and a `Reporter`, and returns a
//! report; `batch` runs a set of blob transfers on the worker pool for push and pull.

pub mod batch;
pub mod bundle;
pub mod copy;
pub mod extract;
pub mod pull;
pub mod push;
pub mod save;
pub mod verify;
