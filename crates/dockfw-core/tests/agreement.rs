//! The policy evaluator and the ruleset interpreter must agree on every
//! connection, on every path (DNAT, docker-proxy, routed) and in every
//! direction (inbound, outbound, between), enforced or audited, for random
//! policies and running containers: the compiled ruleset means what the
//! policy says.

use dockfw_core::eval::{Packet, PacketOutcome};
use dockfw_core::layout::CounterAt;
use dockfw_core::ruleset::{Hook, Verdict};
use dockfw_core::testing::internals::simulate_packet;
use dockfw_core::testing::{containers_and_all_connections, containers_and_connections, policy_text};
use dockfw_core::{
    Action, Decision, Direction, compile, evaluate_container, evaluate_ruleset_container,
    evaluate_ruleset_via, evaluate_via, parse,
};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn policy_and_ruleset_agree(
        text in policy_text(),
        (containers, connections, own) in containers_and_all_connections(30),
    ) {
        let parsed = parse("random.toml", &text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        let ruleset = compile(&parsed.policy, &containers);
        let audit = parsed.policy.guard.audit();
        for (connection, direction) in &own {
            let by_policy = evaluate_container(&parsed.policy, &containers, connection, *direction);
            let to_itself = connection.source == connection.destination
                || containers.iter().any(|c| {
                    c.addresses.contains(&connection.source) && c.addresses.contains(&connection.destination)
                });
            if to_itself && !connection.proxied {
                // Delivered inside the container's own namespace: no such
                // packet reaches the host's hooks.
                prop_assert_eq!(&by_policy, &Decision::NotJudged);
                continue;
            }
            let by_ruleset = evaluate_ruleset_container(&ruleset, connection, *direction);
            prop_assert_eq!(
                &by_policy, &by_ruleset,
                "{:?} {:?}\ncontainers: {:#?}\npolicy:\n{}", direction, connection, containers, text
            );
            let first = Packet::from_container(connection, *direction);
            let hook = if connection.proxied { Hook::Input } else { Hook::Forward };
            counted_once(&simulate_packet(&ruleset, hook, &first))?;
            if audit {
                // Audit mode denies nothing.
                prop_assert_eq!(&simulate_packet(&ruleset, hook, &first).verdict, &Verdict::Accept);
            }
            // Only new connections are judged: later packets, replies and
            // related ones take the fast path.
            for packet in [
                Packet { ct_new: false, ..first.clone() },
                Packet { ct_new: false, ct_reply: true, ..first.clone() },
                Packet { ct_new: false, ct_related: true, ..first.clone() },
            ] {
                let outcome = simulate_packet(&ruleset, hook, &packet);
                prop_assert_eq!(&outcome.verdict, &Verdict::Accept);
                prop_assert_eq!(outcome.decision(), Decision::NotJudged, "{:?}", packet);
                prop_assert_eq!(&outcome.counted, &[], "the fast path counts nothing: {:?}", packet);
            }
        }
        for (connection, path) in &connections {
            let by_policy = evaluate_via(&parsed.policy, &containers, connection, *path);
            let by_ruleset = evaluate_ruleset_via(&ruleset, connection, *path);
            prop_assert_eq!(
                &by_policy, &by_ruleset,
                "connection {:?} on {:?}\ncontainers: {:#?}\npolicy:\n{}", connection, path, containers, text
            );
            let outcome = simulate_packet(&ruleset, path.hook(), &Packet::via(connection, *path));
            counted_once(&outcome)?;
            if audit {
                prop_assert_eq!(&outcome.verdict, &Verdict::Accept, "audit: {:?} on {:?}\n{}", connection, path, text);
            }
            // A later packet of a connection no rules chain labelled (opened
            // before the table existed) is judged exactly like a new one.
            let hook = path.hook();
            let late = simulate_packet(&ruleset, hook, &Packet::established(connection, *path, false));
            counted_once(&late)?;
            prop_assert_eq!(&late.decision(), &by_policy, "late: {:?} on {:?}\n{}", connection, path, text);
            // Such a connection can never be labelled, so every packet is
            // judged: a rule's rate limit meters new connections only and
            // must not drop it, however busy its source.
            let busy = Packet { over_rate: true, ..Packet::established(connection, *path, false) };
            let late_busy = simulate_packet(&ruleset, hook, &busy);
            prop_assert_eq!(&late_busy, &late, "late over rate: {:?} on {:?}\n{}", connection, path, text);
            // Labelled (judged and admitted when new), a reply or related:
            // the fast path, never judged again.
            let labelled = Packet::established(connection, *path, true);
            let reply = Packet { ct_reply: true, ..Packet::established(connection, *path, false) };
            let related = Packet { ct_related: true, ..Packet::established(connection, *path, false) };
            for packet in [labelled, reply, related] {
                let outcome = simulate_packet(&ruleset, hook, &packet);
                prop_assert_eq!(&outcome.verdict, &Verdict::Accept);
                prop_assert_eq!(outcome.decision(), Decision::NotJudged, "{:?}", packet);
                prop_assert_eq!(&outcome.counted, &[], "the fast path counts nothing: {:?}", packet);
            }
        }
    }
}

