//! Counted nouns as people write them: "1 image", "2 images", "3 retries".

/// `n` and the noun, plural unless `n` is 1: `count(1, "blob")` is "1 blob".
pub fn count(n: u64, noun: &str) -> String {
    format!("{n} {}", plural(n, noun))
}

/// The noun alone, plural unless `n` is 1 (for phrases like "all 5 blobs" built around it).
pub fn plural(n: u64, noun: &str) -> String {
    if n == 1 {
        return noun.to_string();
    }
    match noun.strip_suffix('y') {
        // "entry" -> "entries", but "day" -> "days".
        Some(stem) if !stem.ends_with(['a', 'e', 'o', 'u']) => format!("{stem}ies"),
        _ if noun.ends_with(['s', 'x']) || noun.ends_with("ch") => format!("{noun}es"),
        _ => format!("{noun}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_is_singular_and_everything_else_plural() {
        assert_eq!(count(1, "image"), "1 image");
        assert_eq!(count(0, "image"), "0 images");
        assert_eq!(count(5, "blob"), "5 blobs");
        assert_eq!(count(2, "entry"), "2 entries");
        assert_eq!(count(3, "retry"), "3 retries");
        assert_eq!(count(2, "day"), "2 days");
        assert_eq!(count(2, "match"), "2 matches");
        assert_eq!(plural(1, "task"), "task");
    }
}
