//! Image reference and push target parsing, and the round trip of what parses.
#![no_main]

use docker_image_pusher::reference::{self, Reference};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(parsed) = Reference::parse(text) {
        let again = Reference::parse(&parsed.to_string()).expect("a printed reference parses");
        assert_eq!(again, parsed);
        let _ = parsed.api_host();
        let _ = parsed.with_tag("fuzz");
    }
    let _ = reference::parse_target(text);
    let _ = docker_image_pusher::archive::names_match(text, "latest");
});
