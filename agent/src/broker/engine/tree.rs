//! A tree of topic levels, one node per level, a value where a stored path
//! ends. It answers both matching questions a broker asks:
//!
//! - stored **filters**, a published **topic**: which subscriptions does
//!   this message reach ([`TopicTree::matching_filters`]);
//! - stored **topics**, a new **filter**: which retained messages does this
//!   subscription get ([`TopicTree::matching_topics`]).
//!
//! Both follow MQTT 5 §4.7: `+` is one whole level, `#` the rest of the
//! topic including none (`a/#` matches `a`), and a topic whose first level
//! starts with `$` is matched by no filter that starts with a wildcard.
//! Nodes are removed when their last value and child go, so the tree holds
//! what is stored now, never every path it has seen (rumqttd's router kept
//! a log per distinct topic forever, decision 0023).

use std::collections::HashMap;

/// Topic levels to values; see the module docs.
#[derive(Debug)]
pub struct TopicTree<V> {
    root: Node<V>,
    values: usize,
}

#[derive(Debug)]
struct Node<V> {
    value: Option<V>,
    children: HashMap<Box<str>, Node<V>>,
}

impl<V> Default for Node<V> {
    fn default() -> Self {
        Node {
            value: None,
            children: HashMap::new(),
        }
    }
}

impl<V> Node<V> {
    fn is_empty(&self) -> bool {
        self.value.is_none() && self.children.is_empty()
    }

    /// Runs `f` on the value slot at `levels` below this node, creating the
    /// path; prunes it again if it is left empty. Returns `f`'s result and
    /// whether this node is now empty.
    fn update<'a, R>(
        &mut self,
        mut levels: impl Iterator<Item = &'a str>,
        f: impl FnOnce(&mut Option<V>) -> R,
    ) -> R {
        match levels.next() {
            None => f(&mut self.value),
            Some(level) => {
                let child = self.children.entry(level.into()).or_default();
                let r = child.update(levels, f);
                if child.is_empty() {
                    self.children.remove(level);
                }
                r
            }
        }
    }

    fn nodes(&self) -> usize {
        1 + self.children.values().map(Node::nodes).sum::<usize>()
    }
}

impl<V> Default for TopicTree<V> {
    fn default() -> Self {
        TopicTree {
            root: Node::default(),
            values: 0,
        }
    }
}

impl<V> TopicTree<V> {
    /// Runs `f` on the value slot for `path` (a topic or a filter; levels
    /// split at `/`), which may fill, change or empty it. A path left
    /// without value or children is removed.
    pub fn update<R>(&mut self, path: &str, f: impl FnOnce(&mut Option<V>) -> R) -> R {
        let mut delta: isize = 0;
        let r = self.root.update(path.split('/'), |slot| {
            let before = slot.is_some();
            let r = f(slot);
            delta = isize::from(slot.is_some()) - isize::from(before);
            r
        });
        self.values = self.values.saturating_add_signed(delta);
        r
    }

    /// The value stored for exactly `path`.
    pub fn get(&self, path: &str) -> Option<&V> {
        let mut node = &self.root;
        for level in path.split('/') {
            node = node.children.get(level)?;
        }
        node.value.as_ref()
    }

    /// Removes and returns the value for `path`.
    pub fn remove(&mut self, path: &str) -> Option<V> {
        self.update(path, Option::take)
    }

    /// How many paths hold a value.
    pub fn len(&self) -> usize {
        self.values
    }

    /// Whether no path holds a value.
    pub fn is_empty(&self) -> bool {
        self.values == 0
    }

    /// Nodes in the tree, the root included: what its memory follows.
    pub fn nodes(&self) -> usize {
        self.root.nodes()
    }

    /// Calls `f` with every value, `$` paths included.
    pub fn for_each<'s>(&'s self, mut f: impl FnMut(&'s V)) {
        subtree(&self.root, &mut f);
    }

    /// Calls `f` with the value of every stored **filter** that the topic
    /// name `topic` matches.
    pub fn matching_filters<'s>(&'s self, topic: &str, mut f: impl FnMut(&'s V)) {
        let levels: Vec<&str> = topic.split('/').collect();
        let dollar = topic.starts_with('$');
        filters_at(&self.root, &levels, !dollar, &mut f);
    }

    /// Calls `f` with the value of every stored **topic** that the filter
    /// `filter` matches.
    pub fn matching_topics<'s>(&'s self, filter: &str, mut f: impl FnMut(&'s V)) {
        let levels: Vec<&str> = filter.split('/').collect();
        topics_at(&self.root, &levels, true, &mut f);
    }
}

/// Stored filters at and below `node` matched by the rest of a topic.
/// `wild` is false only at the root of a `$` topic.
fn filters_at<'s, V>(node: &'s Node<V>, rest: &[&str], wild: bool, f: &mut impl FnMut(&'s V)) {
    if wild && let Some(v) = node.children.get("#").and_then(|n| n.value.as_ref()) {
        f(v);
    }
    let Some((level, rest)) = rest.split_first() else {
        if let Some(v) = &node.value {
            f(v);
        }
        return;
    };
    if let Some(child) = node.children.get(*level) {
        filters_at(child, rest, true, f);
    }
    if wild && let Some(child) = node.children.get("+") {
        filters_at(child, rest, true, f);
    }
}

/// Stored topics at and below `node` matched by the rest of a filter.
/// `root` marks the first level, where wildcards skip `$` topics.
fn topics_at<'s, V>(node: &'s Node<V>, rest: &[&str], root: bool, f: &mut impl FnMut(&'s V)) {
    let Some((level, rest)) = rest.split_first() else {
        if let Some(v) = &node.value {
            f(v);
        }
        return;
    };
    match *level {
        "#" => {
            // `a/#` also matches `a` itself (the parent level).
            if !root && let Some(v) = &node.value {
                f(v);
            }
            for (name, child) in &node.children {
                if !(root && name.starts_with('$')) {
                    subtree(child, f);
                }
            }
        }
        "+" => {
            for (name, child) in &node.children {
                if !(root && name.starts_with('$')) {
                    topics_at(child, rest, false, f);
                }
            }
        }
        literal => {
            if let Some(child) = node.children.get(literal) {
                topics_at(child, rest, false, f);
            }
        }
    }
}

fn subtree<'s, V>(node: &'s Node<V>, f: &mut impl FnMut(&'s V)) {
    if let Some(v) = &node.value {
        f(v);
    }
    for child in node.children.values() {
        subtree(child, f);
    }
}
