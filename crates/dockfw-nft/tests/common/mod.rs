//! Shared fixtures for the privileged tests.
#![allow(dead_code)]

pub mod strategy;

use dockfw_core::interval::{Interval, normalize};
use dockfw_core::ruleset::*;
use std::net::{Ipv4Addr, Ipv6Addr};

fn rule(comment: &str, matches: Vec<Match>, statements: Vec<Statement>, verdict: Option<Verdict>) -> Rule {
    Rule {
        comment: comment.into(),
        matches,
        statements,
        verdict,
    }
}

fn exact(name: &str) -> IfName {
    IfName::Exact(name.into())
}

fn prefix(name: &str) -> IfName {
    IfName::Prefix(name.into())
}

/// A ruleset shaped like the compiler's output: forward -> guarded -> policy
/// -> per-rule chains, with address/port sets and meters.
pub fn realistic(table: &str) -> Ruleset {
    let v4 = |a: [u8; 4], b: [u8; 4]| Interval::new(Ipv4Addr::from(a), Ipv4Addr::from(b)).unwrap();
    let v6 = |a: &str, b: &str| Interval::new(a.parse::<Ipv6Addr>().unwrap(), b.parse().unwrap()).unwrap();
    let rate = Rate {
        count: 5,
        unit: RateUnit::Second,
    };
    let base = |name: &str| {
        Some(BaseHook {
            hook: if name == "forward" {
                Hook::Forward
            } else {
                Hook::Input
            },
            priority: -5,
        })
    };
    Ruleset {
        table: table.into(),
        sets: vec![
            Set {
                name: "admins-v4".into(),
                elements: SetElements::Ipv4(normalize(vec![
                    v4([192, 0, 2, 0], [192, 0, 2, 255]),
                    v4([198, 51, 100, 10], [198, 51, 100, 20]),
                ])),
            },
            Set {
                name: "rule-3-from-v6".into(),
                elements: SetElements::Ipv6(vec![
                    v6("2001:db8::", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"),
                    v6("ffff::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
                ]),
            },
            Set {
                name: "rule-1-tcp".into(),
                elements: SetElements::Port(vec![
                    Interval::single(80),
                    Interval::new(443, 444).unwrap(),
                    Interval::new(60000, 65535).unwrap(),
                ]),
            },
            Set {
                name: "published-v4".into(),
                elements: SetElements::Ipv4(vec![v4([0, 0, 0, 0], [255, 255, 255, 255])]),
            },
            Set {
                name: "empty-v4".into(),
                elements: SetElements::Ipv4(vec![]),
            },
            Set {
                name: "rule-3-rate-v4".into(),
                elements: SetElements::Meter(Meter {
                    family: Family::Ipv4,
                    size: 65535,
                    timeout_secs: Some(60),
                }),
            },
            Set {
                name: "rule-3-conn-v6".into(),
                elements: SetElements::Meter(Meter {
                    family: Family::Ipv6,
                    size: 1024,
                    timeout_secs: None,
                }),
            },
        ],
        chains: vec![
            Chain {
                name: "forward".into(),
                hook: base("forward"),
                rules: vec![
                    rule(
                        "established",
                        vec![Match::CtState(CtState::NotNew)],
                        vec![],
                        Some(Verdict::Accept),
                    ),
                    rule(
                        "from eth0",
                        vec![Match::IifName(exact("eth0"))],
                        vec![],
                        Some(Verdict::Goto("guarded".into())),
                    ),
                    rule(
                        "from wg",
                        vec![Match::IifName(prefix("wg"))],
                        vec![],
                        Some(Verdict::Goto("guarded".into())),
                    ),
                ],
            },
            Chain {
                name: "input".into(),
                hook: base("input"),
                rules: vec![rule(
                    "proxy",
                    vec![Match::CtState(CtState::New), Match::IifName(exact("eth0"))],
                    vec![],
                    Some(Verdict::Jump("guarded".into())),
                )],
            },
            Chain {
                name: "guarded".into(),
                hook: None,
                rules: vec![
                    rule(
                        "dnat",
                        vec![Match::CtStatusDnat],
                        vec![],
                        Some(Verdict::Goto("policy".into())),
                    ),
                    rule(
                        "docker0",
                        vec![Match::OifName(exact("docker0"))],
                        vec![],
                        Some(Verdict::Goto("policy".into())),
                    ),
                    rule(
                        "bridges",
                        vec![Match::OifName(prefix("br-"))],
                        vec![],
                        Some(Verdict::Goto("policy".into())),
                    ),
                ],
            },
            Chain {
                name: "policy".into(),
                hook: None,
                rules: vec![
                    rule(
                        "web",
                        vec![
                            Match::IifName(exact("eth0")),
                            Match::NfProto(Family::Ipv4),
                            Match::SourceIn {
                                family: Family::Ipv4,
                                set: "admins-v4".into(),
                            },
                            Match::DialledAddrIn {
                                family: Family::Ipv4,
                                set: "published-v4".into(),
                            },
                            Match::L4Proto(Proto::Tcp),
                            Match::DialledPort(PortMatch::Set("rule-1-tcp".into())),
                        ],
                        vec![],
                        Some(Verdict::Goto("rule-1".into())),
                    ),
                    rule(
                        "dns",
                        vec![
                            Match::NfProto(Family::Ipv6),
                            Match::SourceIn {
                                family: Family::Ipv6,
                                set: "rule-3-from-v6".into(),
                            },
                            Match::L4Proto(Proto::Udp),
                            Match::DialledPort(PortMatch::Single(53)),
                        ],
                        vec![],
                        Some(Verdict::Goto("rule-3".into())),
                    ),
                    rule(
                        "range",
                        vec![
                            Match::L4Proto(Proto::Tcp),
                            Match::DialledPort(PortMatch::Range(8000, 8100)),
                        ],
                        vec![],
                        Some(Verdict::Goto("rule-3".into())),
                    ),
                    rule("default", vec![], vec![], Some(Verdict::Goto("default".into()))),
                ],
            },
            Chain {
                name: "rule-1".into(),
                hook: None,
                rules: vec![
                    rule("web", vec![], vec![Statement::Counter], None),
                    rule(
                        "web",
                        vec![Match::Limit { rate, burst: 10 }],
                        vec![Statement::Log {
                            prefix: "dockfw web: ".into(),
                            group: None,
                        }],
                        None,
                    ),
                    rule("web", vec![], vec![], Some(Verdict::Accept)),
                ],
            },
            Chain {
                name: "rule-3".into(),
                hook: None,
                rules: vec![
                    rule("dns", vec![], vec![Statement::Counter], None),
                    rule(
                        "dns",
                        vec![
                            Match::NfProto(Family::Ipv4),
                            Match::CtState(CtState::New),
                            Match::SourceRateOver {
                                family: Family::Ipv4,
                                set: "rule-3-rate-v4".into(),
                                rate: Rate {
                                    count: 10,
                                    unit: RateUnit::Minute,
                                },
                                burst: 5,
                            },
                        ],
                        vec![],
                        Some(Verdict::Drop),
                    ),
                    rule(
                        "dns",
                        vec![
                            Match::NfProto(Family::Ipv6),
                            Match::SourceConnectionsOver {
                                family: Family::Ipv6,
                                set: "rule-3-conn-v6".into(),
                                count: 20,
                            },
                        ],
                        vec![],
                        Some(Verdict::Drop),
                    ),
                    rule("dns", vec![], vec![], Some(Verdict::Return)),
                ],
            },
            Chain {
                name: "default".into(),
                hook: None,
                rules: vec![
                    rule("default", vec![], vec![Statement::Counter], None),
                    rule(
                        "default",
                        vec![Match::L4Proto(Proto::Tcp)],
                        vec![],
                        Some(Verdict::Reject(RejectWith::TcpReset)),
                    ),
                    rule(
                        "default",
                        vec![],
                        vec![],
                        Some(Verdict::Reject(RejectWith::IcmpxAdminProhibited)),
                    ),
                ],
            },
        ],
    }
}

/// A large ruleset: `rules` rules spread over a few chains and `elements`
/// non-adjacent IPv4 intervals (two kernel elements each) plus a port set.
pub fn large(table: &str, rules: usize, elements: usize) -> Ruleset {
    let intervals: Vec<Interval<Ipv4Addr>> = (0..elements as u32)
        .map(|i| {
            let first = 0x0a00_0000 + i * 4;
            Interval::new(Ipv4Addr::from(first), Ipv4Addr::from(first + 1)).unwrap()
        })
        .collect();
    let ports: Vec<Interval<u16>> = (0..100u16).map(|i| Interval::single(1000 + i * 3)).collect();
    let per_chain = rules.div_ceil(4).max(1);
    let mut chains = vec![Chain {
        name: "forward".into(),
        hook: Some(BaseHook {
            hook: Hook::Forward,
            priority: -5,
        }),
        rules: vec![],
    }];
    for n in 0..rules {
        if n % per_chain == 0 {
            chains.push(Chain {
                name: format!("rule-{}", n / per_chain),
                hook: None,
                rules: vec![],
            });
        }
        let chain = chains.last_mut().unwrap();
        chain.rules.push(rule(
            &format!("rule {n}"),
            vec![
                Match::IifName(exact("eth0")),
                Match::NfProto(Family::Ipv4),
                Match::SourceIn {
                    family: Family::Ipv4,
                    set: "big-v4".into(),
                },
                Match::L4Proto(Proto::Tcp),
                if n % 2 == 0 {
                    Match::DialledPort(PortMatch::Single(n as u16))
                } else {
                    Match::DialledPort(PortMatch::Set("ports".into()))
                },
            ],
            vec![],
            Some(if n % 3 == 0 {
                Verdict::Accept
            } else {
                Verdict::Drop
            }),
        ));
    }
    let jumps: Vec<Rule> = chains[1..]
        .iter()
        .map(|c| rule("dispatch", vec![], vec![], Some(Verdict::Jump(c.name.clone()))))
        .collect();
    chains[0].rules = jumps;
    Ruleset {
        table: table.into(),
        sets: vec![
            Set {
                name: "big-v4".into(),
                elements: SetElements::Ipv4(intervals),
            },
            Set {
                name: "ports".into(),
                elements: SetElements::Port(ports),
            },
        ],
        chains,
    }
}

/// What a ruleset enforces, independent of set names and of the order of
/// sets and chains: chains by name with their hook and rules, each set a
/// rule uses replaced by its contents. Two rulesets with equal `effective`
/// decide every packet alike; unused sets do not count.
pub fn effective(ruleset: &Ruleset) -> Vec<(String, Option<BaseHook>, Vec<Rule>)> {
    let contents = |name: &String| {
        ruleset
            .set(name)
            .map_or_else(|| format!("missing set {name}"), |s| format!("{:?}", s.elements))
    };
    let mut chains: Vec<_> = ruleset
        .chains
        .iter()
        .map(|chain| {
            let rules = chain
                .rules
                .iter()
                .map(|rule| {
                    let mut rule = rule.clone();
                    for m in &mut rule.matches {
                        if let Some(set) = m.set_mut() {
                            *set = contents(set);
                        }
                    }
                    rule
                })
                .collect();
            (chain.name.clone(), chain.hook, rules)
        })
        .collect();
    chains.sort_by(|a, b| a.0.cmp(&b.0));
    chains
}

/// [`realistic`]`("dockfw")`, changed so that an apply takes a Prepare (a
/// new set, a staging copy of a changed one) and then fails: the kernel
/// rejects its Switch (rule 2 "broken-rule" of chain `policy` jumps to a
/// chain that does not exist).
pub fn failing_after_one_transaction() -> Ruleset {
    let mut broken = realistic("dockfw");
    let set = broken.sets.iter_mut().find(|s| s.name == "rule-1-tcp").unwrap();
    set.elements = SetElements::Port(vec![Interval::single(8443)]);
    broken.sets.push(Set {
        name: "new-v4".into(),
        elements: SetElements::Ipv4(vec![Interval::single(Ipv4Addr::new(10, 0, 0, 1))]),
    });
    let policy = broken.chains.iter_mut().find(|c| c.name == "policy").unwrap();
    policy.rules.insert(
        1,
        Rule {
            comment: "uses the new set".into(),
            matches: vec![Match::SourceIn {
                family: Family::Ipv4,
                set: "new-v4".into(),
            }],
            statements: vec![],
            verdict: Some(Verdict::Accept),
        },
    );
    policy.rules.insert(
        2,
        Rule {
            comment: "broken-rule".into(),
            matches: vec![],
            statements: vec![],
            verdict: Some(Verdict::Jump("no-such-chain".into())),
        },
    );
    broken
}
