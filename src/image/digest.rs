//! Content digests (`sha256:<hex>`): parsing, computing, and verifying while streaming.

use std::fmt;
use std::io::{self, Read};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

/// A validated `sha256:<64 lowercase hex>` digest. Only sha256 is supported: it is what
/// every registry and every image tool writes, and accepting others would mean
/// advertising digests we cannot verify.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

impl Digest {
    pub fn parse(text: &str) -> Result<Digest, String> {
        let Some((algorithm, hex)) = text.split_once(':') else {
            return Err(format!(
                "\"{}\" is not a digest (expected sha256:<hex>)",
                shorten(text)
            ));
        };
        if algorithm != "sha256" {
            return Err(format!(
                "digest algorithm \"{}\" is not supported (only sha256)",
                shorten(algorithm)
            ));
        }
        if hex.len() != 64
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(format!(
                "\"{}\" is not a sha256 digest (expected 64 lowercase hex characters)",
                shorten(text)
            ));
        }
        Ok(Digest(text.to_string()))
    }

    pub fn of(bytes: &[u8]) -> Digest {
        Digest::from_hasher(Sha256::new_with_prefix(bytes))
    }

    fn from_hasher(hasher: Sha256) -> Digest {
        Digest(format!("sha256:{}", hex(&hasher.finalize())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The hex part, as used in blob file names (`blobs/sha256/<hex>`).
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    /// A short form for progress lines: the first 12 hex characters, as docker prints.
    pub fn short(&self) -> &str {
        &self.hex()[..12]
    }
}

fn shorten(text: &str) -> String {
    let mut short: String = text.chars().take(80).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    short
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Digest, D::Error> {
        let text = String::deserialize(deserializer)?;
        Digest::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// An incremental sha256 that knows how many bytes it has seen, so an upload that
/// restarts from an offset can tell whether the hash state still matches.
#[derive(Clone, Default)]
pub struct Hasher {
    state: Sha256,
    position: u64,
}

impl Hasher {
    pub fn new() -> Hasher {
        Hasher::default()
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.state.update(bytes);
        self.position += bytes.len() as u64;
    }

    pub fn position(&self) -> u64 {
        self.position
    }

    pub fn digest(&self) -> Digest {
        Digest::from_hasher(self.state.clone())
    }
}

/// Hashes everything read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Hasher::new(),
        }
    }

    pub fn hasher(&self) -> &Hasher {
        &self.hasher
    }

    pub fn into_parts(self) -> (R, Hasher) {
        (self.inner, self.hasher)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Reads exactly `expected_size` bytes and fails at the end unless they hash to
/// `expected`. Failing inside `read` matters: an upload body that errors before its last
/// byte is never committed by the registry, so corrupt input cannot become a blob.
pub struct VerifyingReader<R> {
    inner: HashingReader<io::Take<R>>,
    expected: Digest,
    expected_size: u64,
}

impl<R: Read> VerifyingReader<R> {
    pub fn new(inner: R, expected: Digest, expected_size: u64) -> Self {
        VerifyingReader {
            inner: HashingReader::new(inner.take(expected_size)),
            expected,
            expected_size,
        }
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let hasher = self.inner.hasher();
        // Check on the read that completes the blob, not on a later one: an HTTP client
        // stops reading at Content-Length, so the last bytes must be withheld here for
        // corrupt content never to reach the registry whole.
        let complete = hasher.position() == self.expected_size;
        if (n > 0 && complete) || (n == 0 && !buf.is_empty()) {
            if !complete {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "blob {} ended after {} of {} bytes",
                        self.expected.short(),
                        hasher.position(),
                        self.expected_size
                    ),
                ));
            }
            let actual = hasher.digest();
            if actual != self.expected {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    DigestMismatch {
                        expected: self.expected.clone(),
                        actual,
                    },
                ));
            }
        }
        Ok(n)
    }
}

/// Carried inside an `io::Error` so callers can tell corrupt content from a failed read.
#[derive(Debug, Clone)]
pub struct DigestMismatch {
    pub expected: Digest,
    pub actual: Digest,
}

impl fmt::Display for DigestMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "content of {} hashes to {}", self.expected, self.actual)
    }
}

impl std::error::Error for DigestMismatch {}

/// Finds a `DigestMismatch` inside an I/O error, however deeply it was wrapped.
pub fn find_mismatch(err: &(dyn std::error::Error + 'static)) -> Option<DigestMismatch> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(m) = e.downcast_ref::<DigestMismatch>() {
            return Some(m.clone());
        }
        if let Some(io) = e.downcast_ref::<io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(m) = inner.downcast_ref::<DigestMismatch>()
        {
            return Some(m.clone());
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn hashes_like_sha256sum() {
        assert_eq!(Digest::of(b"").as_str(), EMPTY);
    }

    #[test]
    fn rejects_malformed_and_foreign_digests() {
        assert!(Digest::parse(EMPTY).is_ok());
        for bad in [
            "",
            "sha256",
            "sha256:",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:e3b0",
            "md5:d41d8cd98f00b204e9800998ecf8427e",
            "sha256:../../../../etc/passwd",
        ] {
            assert!(Digest::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn verifying_reader_fails_at_the_end_on_wrong_content() {
        let expected = Digest::of(b"hello");
        let mut ok = VerifyingReader::new(&b"hello"[..], expected.clone(), 5);
        io::copy(&mut ok, &mut io::sink()).unwrap();

        let mut bad = VerifyingReader::new(&b"hellO"[..], expected.clone(), 5);
        let err = io::copy(&mut bad, &mut io::sink()).unwrap_err();
        assert!(find_mismatch(&err).is_some());

        let mut short = VerifyingReader::new(&b"hell"[..], expected.clone(), 5);
        let err = io::copy(&mut short, &mut io::sink()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);

        // A reader that stops at the length (as an HTTP body does) still never gets
        // the last bytes of wrong content.
        let mut bad = VerifyingReader::new(&b"hellO"[..], expected, 5);
        let mut exact = [0u8; 5];
        assert!(bad.read(&mut exact).is_err());
    }
}
