//! Text from outside (registry error bodies, platform names and config fields from caches
//! and archives, image names from archives) made safe to print: whoever wrote it must not
//! be able to clear the screen, set the window title, hide text or flood the terminal.
//! Applied where such text enters a message, never to the tool's own output, so the
//! tool's colours stay.

/// Longest piece of outside text a message carries, in characters.
pub const MAX_CHARS: usize = 200;

/// What a control character or escape becomes: visible, and inert in every terminal.
const REPLACEMENT: char = '\u{FFFD}';

/// `text` with every control character replaced (line breaks and tabs by a space) and
/// cut to [`MAX_CHARS`] characters, ending in an ellipsis when cut.
pub fn sanitize(text: &str) -> String {
    sanitize_to(text, MAX_CHARS)
}

/// As [`sanitize`], cut to `max` characters.
pub fn sanitize_to(text: &str, max: usize) -> String {
    if max == 0 {
        return String::new();
    }
    let mut out = String::with_capacity(text.len().min(max.saturating_mul(4)));
    for (count, c) in text.chars().enumerate() {
        if count + 1 > max {
            out.pop();
            out.push('…');
            break;
        }
        out.push(match c {
            '\n' | '\r' | '\t' => ' ',
            c if is_hostile(c) => REPLACEMENT,
            c => c,
        });
    }
    out
}

/// The last line of defence where the tool writes a message: whatever outside text a
/// message carries that was not sanitized where it entered is made inert here. Line breaks
/// stay (reports span lines) and nothing is cut, since most of the text is the tool's own.
pub fn inert_lines(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(|c| c != '\n' && is_hostile(c)) {
        return std::borrow::Cow::Borrowed(text);
    }
    text.chars()
        .map(|c| match c {
            '\n' => '\n',
            '\t' => ' ',
            c if is_hostile(c) => REPLACEMENT,
            c => c,
        })
        .collect()
}

/// JSON text with the characters a terminal acts on written as `\\uXXXX` escapes. serde_json
/// escapes C0 controls itself but writes DEL, C1 controls and bidi overrides raw; escaped,
/// the document means the same to a parser and nothing to a terminal.
pub fn inert_json(json: &str) -> std::borrow::Cow<'_, str> {
    if !json.chars().any(|c| c != '\n' && is_hostile(c)) {
        return std::borrow::Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if c != '\n' && is_hostile(c) {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out.into()
}

/// Characters a terminal acts on rather than shows: C0 controls (ESC, BEL, BS...), DEL,
/// C1 controls (U+0080-U+009F, among them the one-character CSI and OSC), and the
/// bidirectional overrides that reorder what is shown around them.
fn is_hostile(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_keeps_its_meaning_and_loses_raw_terminal_controls() {
        let json = serde_json::to_string(&serde_json::json!({"a": "x\u{9b}2J\u{202e}"})).unwrap();
        let inert = inert_json(&json);
        assert!(!inert.chars().any(is_hostile), "{inert}");
        let back: serde_json::Value = serde_json::from_str(&inert).unwrap();
        assert_eq!(back["a"], "x\u{9b}2J\u{202e}");
    }

    #[test]
    fn message_lines_keep_their_breaks_and_lose_their_escapes() {
        assert!(matches!(
            inert_lines("plain\nlines"),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(
            inert_lines("error: \x1b]0;pwned\x07\nnext\u{9b}2J"),
            "error: \u{FFFD}]0;pwned\u{FFFD}\nnext\u{FFFD}2J"
        );
    }

    #[test]
    fn escape_sequences_and_control_characters_are_made_inert() {
        let hostile = "boom\x1b[2J\x1b]0;pwned\x07\u{9b}31m\u{7f}\x08done";
        let clean = sanitize(hostile);
        assert!(
            !clean
                .chars()
                .any(|c| c.is_control() || ('\u{80}'..='\u{9f}').contains(&c)),
            "{clean:?}"
        );
        assert!(
            clean.starts_with("boom\u{FFFD}[2J\u{FFFD}]0;pwned\u{FFFD}"),
            "{clean:?}"
        );
        assert!(clean.ends_with("done"), "{clean:?}");
    }

    #[test]
    fn line_breaks_become_spaces_and_ordinary_text_is_kept() {
        assert_eq!(sanitize("a\r\nb\tc"), "a  b c");
        assert_eq!(
            sanitize("linux/arm64/v8 ünïcödé 镜像"),
            "linux/arm64/v8 ünïcödé 镜像"
        );
        assert_eq!(sanitize("x\u{202E}gpj.exe"), "x\u{FFFD}gpj.exe");
    }

    #[test]
    fn long_text_is_cut_on_a_character_boundary_with_an_ellipsis() {
        assert_eq!(sanitize(&"a".repeat(MAX_CHARS)), "a".repeat(MAX_CHARS));
        let cut = sanitize(&"é".repeat(70_000));
        assert_eq!(cut.chars().count(), MAX_CHARS);
        assert!(cut.ends_with("é…"), "{cut}");
        assert_eq!(sanitize_to("abcdef", 3), "ab…");
        assert_eq!(sanitize_to("abc", 3), "abc");
        assert_eq!(sanitize_to("abc", 0), "");
    }
}
