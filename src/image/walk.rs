//! Walking an image graph: an index names manifests (or further indexes), and the same
//! manifest may be named many times. The walk is over a graph, not a tree: every digest
//! is fetched once, with an explicit stack (nesting comes from the input, so recursion
//! would let an archive overflow the stack), and depth, fan-out and the number of
//! manifests are capped, so a crafted index cannot make a walk run for minutes.

use std::collections::{HashMap, HashSet};

use super::{Descriptor, ManifestKind};
use crate::error::{Error, Result};
use crate::image::digest::Digest;

/// Indexes nest (an index of indexes is legal); real images stop at two levels.
pub const MAX_DEPTH: usize = 8;
/// Entries of one index; the largest real multi-platform indexes list a few dozen.
pub const MAX_FAN_OUT: usize = 1024;
/// Distinct manifests in one image.
pub const MAX_MANIFESTS: usize = 4096;

/// A manifest as read from its source.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub media_type: String,
    pub bytes: Vec<u8>,
    pub kind: ManifestKind,
}

/// One manifest of the graph, named by the first descriptor that reached it.
#[derive(Debug, Clone)]
pub struct Node {
    pub descriptor: Descriptor,
    pub depth: usize,
    /// `None` when the source lacks the manifest.
    pub content: Option<Parsed>,
}

impl Node {
    /// The entries of an index (empty for an image manifest or an absent one).
    pub fn children(&self) -> &[Descriptor] {
        match &self.content {
            Some(Parsed {
                kind: ManifestKind::Index(index),
                ..
            }) => &index.manifests,
            _ => &[],
        }
    }
}

/// Every manifest reachable from a root, each once, children before the index that
/// names them (siblings in index order) and the root last.
#[derive(Debug, Default)]
pub struct Graph {
    pub nodes: Vec<Node>,
    positions: HashMap<Digest, usize>,
}

impl Graph {
    pub fn get(&self, digest: &Digest) -> Option<&Node> {
        self.positions.get(digest).map(|&i| &self.nodes[i])
    }

    pub fn root(&self) -> &Node {
        self.nodes.last().expect("a walk always reaches its root")
    }
}

