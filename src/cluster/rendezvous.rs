//! Which live instance owns a unit: rendezvous (highest random weight) hashing of the unit id
//! over the node ids. Every instance computes the same answer from the same live set, and
//! when an instance joins or leaves only the units that must move do.

use std::sync::Arc;

use crate::pipeline::shared::fingerprint;

/// The owner of `unit` among `live`: highest rendezvous score (FNV-1a of node and unit,
/// finished with splitmix64's mixer so that similar names spread).
pub fn owner_of<'a>(unit: &str, live: &'a [Arc<str>]) -> Option<&'a Arc<str>> {
    let score = |node: &str| {
        let mut z = fingerprint(node, unit.as_bytes(), "");
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    live.iter().max_by(|a, b| (score(a), a).cmp(&(score(b), b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rendezvous hashing: every unit has one owner, a node's death moves only its own units,
    /// and the units spread over the nodes.
    #[test]
    fn ownership_moves_only_the_units_of_a_node_that_left() {
        let nodes: Vec<Arc<str>> = ["a:1", "b:1", "c:1"].map(Arc::from).to_vec();
        let units: Vec<String> = (0..3000).map(|i| format!("unit-{i}")).collect();
        let before: Vec<&Arc<str>> = units.iter().map(|u| owner_of(u, &nodes).unwrap()).collect();
        for n in &nodes {
            let share = before.iter().filter(|o| **o == n).count();
            assert!((800..1200).contains(&share), "{n}: {share} of 3000");
        }
        let two: Vec<Arc<str>> = nodes[..2].to_vec();
        for (u, was) in units.iter().zip(&before) {
            let now = owner_of(u, &two).unwrap();
            if **was != nodes[2] {
                assert_eq!(now, *was, "{u} moved although its owner is alive");
            }
        }
        assert!(owner_of("u", &[]).is_none());
    }
}
