//! The values' models against what the nodes have free: each node's allocatable
//! GPUs and memory less what the pods already on it request (`pods`), GPUs node by
//! node (an engine's GPUs must all be on one node that its `nodeSelector` matches),
//! memory in all and on the GPU nodes.

use super::pods::Usage;
use super::values::{Engine, Needs};
use super::{GIB, GROUP, Node};
use crate::doctor::report::Check;

/// A usable node and what is free on it.
struct Free<'a> {
    node: &'a Node,
    gpus: u64,
    memory: f64,
    /// Who holds its GPUs: running pods, then the values' engines placed here.
    holders: Vec<String>,
}

/// The GPU and memory checks. `usage` is `None` when the pods could not be listed:
/// the nodes' allocatable is compared then, and the lines say so.
pub(super) fn check(nodes: &[Node], usage: Option<&Usage>, needs: &Needs, checks: &mut Vec<Check>) {
    let mut free: Vec<Free> = nodes
        .iter()
        .filter(|n| n.usable())
        .map(|node| {
            let used = usage.and_then(|u| u.on(&node.name));
            Free {
                node,
                gpus: node.gpus.saturating_sub(used.map_or(0, |u| u.gpus)),
                memory: (node.memory - used.map_or(0.0, |u| u.memory)).max(0.0),
                holders: used
                    .map(|u| {
                        u.gpu_pods
                            .iter()
                            .map(|(pod, n)| format!("{pod} holds {n}"))
                            .collect()
                    })
                    .unwrap_or_default(),
            }
        })
        .collect();
    let allocatable_gpus: u64 = free.iter().map(|f| f.node.gpus).sum();
    let free_gpus: u64 = free.iter().map(|f| f.gpus).sum();
    // Before the engines are placed (placing them takes their GPUs).
    let free_memory: f64 = free.iter().map(|f| f.memory).sum();
    let gpu_memory = free
        .iter()
        .filter(|f| f.node.gpus > 0)
        .map(|f| f.memory)
        .fold(0.0, f64::max);
    gpus(&mut free, usage, needs, allocatable_gpus, free_gpus, checks);
    let allocatable: f64 = nodes.iter().filter(|n| n.usable()).map(|n| n.memory).sum();
    memory(needs, usage, allocatable, free_memory, gpu_memory, checks);
}

fn gpus(
    free: &mut [Free],
    usage: Option<&Usage>,
    needs: &Needs,
    allocatable: u64,
    available: u64,
    checks: &mut Vec<Check>,
) {
    if needs.engines.is_empty() {
        checks.push(Check::ok(
            GROUP,
            "gpu capacity",
            "the values run no vLLM engine",
        ));
        return;
    }
    // The largest first, each on the node that fits it with the fewest GPUs left
    // over: a greedy placement, as the scheduler's bin packing would find it.
    let mut engines: Vec<&Engine> = needs.engines.iter().collect();
    engines.sort_by_key(|e| std::cmp::Reverse(e.gpus));
    let mut problems = Vec::new();
    let mut taken = false;
    for e in engines {
        let best = free
            .iter_mut()
            .filter(|f| f.node.matches(&e.node_selector) && f.gpus >= e.gpus)
            .min_by_key(|f| f.gpus);
        if let Some(f) = best {
            f.gpus -= e.gpus;
            f.holders
                .push(format!("{} of these values takes {}", e.model, e.gpus));
            continue;
        }
        let (why, held) = unplaced(free, e);
        taken |= held;
        problems.push(why);
    }
    let want = needs.gpus();
    if want > available || taken {
        let mut all = if usage.is_some() {
            format!("the engines need {want} GPU(s) in all; {available} of {allocatable} are free")
        } else {
            format!("the engines need {want} GPU(s) in all; the nodes have {allocatable}")
        };
        if taken {
            let nodes: Vec<String> = free
                .iter()
                .filter(|f| f.node.gpus > 0)
                .map(|f| {
                    let mut s = format!("{} {} of {} free", f.node.name, f.gpus, f.node.gpus);
                    if !f.holders.is_empty() {
                        s = format!("{s} ({})", f.holders.join(", "));
                    }
                    s
                })
                .collect();
            all = format!("{all}: {}", nodes.join(", "));
        }
        problems.push(all);
    }
    if problems.is_empty() {
        let of = if usage.is_some() {
            format!("{available} of {allocatable} allocatable free")
        } else {
            format!("{allocatable} allocatable (running pods not counted)")
        };
        checks.push(Check::ok(
            GROUP,
            "gpu capacity",
            format!("{want} GPU(s) for {} engine(s); {of}", needs.engines.len()),
        ));
    } else {
        checks.push(Check::fail(
            GROUP,
            "gpu capacity",
            problems.join("; "),
            "free GPUs (`kubectl get pods -A -o wide` shows who runs where), add GPU nodes, lower models[].gpus, or fix vllm.nodeSelector to the GPU nodes' labels (`kubectl get nodes --show-labels`); pods would stay Pending",
        ));
    }
}

