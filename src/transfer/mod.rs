//! One blob at a time, resumable: `upload` (monolithic or chunked, sessions saved for a
//! later run), `compressed_upload` (a layer compressed while it goes up) and `download`
//! (into a partial file in the cache, resumed by range).

pub mod compressed_upload;
pub mod download;
pub mod upload;
