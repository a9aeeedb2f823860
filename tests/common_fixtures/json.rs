//! A tiny ordered JSON value.
//!
//! serde_json's `Value` sorts object keys (no `preserve_order` feature here),
//! but real tools emit Go struct field order (`schemaVersion`, `mediaType`,
//! `config`, `layers`). Manifest bytes are hashed, so key order is part of
//! the fixture: a pusher must upload them verbatim, never re-serialise.

/// Ordered JSON node. Rendering is infallible, unlike serde serialisation.
#[derive(Debug, Clone)]
pub enum J {
    Str(String),
    Num(u64),
    Bool(bool),
    Null,
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

impl J {
    pub fn s(v: impl Into<String>) -> J {
        J::Str(v.into())
    }

    /// Object from `(key, value)` pairs, keeping their order.
    pub fn obj<K: Into<String>>(fields: impl IntoIterator<Item = (K, J)>) -> J {
        J::Obj(fields.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// Object with keys sorted bytewise, as Go's encoding/json renders maps.
    pub fn map(mut fields: Vec<(String, J)>) -> J {
        fields.sort_by(|a, b| a.0.cmp(&b.0));
        J::Obj(fields)
    }

    pub fn strs<S: AsRef<str>>(items: &[S]) -> J {
        J::Arr(items.iter().map(|s| J::s(s.as_ref())).collect())
    }

    /// Compact rendering, like Go's `json.Marshal`.
    pub fn compact(&self) -> Vec<u8> {
        let mut out = String::new();
        self.render(&mut out, None, 0);
        out.into_bytes()
    }

    /// Indented rendering, like Go's `json.MarshalIndent(v, "", indent)`.
    pub fn pretty(&self, indent: &str) -> Vec<u8> {
        let mut out = String::new();
        self.render(&mut out, Some(indent), 0);
        out.into_bytes()
    }

    fn render(&self, out: &mut String, indent: Option<&str>, depth: usize) {
        match self {
            J::Str(s) => out.push_str(&quote(s)),
            J::Num(n) => out.push_str(&n.to_string()),
            J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            J::Null => out.push_str("null"),
            J::Arr(items) => render_seq(out, indent, depth, ('[', ']'), items, |o, it, d| {
                it.render(o, indent, d)
            }),
            J::Obj(fields) => render_seq(out, indent, depth, ('{', '}'), fields, |o, (k, v), d| {
                o.push_str(&quote(k));
                o.push(':');
                if indent.is_some() {
                    o.push(' ');
                }
                v.render(o, indent, d)
            }),
        }
    }
}

fn render_seq<T>(
    out: &mut String,
    indent: Option<&str>,
    depth: usize,
    brackets: (char, char),
    items: &[T],
    mut each: impl FnMut(&mut String, &T, usize),
) {
    out.push(brackets.0);
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        newline(out, indent, depth + 1);
        each(out, item, depth + 1);
    }
    if !items.is_empty() {
        newline(out, indent, depth);
    }
    out.push(brackets.1);
}

fn newline(out: &mut String, indent: Option<&str>, depth: usize) {
    if let Some(ind) = indent {
        out.push('\n');
        out.push_str(&ind.repeat(depth));
    }
}

/// JSON string literal; serde_json's escaping is infallible through `Value`.
fn quote(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}
