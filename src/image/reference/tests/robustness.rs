//! Random and pathological input: no panic, and valid references round-trip.

use super::*;

/// Deterministic xorshift so failures reproduce without a rand crate.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

fn garbage(rng: &mut XorShift) -> String {
    let digest = format!("@{SHA256}");
    let tokens = [
        "a",
        "b",
        "z9",
        "0",
        "A",
        "Z",
        ".",
        "-",
        "--",
        "_",
        "__",
        "/",
        "/",
        "/",
        ":",
        ":",
        "@",
        "[",
        "]",
        "::1",
        "[::1]",
        "localhost",
        "docker.io",
        "index.docker.io",
        "5000",
        "library",
        "sha256:",
        &digest,
        "é",
        "🐳",
        "ß",
        " ",
        "\t",
        "\u{0}",
        "%",
        "#",
        "?",
        "://",
        "http://",
        "https://",
        "v2",
        "ex.com",
    ];
    let len = rng.next() % 12;
    (0..len).map(|_| rng.pick(&tokens)).collect()
}

#[test]
fn garbage_never_panics_and_valid_refs_round_trip() {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let mut accepted = 0;
    for _ in 0..50_000 {
        let input = garbage(&mut rng);
        let _ = parse_target(&input);
        let Ok(r) = Reference::parse(&input) else {
            continue;
        };
        accepted += 1;
        let shown = r.to_string();
        let again =
            Reference::parse(&shown).unwrap_or_else(|e| panic!("{input:?} -> {shown:?}: {e}"));
        assert_eq!(again, r, "{input:?} -> {shown:?}");
        assert_eq!(again.to_string(), shown);
    }
    assert!(
        accepted > 500,
        "generator too hostile: only {accepted} accepted"
    );
}

#[test]
fn pathological_inputs_do_not_panic() {
    let inputs = [
        "/".repeat(100_000),
        "[".repeat(100_000),
        ":".repeat(100_000),
        "@".repeat(100_000),
        "a".repeat(1_000_000),
        format!("{}a", "a-".repeat(100_000)),
        "é".repeat(10_000),
        "[]".to_string(),
        "[".to_string(),
        "]".to_string(),
        "[/".to_string(),
        "]/a".to_string(),
        "a:/".to_string(),
    ];
    for input in &inputs {
        assert!(Reference::parse(input).is_err());
        assert!(parse_target(input).is_err());
    }
}
