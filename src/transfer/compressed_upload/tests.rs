use super::*;
use crate::compress::Algorithm;
use crate::image::media;
use crate::image::test_doubles::OneLayer;

/// The chunks of the stream from `from` on, with their bytes read as each arrives (the
/// producer reuses a chunk's spill slot once the next chunk is taken).
fn chunks_of(
    source: &OneLayer,
    layer: &Blob,
    from: u64,
    chunk_size: usize,
) -> Vec<(Chunk, Vec<u8>)> {
    let compressor = Compressor::new(2, crate::compress::budget::DEFAULT_LIMIT);
    let reader = CompressedReader::open(
        &compressor,
        Recipe::of(Algorithm::Gzip),
        source,
        layer,
        Arc::new(Frames::default()),
        0,
    )
    .unwrap();
    let spill = Spill::create(None).unwrap();
    let (sender, receiver) = crossbeam_channel::bounded(0);
    std::thread::scope(|scope| {
        scope.spawn(move || fill_chunks(reader, from, chunk_size, &spill, &sender).unwrap());
        receiver
            .iter()
            .map(|c| {
                let chunk = c.unwrap();
                let bytes = read_chunk(&chunk);
                (chunk, bytes)
            })
            .collect()
    })
}

fn read_chunk(chunk: &Chunk) -> Vec<u8> {
    let mut bytes = Vec::new();
    chunk
        .spill
        .reader(chunk.at, chunk.length)
        .read_to_end(&mut bytes)
        .unwrap();
    bytes
}

fn chunk(start: u64, length: usize, last: bool) -> Chunk {
    let spill = Spill::create(None).unwrap();
    spill.write_at(&vec![7; length], 0).unwrap();
    Chunk {
        start,
        length: length as u64,
        at: 0,
        spill,
        last,
        digest: last.then(|| Digest::of(b"stream")),
        consumed: 0,
    }
}

#[test]
fn stream_chunks_stay_small_unless_the_registry_wants_them_large() {
    let rules = |chunk_size| UploadRules {
        chunk_size,
        allow_patch: true,
        last_chunk_in_put: false,
        trust_range: true,
    };
    assert_eq!(stream_chunk_size(&rules(32 << 20), None), 16 << 20);
    assert_eq!(stream_chunk_size(&rules(4 << 20), None), 4 << 20);
    assert_eq!(
        stream_chunk_size(&rules(32 << 20), Some(24 << 20)),
        24 << 20
    );
}

#[test]
fn after_a_failure_the_registry_offset_picks_what_to_send() {
    let middle = chunk(100, 50, false);
    assert!(matches!(next_step(&middle, 99), Step::Recompress));
    assert!(matches!(next_step(&middle, 151), Step::Recompress));
    assert!(matches!(next_step(&middle, 150), Step::Next));
    match next_step(&middle, 120) {
        Step::Send(rest) => {
            assert_eq!((rest.start, rest.length), (120, 30));
            assert_eq!(read_chunk(&rest), vec![7; 30]);
        }
        _ => panic!("the rest of the chunk is sent"),
    }
    // The last chunk all held: only the closing request is left.
    match next_step(&chunk(100, 50, true), 150) {
        Step::Send(rest) => {
            assert!(rest.is_empty() && rest.last && rest.digest.is_some())
        }
        _ => panic!("the closing request is sent"),
    }
}

#[test]
fn chunks_cover_the_stream_from_the_offset_and_the_last_carries_its_digest() {
    let bytes: Vec<u8> = (0..9_000_000u32)
        .map(|i| (i % 97 + i / 5000) as u8)
        .collect();
    let source = OneLayer(bytes.clone());
    let layer = Blob {
        digest: Digest::of(&bytes),
        size: bytes.len() as u64,
        media_type: media::OCI_LAYER.into(),
    };
    let whole: Vec<u8> = chunks_of(&source, &layer, 0, 1 << 30)
        .into_iter()
        .flat_map(|(_, bytes)| bytes)
        .collect();
    let chunk_size = whole.len() / 3 + 1;
    for from in [0, 1000, chunk_size as u64] {
        let chunks = chunks_of(&source, &layer, from, chunk_size);
        assert_eq!(chunks[0].0.start, from);
        let joined: Vec<u8> = chunks.iter().flat_map(|(_, b)| b.clone()).collect();
        assert!(joined == whole[from as usize..], "from {from}");
        assert!(chunks.iter().all(|(c, b)| c.length == b.len() as u64));
        let chunks: Vec<Chunk> = chunks.into_iter().map(|(c, _)| c).collect();
        let last = chunks.last().unwrap();
        assert!(
            chunks[..chunks.len() - 1]
                .iter()
                .all(|c| !c.last && c.digest.is_none())
        );
        assert!(last.last);
        assert_eq!(last.digest, Some(Digest::of(&whole)));
        assert_eq!(last.consumed, layer.size);
    }
    // A stream that is an exact number of chunks still ends with its last chunk.
    let exact = chunks_of(&source, &layer, 0, whole.len());
    assert_eq!(exact.len(), 1);
    assert!(exact[0].0.last);
}
