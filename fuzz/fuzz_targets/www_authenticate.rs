//! What registries send back that steers authentication and resumption:
//! `WWW-Authenticate` challenges, token responses, upload `Range` headers and error
//! bodies.
#![no_main]

use docker_image_pusher::registry::{auth, rules, transport};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = auth::parse_challenge(text);
        let _ = rules::parse_upload_range(text);
        let _ = transport::resolve_url("https://r.example.com/v2/a/blobs/uploads/", text);
    }
    let _ = auth::parse_token_response(data);
    let _ = transport::parse_error_body(data);
});