/// One counter per decision: a judged packet passes exactly one counter,
/// the first rule of the chain that decided it (where status reads it), and
/// a packet nothing judged passes none, or the one of the chain that
/// dropped it (untracked, unattributed).
fn counted_once(outcome: &PacketOutcome) -> Result<(), TestCaseError> {
    let deciding = outcome.chain.as_ref().map(|chain| CounterAt {
        chain: chain.clone(),
        index: 0,
    });
    match outcome.counted.as_slice() {
        [] => prop_assert_eq!(
            outcome.decision(),
            Decision::NotJudged,
            "uncounted: {:?}",
            outcome
        ),
        [counter] => prop_assert_eq!(Some(counter), deciding.as_ref(), "{:?}", outcome),
        _ => prop_assert!(false, "counted more than once: {:?}", outcome),
    }
    Ok(())
}

/// The generators are worth their time: over many cases, rules decide on
/// every path, including container and labels rules and the routed path.
#[test]
fn the_generators_reach_every_kind_of_decision() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = (policy_text(), containers_and_connections(30));
    let (mut by_selecting_rule, mut routed, mut proxied, mut not_judged) = (0, 0, 0, 0);
    for _ in 0..500 {
        let (text, (containers, connections)) = strategy.new_tree(&mut runner).unwrap().current();
        let policy = parse("random.toml", &text).unwrap().policy;
        for (connection, path) in &connections {
            match evaluate_via(&policy, &containers, connection, *path) {
                Decision::Rule { name, .. } => {
                    let rule = policy.rule(&name).unwrap();
                    if rule.selects_containers() {
                        by_selecting_rule += 1;
                        routed += usize::from(*path == dockfw_core::Via::Routed);
                        proxied += usize::from(*path == dockfw_core::Via::Proxied);
                    }
                }
                Decision::NotJudged => not_judged += 1,
                Decision::Default { .. } => {}
            }
        }
    }
    eprintln!(
        "selecting rules decided {by_selecting_rule} (routed {routed}, proxied {proxied}); not judged {not_judged}"
    );
    assert!(by_selecting_rule > 100 && routed > 10 && proxied > 10 && not_judged > 100);
}

/// Likewise for containers' own connections: outbound and between rules
/// selecting containers decide, allow and deny, and defaults too.
#[test]
fn the_generators_reach_every_kind_of_container_decision() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = (policy_text(), containers_and_all_connections(30));
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..500 {
        let (text, (containers, _, own)) = strategy.new_tree(&mut runner).unwrap().current();
        let policy = parse("random.toml", &text).unwrap().policy;
        for (connection, direction) in &own {
            let decision = evaluate_container(&policy, &containers, connection, *direction);
            let kind = match &decision {
                Decision::Rule { name, action } => {
                    let rule = policy
                        .container_rules(*direction)
                        .iter()
                        .find(|r| &r.name == name)
                        .unwrap();
                    let selecting = !rule.selectors().is_empty();
                    format!("{direction} rule {action} selecting={selecting}")
                }
                Decision::Default { action } => format!("{direction} default {action}"),
                Decision::NotJudged => format!("{direction} not judged"),
            };
            if connection.proxied {
                let proxied = match &decision {
                    Decision::Rule { action, .. } => format!("proxied rule {action}"),
                    Decision::Default { action } => format!("proxied default {action}"),
                    Decision::NotJudged => "proxied not judged".to_string(),
                };
                *seen.entry(proxied).or_insert(0usize) += 1;
            }
            *seen.entry(kind).or_insert(0usize) += 1;
        }
    }
    eprintln!("{seen:#?}");
    for direction in [Direction::Outbound, Direction::Between] {
        for action in [Action::Allow, Action::Drop, Action::Reject] {
            for selecting in [true, false] {
                let kind = format!("{direction} rule {action} selecting={selecting}");
                assert!(seen.get(&kind).copied().unwrap_or(0) > 20, "{kind}: {seen:#?}");
            }
            assert!(
                seen.get(&format!("{direction} default {action}"))
                    .copied()
                    .unwrap_or(0)
                    > 20
            );
        }
        assert!(seen.get(&format!("{direction} not judged")).copied().unwrap_or(0) > 20);
    }
    // Through docker-proxy too.
    for kind in [
        "proxied rule allow",
        "proxied rule drop",
        "proxied default drop",
        "proxied not judged",
    ] {
        assert!(seen.get(kind).copied().unwrap_or(0) > 10, "{kind}: {seen:#?}");
    }
}
