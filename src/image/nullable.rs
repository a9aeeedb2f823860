//! Go writes an empty slice or map as `null` (`"manifests": null` in a Docker 25
//! `docker save` of an untagged image, `"RepoTags": null`, `"annotations": null`). Every
//! list or map field of a document from outside reads `null` as empty through this one
//! helper: `#[serde(default, deserialize_with = "crate::image::nullable::or_empty")]`.

use serde::{Deserialize, Deserializer};

/// A field that may be absent, `null` or a value: the first two read as `T::default()`.
pub fn or_empty<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    #[derive(Deserialize)]
    struct Doc {
        #[serde(default, deserialize_with = "super::or_empty")]
        list: Vec<u32>,
        #[serde(default, deserialize_with = "super::or_empty")]
        map: BTreeMap<String, String>,
    }

    fn parse(text: &str) -> Doc {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn null_absent_and_empty_all_read_as_empty() {
        for text in [
            r#"{"list": null, "map": null}"#,
            "{}",
            r#"{"list": [], "map": {}}"#,
        ] {
            let doc = parse(text);
            assert!(doc.list.is_empty() && doc.map.is_empty(), "{text}");
        }
    }

    #[test]
    fn values_are_kept_and_wrong_types_still_fail() {
        let doc = parse(r#"{"list": [1, 2], "map": {"a": "b"}}"#);
        assert_eq!(doc.list, [1, 2]);
        assert_eq!(doc.map["a"], "b");
        assert!(serde_json::from_str::<Doc>(r#"{"list": "x"}"#).is_err());
    }
}