/// Why an engine found no node: its GPUs are taken (true: the caller lists who
/// holds them), no node has that many, or its node selector matches none that has.
fn unplaced(free: &[Free], e: &Engine) -> (String, bool) {
    let matching = free.iter().filter(|f| f.node.matches(&e.node_selector));
    if matching.clone().any(|f| f.node.gpus >= e.gpus) {
        return (
            format!(
                "{} needs {} GPU(s) on one node, and no node has them free",
                e.model, e.gpus
            ),
            true,
        );
    }
    if free.iter().any(|f| f.node.gpus >= e.gpus) {
        let sel: Vec<String> = e
            .node_selector
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        return (
            format!(
                "{} selects nodes labelled {}, and no GPU node with {} GPU(s) has that label",
                e.model,
                sel.join(","),
                e.gpus
            ),
            false,
        );
    }
    let most = free.iter().map(|f| f.node.gpus).max().unwrap_or(0);
    (
        format!(
            "{} needs {} GPU(s) on one node; the most a node has is {most}",
            e.model, e.gpus
        ),
        false,
    )
}

fn memory(
    needs: &Needs,
    usage: Option<&Usage>,
    allocatable: f64,
    available: f64,
    gpu_memory: f64,
    checks: &mut Vec<Check>,
) {
    let engines: f64 = needs.engines.iter().map(|e| e.memory).sum();
    let want = needs.other_memory + engines;
    let free_word = if usage.is_some() {
        "free"
    } else {
        "allocatable"
    };
    let mut problems = Vec::new();
    for e in &needs.engines {
        if e.memory > gpu_memory && gpu_memory > 0.0 {
            problems.push(format!(
                "{} asks {:.1} GiB; the most a GPU node has {free_word} is {:.1} GiB",
                e.model,
                e.memory / GIB,
                gpu_memory / GIB
            ));
        }
    }
    if want > available {
        problems.push(format!(
            "the pods ask {:.1} GiB in all; the nodes have {:.1} GiB {free_word}",
            want / GIB,
            available / GIB
        ));
    }
    let detail = match usage {
        Some(u) => {
            let mut s = format!(
                "{:.1} GiB allocatable less {:.1} GiB requested by {} running pod(s)",
                allocatable / GIB,
                u.memory() / GIB,
                u.counted
            );
            if u.hearth > 0 {
                s += &format!(
                    "; {} Hearth pod(s) not counted, as an upgrade replaces them",
                    u.hearth
                );
            }
            if u.pending > 0 {
                s += &format!("; {} pod(s) Pending, not counted", u.pending);
            }
            s
        }
        None => "before other workloads".to_owned(),
    };
    if problems.is_empty() {
        checks.push(Check::ok(
            GROUP,
            "memory",
            format!(
                "the pods ask {:.1} GiB of {:.1} GiB {free_word} ({detail})",
                want / GIB,
                available / GIB
            ),
        ));
    } else {
        checks.push(Check::fail(
            GROUP,
            "memory",
            format!("{} ({detail})", problems.join("; ")),
            "lower the memory requests (gateway.resources, vllm.resources, models[].resources) or add nodes",
        ));
    }
}
