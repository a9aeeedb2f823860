//! One blob at a time, resumable: `upload` (monolithic or chunked), `compressed_upload`
//! (a layer compressed while it goes up), both over the one `session` (saved for a later
//! run, found again, continued, closed), and `download` (into a partial file in the
//! cache, resumed by range); `relay` reads a blob from a registry for an upload to another
//! (a copy), resumed by range.

pub mod compressed_upload;
pub mod download;
pub(crate) mod relay;
pub(crate) mod session;
pub mod upload;
