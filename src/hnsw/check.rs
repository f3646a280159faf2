//! A full check of one graph's structure, for `verify`: every count within its list, every link
//! to a node that exists on that layer, ring member bits that match the ring links, and every
//! node reachable from the entry point.

use std::sync::atomic::Ordering::{Acquire, Relaxed};

use super::{unpack, Graph, FLAGS, LOCKED, NO_ENTRY, RING};

/// Problems listed by name; beyond this many only the count grows.
const LISTED_PROBLEMS: usize = 10;

/// What [`Graph::check`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct GraphCheck {
    /// Links checked, on every layer.
    pub links: u64,
    /// Counts out of range, links to nodes that do not exist (or not on that layer), lock bits
    /// left set, ring member bits that disagree with the lists: the first few in words.
    pub problems: Vec<String>,
    /// How many problems there were in all.
    pub problem_count: u64,
    /// Nodes that no walk from the entry point reaches on layer 0.
    pub unreachable: usize,
}

impl GraphCheck {
    fn problem(&mut self, detail: impl FnOnce() -> String) {
        if self.problems.len() < LISTED_PROBLEMS {
            self.problems.push(detail());
        }
        self.problem_count += 1;
    }
}

impl Graph {
    /// Reads every list raw (searches skip bad links silently; this names them) and walks layer 0
    /// from the entry point. Reads the whole graph once.
    pub(crate) fn check(&self) -> GraphCheck {
        let mut check = GraphCheck::default();
        let len = self.len();
        for node in 0..len as u32 {
            let level = self.levels[node as usize] as usize;
            for layer in 0..=level {
                let list = self.list(node, layer);
                let word = list[0].load(Acquire);
                let count = (word & !FLAGS) as usize;
                if layer == 0 && word & LOCKED != 0 {
                    check.problem(|| format!("node {node}: a builder's lock bit is set"));
                }
                if layer == 0 && (word & RING != 0) != self.rings.contains(node) {
                    check.problem(|| format!("node {node}: its ring link and its ring member bit disagree"));
                }
                if count > list.len() - 1 {
                    check.problem(|| {
                        format!("node {node}: {count} links on layer {layer}, room for {}", list.len() - 1)
                    });
                    continue;
                }
                for slot in &list[1..=count] {
                    let link = slot.load(Relaxed);
                    check.links += 1;
                    let on_layer = self.levels.get(link as usize).is_some_and(|&l| l as usize >= layer);
                    if !on_layer {
                        check.problem(|| {
                            format!("node {node}: link to {link} on layer {layer}, which has no such node")
                        });
                    }
                }
            }
        }
        let entry = self.entry.load(Acquire);
        if entry != NO_ENTRY && len > 0 {
            let mut reached = vec![false; len];
            check.unreachable = len - self.mark_reachable(unpack(entry).0, &mut reached, &mut Vec::new());
        } else if len > 0 {
            check.problem(|| format!("{len} nodes but no entry point"));
        }
        check
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hnsw::build::tests::graph;
    use crate::hnsw::Scored;

    #[test]
    fn a_built_graph_passes_and_damage_is_named() {
        let graph = graph(1_000, 8);
        let clean = graph.check();
        assert!(clean.problems.is_empty() && clean.unreachable == 0 && clean.links > 8_000, "{clean:?}");

        // A link to a node that does not exist.
        let list = graph.list(5, 0);
        list[1].store(5_000, Relaxed);
        let damaged = graph.check();
        assert_eq!(damaged.problem_count, 1, "{damaged:?}");
        assert!(damaged.problems[0].contains("node 5") && damaged.problems[0].contains("5000"));

        // Nothing links to node 7 any more: unreachable, though every list is valid.
        list[1].store(0, Relaxed);
        for node in 0..graph.len() as u32 {
            let list = graph.list(node, 0);
            let kept: Vec<Scored> = (Graph::first_link(list)..=Graph::count(list))
                .map(|slot| list[slot].load(Relaxed))
                .filter(|&link| link != 7)
                .map(|node| Scored { distance: 0.0, node })
                .collect();
            graph.write_list(node, 0, &kept);
        }
        let entry = unpack(graph.entry.load(Acquire)).0;
        assert_eq!(graph.check().unreachable, usize::from(entry != 7));
    }
}
