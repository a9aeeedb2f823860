//! The tar header reader over arbitrary bytes: the extension-header guard in front of the
//! tar crate, read front to back and with seeks, as the archive scan does. Anything may
//! fail; nothing may panic, hang or allocate more than the guard's 1 MiB cap per header.
#![no_main]

use std::io::{Cursor, Read};

use docker_image_pusher::archive::headers::HeaderGuard;
use libfuzzer_sys::fuzz_target;

fn scan<R: Read>(entries: std::io::Result<tar::Entries<'_, R>>) {
    let Ok(entries) = entries else {
        return;
    };
    for entry in entries.take(1000) {
        let Ok(mut entry) = entry else {
            break;
        };
        let _ = (entry.path_bytes(), entry.link_name_bytes(), entry.size());
        let _ = std::io::copy(&mut entry.by_ref().take(1 << 16), &mut std::io::sink());
    }
}

fuzz_target!(|data: &[u8]| {
    let mut archive = tar::Archive::new(HeaderGuard::new(Cursor::new(data)));
    scan(archive.entries());
    let mut archive = tar::Archive::new(HeaderGuard::new(Cursor::new(data)));
    scan(archive.entries_with_seek());
});