/// Walks from `root`, reading each manifest with `fetch` (`Ok(None)`: the source lacks
/// it). A limit that is exceeded becomes an error of the class `refuse` gives: a crafted
/// archive is an input error, a registry serving one a registry error.
pub fn walk(
    root: &Descriptor,
    refuse: fn(String) -> Error,
    fetch: &mut dyn FnMut(&Descriptor) -> Result<Option<Parsed>>,
) -> Result<Graph> {
    let mut visit = |descriptor: &Descriptor, depth: usize| -> Result<Node> {
        let node = Node {
            descriptor: descriptor.clone(),
            depth,
            content: fetch(descriptor)?,
        };
        let fan_out = node.children().len();
        if fan_out > MAX_FAN_OUT {
            return Err(refuse(format!(
                "image index {} lists {fan_out} entries, more than the {MAX_FAN_OUT} any real image has",
                descriptor.digest
            )));
        }
        Ok(node)
    };
    let mut graph = Graph::default();
    let mut seen: HashSet<Digest> = HashSet::from([root.digest.clone()]);
    // Each frame: a node and the position of its next child to look at.
    let mut stack: Vec<(Node, usize)> = vec![(visit(root, 0)?, 0)];
    while let Some((node, next)) = stack.last_mut() {
        let Some(child) = node.children().get(*next).cloned() else {
            let (node, _) = stack.pop().expect("the loop saw a frame");
            graph
                .positions
                .insert(node.descriptor.digest.clone(), graph.nodes.len());
            graph.nodes.push(node);
            continue;
        };
        *next += 1;
        let depth = node.depth + 1;
        if !seen.insert(child.digest.clone()) {
            continue;
        }
        if depth > MAX_DEPTH {
            return Err(refuse(format!(
                "image index {} nests deeper than {MAX_DEPTH} levels",
                node.descriptor.digest
            )));
        }
        if seen.len() > MAX_MANIFESTS {
            return Err(refuse(format!(
                "image {} reaches more than {MAX_MANIFESTS} manifests, more than any real image has",
                root.digest
            )));
        }
        stack.push((visit(&child, depth)?, 0));
    }
    Ok(graph)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::test_doubles::descriptor;
    use crate::image::{Index, media};

    /// A store of indexes: each maps to its children.
    #[derive(Default)]
    struct Indexes(HashMap<Digest, (Vec<u8>, Vec<Descriptor>)>);

    impl Indexes {
        fn add(&mut self, tag: &str, children: Vec<Descriptor>) -> Descriptor {
            let bytes = format!("{tag}:{}", children.len()).into_bytes();
            let d = descriptor(media::OCI_INDEX, &bytes);
            self.0.insert(d.digest.clone(), (bytes, children));
            d
        }

        fn walk(&self, root: &Descriptor, fetched: &mut usize) -> Result<Graph> {
            walk(root, Error::input, &mut |d| {
                *fetched += 1;
                Ok(self.0.get(&d.digest).map(|(bytes, children)| Parsed {
                    media_type: media::OCI_INDEX.to_string(),
                    bytes: bytes.clone(),
                    kind: ManifestKind::Index(Index {
                        schema_version: 2,
                        media_type: None,
                        manifests: children.clone(),
                    }),
                }))
            })
        }
    }

    #[test]
    fn shared_children_are_fetched_once_and_come_before_their_parents() {
        let mut store = Indexes::default();
        let leaf = descriptor(media::OCI_MANIFEST, b"leaf");
        let mut level = store.add("0", vec![leaf.clone(); 60]);
        for n in 1..4 {
            level = store.add(&n.to_string(), vec![level; 60]);
        }
        let mut fetched = 0;
        let graph = store.walk(&level, &mut fetched).unwrap();
        assert_eq!(fetched, 5);
        assert_eq!(graph.nodes.len(), 5);
        assert_eq!(graph.nodes[0].descriptor.digest, leaf.digest);
        assert!(graph.nodes[0].content.is_none());
        assert_eq!(graph.root().descriptor.digest, level.digest);
        assert!(graph.get(&leaf.digest).is_some());
    }

    #[test]
    fn deep_nesting_is_refused_without_recursion() {
        let mut store = Indexes::default();
        let mut level = descriptor(media::OCI_MANIFEST, b"leaf");
        for n in 0..20_000 {
            level = store.add(&n.to_string(), vec![level]);
        }
        let mut fetched = 0;
        let err = store.walk(&level, &mut fetched).unwrap_err();
        assert!(err.message.contains("nests deeper than 8"), "{err}");
        assert_eq!(fetched, MAX_DEPTH + 1);

        let mut ok = descriptor(media::OCI_MANIFEST, b"leaf");
        for n in 0..MAX_DEPTH {
            ok = store.add(&format!("ok{n}"), vec![ok]);
        }
        assert_eq!(store.walk(&ok, &mut 0).unwrap().nodes.len(), MAX_DEPTH + 1);
    }

    #[test]
    fn wide_indexes_and_too_many_manifests_are_refused() {
        let mut store = Indexes::default();
        let wide: Vec<Descriptor> = (0..=MAX_FAN_OUT)
            .map(|i| descriptor(media::OCI_MANIFEST, &i.to_le_bytes()))
            .collect();
        let root = store.add("wide", wide);
        let err = store.walk(&root, &mut 0).unwrap_err();
        assert!(err.message.contains("1025 entries"), "{err}");

        let groups: Vec<Descriptor> = (0..5)
            .map(|g| {
                let leaves = (0..1000)
                    .map(|i| descriptor(media::OCI_MANIFEST, format!("{g}/{i}").as_bytes()))
                    .collect();
                store.add(&format!("group{g}"), leaves)
            })
            .collect();
        let root = store.add("groups", groups);
        let err = store.walk(&root, &mut 0).unwrap_err();
        assert!(err.message.contains("more than 4096 manifests"), "{err}");
    }
}
