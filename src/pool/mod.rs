//! Many blobs at once: `scheduler` (the queue, largest first, the gate that decides how
//! many run, the workers) and `monitor` (samples throughput, resizes the gate in dynamic
//! mode, explains what limited the transfer).

pub mod monitor;
pub mod scheduler;
