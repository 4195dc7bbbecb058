//! The DAG's order: stages upstream-first, and the cycle that prevents one.

use super::Stage;

/// Orders stages upstream-first, keeping the file's order among independent stages;
/// `Err` is one cycle, in data-flow order, starting at the stage written first and
/// ending where it started (`a -> b -> a`).
pub(super) fn topological_order(stages: &[Stage]) -> Result<Vec<usize>, Vec<usize>> {
    let n = stages.len();
    let mut graph = petgraph::graph::DiGraph::<usize, ()>::with_capacity(n, n);
    let nodes: Vec<_> = (0..n).map(|i| graph.add_node(i)).collect();
    for (i, s) in stages.iter().enumerate() {
        for &u in &s.upstream {
            graph.add_edge(nodes[u], nodes[i], ());
        }
    }
    // Kahn's algorithm with the lowest file index first: deterministic and readable.
    let mut indegree: Vec<usize> = stages.iter().map(|s| s.upstream.len()).collect();
    let mut ready: std::collections::BTreeSet<usize> = (0..n).filter(|&i| indegree[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for nb in graph.neighbors(nodes[i]) {
            let j = graph[nb];
            indegree[j] -= 1;
            if indegree[j] == 0 {
                ready.insert(j);
            }
        }
    }
    if order.len() == n {
        return Ok(order);
    }
    // Name one cycle: among the stages left over, follow upstream edges until one repeats.
    let left: Vec<bool> = (0..n).map(|i| indegree[i] > 0).collect();
    let start = (0..n).find(|&i| left[i]).unwrap_or(0);
    let mut path = vec![start];
    let mut cur = start;
    loop {
        let next = stages[cur].upstream.iter().copied().find(|&u| left[u]).unwrap_or(start);
        if let Some(pos) = path.iter().position(|&p| p == next) {
            let mut cycle: Vec<usize> = path[pos..].to_vec();
            cycle.reverse(); // upstream edges walked backwards: print in data-flow order
            // Start at the stage written first, so the message reads like the file.
            let first_pos = (0..cycle.len()).min_by_key(|&k| cycle[k]).unwrap_or(0);
            cycle.rotate_left(first_pos);
            cycle.push(cycle[0]);
            return Err(cycle);
        }
        path.push(next);
        cur = next;
    }
}

/// Puts stages into `order` and renumbers their upstream indices.
pub(super) fn reorder(stages: Vec<Stage>, order: &[usize]) -> Vec<Stage> {
    let mut new_index = vec![0; order.len()];
    for (new, &old) in order.iter().enumerate() {
        new_index[old] = new;
    }
    let mut slots: Vec<Option<Stage>> = stages.into_iter().map(Some).collect();
    order
        .iter()
        .map(|&old| {
            let mut s = slots[old].take().expect("each index appears once in a topological order");
            s.upstream = s.upstream.iter().map(|&u| new_index[u]).collect();
            s.upstream.sort_unstable();
            s
        })
        .collect()
}
