//! Parsing and validation: every field, every error, with its place and hint.

use dockfw_core::interval::Interval;
use dockfw_core::ruleset::{IfName, Rate, RateUnit};
use dockfw_core::{Action, Severity, parse};
use std::collections::BTreeMap;

const GUARD: &str = "[guard]\ninterfaces = [\"eth0\", \"eth1\", \"wg*\"]\n";

/// The rendered errors of a policy that must fail.
fn errors(text: &str) -> Vec<String> {
    let error = parse("policy.toml", text).expect_err("policy should be rejected");
    error.errors().map(ToString::to_string).collect()
}

/// Asserts exactly one error, containing each of `needles`.
fn one_error(text: &str, needles: &[&str]) {
    let errors = errors(text);
    assert_eq!(errors.len(), 1, "expected one error, got {errors:#?}");
    for needle in needles {
        assert!(errors[0].contains(needle), "{needle:?} not in {:?}", errors[0]);
    }
}

fn rule(body: &str) -> String {
    format!("{GUARD}\n[[rule]]\nname = \"web\"\n{body}\n")
}

#[test]
fn the_reference_example_parses_with_every_field() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/full.toml")).unwrap();
    let parsed = parse("full.toml", &text).unwrap();
    let policy = &parsed.policy;
    assert_eq!(
        policy.guard.interfaces,
        vec![
            IfName::Exact("eth0".into()),
            IfName::Exact("eth1".into()),
            IfName::Prefix("wg".into())
        ]
    );
    assert_eq!(policy.guard.default, Action::Drop);
    assert!(policy.guard.log);
    assert_eq!(policy.guard.table, "dockfw");
    assert_eq!(policy.guard.priority, -5);
    assert_eq!(
        policy.sets["admins"].addrs.v4.len(),
        1,
        "two adjacent addresses merge into one interval"
    );
    assert_eq!(policy.sets["office"].addrs.v4.len(), 2);
    assert_eq!(policy.sets["office"].addrs.v6.len(), 1);

    let web = &policy.rules[0];
    assert_eq!(web.name, "public web");
    assert_eq!(web.interfaces, Some(vec![IfName::Exact("eth0".into())]));
    assert_eq!(web.from, None, "\"any\" means no restriction");
    let to = web.to.as_ref().unwrap();
    assert!(
        to.addrs.contains("203.0.113.5".parse().unwrap())
            && to.addrs.contains("2001:db8::5".parse().unwrap())
    );
    let ports = web.ports.as_ref().unwrap();
    assert_eq!(
        ports.tcp,
        vec![
            Interval::single(80),
            Interval::single(443),
            Interval::new(8000, 8100).unwrap()
        ]
    );
    assert_eq!(ports.udp, vec![Interval::single(53)]);
    assert_eq!(web.action, Action::Allow);
    assert!(web.log);
    let limit = web.limit.unwrap();
    assert_eq!(
        limit.rate,
        Rate {
            count: 20,
            unit: RateUnit::Second
        }
    );
    assert_eq!(limit.burst, 40);
    assert_eq!(web.max_connections, Some(100));
    assert_eq!(
        web.location.as_ref().unwrap().line,
        21,
        "below the guard and sets"
    );

    let admin = &policy.rules[1];
    assert_eq!(admin.container.as_deref(), Some("django"));
    assert_eq!(
        admin.ports.as_ref().unwrap().tcp,
        vec![Interval::single(8443)],
        "integer ports are tcp"
    );
    let from = admin.from.as_ref().unwrap();
    assert!(from.addrs.contains("203.0.113.10".parse().unwrap()));
    assert!(from.addrs.contains("192.0.2.15".parse().unwrap()));
    assert!(from.addrs.contains("2001:db8:10:ffff::1".parse().unwrap()));
    assert!(!from.addrs.contains("192.0.2.21".parse().unwrap()));
    assert_eq!(
        admin.labels,
        Some(BTreeMap::from([
            ("com.example.env".to_string(), "prod".to_string()),
            ("com.example.tier".to_string(), "web".to_string())
        ]))
    );
    assert_eq!(admin.field_locations["labels"].line, 37);
    assert_eq!(policy.rules[2].action, Action::Reject);
    assert_eq!(policy.rules[3].action, Action::Drop);
    assert_eq!(policy.guard.outbound, Action::Drop);
    assert_eq!(policy.guard.between, Action::Drop);
    assert_eq!(policy.guard.mode, dockfw_core::Mode::Enforce);
    let outbound = &policy.outbound[0];
    assert_eq!(outbound.name, "django calls partners");
    assert_eq!(
        outbound.from.as_ref().unwrap().container.as_deref(),
        Some("django")
    );
    assert!(
        outbound
            .to_addresses()
            .unwrap()
            .addrs
            .contains("2001:db8:99::1".parse().unwrap())
    );
    assert!(outbound.log);
    let between = &policy.between[0];
    assert_eq!(between.selectors().len(), 2);
    assert_eq!(between.action, Action::Allow);
    assert!(parsed.warnings.is_empty(), "{:#?}", parsed.warnings);
}

#[test]
fn defaults_apply_when_fields_are_left_out() {
    let parsed = parse(
        "p.toml",
        "[guard]\ninterfaces = \"eth0\"\n[[rule]]\n[[rule]]\nports = 22\n",
    )
    .unwrap();
    let policy = parsed.policy;
    assert_eq!(
        policy.guard.interfaces,
        vec![IfName::Exact("eth0".into())],
        "a single string is a list of one"
    );
    assert_eq!(policy.guard.default, Action::Drop);
    assert!(!policy.guard.log);
    assert_eq!(policy.guard.table, "dockfw");
    assert_eq!(policy.guard.priority, -5);
    let first = &policy.rules[0];
    assert_eq!(first.name, "rule 1");
    assert_eq!(policy.rules[1].name, "rule 2");
    assert_eq!(
        (first.interfaces.as_ref(), first.from.as_ref(), first.to.as_ref()),
        (None, None, None)
    );
    assert_eq!((first.ports.as_ref(), first.container.as_ref()), (None, None));
    assert_eq!(first.action, Action::Allow);
    assert!(!first.log && first.limit.is_none() && first.max_connections.is_none());
    // The rule with no match fields catches everything, so rule 2 is dead.
    assert_eq!(parsed.warnings.len(), 1);
    assert!(parsed.warnings[0].to_string().contains("can never match"));
}

#[test]
fn forgiving_spellings_are_accepted() {
    let parsed = parse(
        "p.toml",
        &rule("action = \"ACCEPT\"\nports = [\"80/TCP\", \" 53/udp \"]\nfrom = [\" 10.0.0.0/8 \", \"[2001:db8::1]\"]\nlimit = { rate = \"100/min\" }"),
    )
    .unwrap();
    let web = &parsed.policy.rules[0];
    assert_eq!(web.action, Action::Allow);
    assert_eq!(web.ports.as_ref().unwrap().udp, vec![Interval::single(53)]);
    assert_eq!(
        web.limit.unwrap().burst,
        100,
        "burst defaults to the rate's count"
    );
    let default_allow = parse(
        "p.toml",
        "[guard]\ninterfaces = [\"eth0\"]\ndefault = \"allow\"\n",
    )
    .unwrap();
    assert_eq!(default_allow.policy.guard.default, Action::Allow);
}

#[test]
fn invalid_toml_points_at_the_syntax_error() {
    one_error(
        "[guard]\ninterfaces = [\"eth0\"\n",
        &["policy.toml:2:", "invalid TOML"],
    );
}

#[test]
fn unknown_keys_are_errors_with_suggestions() {
    one_error(
        &format!("{GUARD}defualt = \"drop\"\n"),
        &[
            "policy.toml:3:1",
            "unknown key \"defualt\" in [guard]",
            "did you mean \"default\"?",
        ],
    );
    one_error(
        &rule("port = [\"80\"]"),
        &[
            "policy.toml:6:1",
            "rule \"web\"",
            "unknown key \"port\"",
            "did you mean \"ports\"?",
        ],
    );
    one_error(
        &format!("{GUARD}[extra]\n"),
        &["unknown key \"extra\" in the top level"],
    );
    one_error(
        &rule("limit = { rate = \"1/second\", brust = 3 }"),
        &["unknown key \"brust\" in limit", "\"burst\""],
    );
}

#[test]
fn guard_errors() {
    one_error(
        "version = 1\n",
        &["policy.toml:1:1", "[guard] section is missing"],
    );
    one_error(
        "[guard]\ndefault = \"drop\"\n",
        &["policy.toml:1:1", "[guard] needs \"interfaces\""],
    );
    one_error("[guard]\ninterfaces = []\n", &["policy.toml:2:14", "empty list"]);
    one_error(
        "[guard]\ninterfaces = [\"*\"]\n",
        &["would match every interface"],
    );
    one_error(
        "[guard]\ninterfaces = [\"eth0\"]\ndefault = \"deny\"\n",
        &["policy.toml:3:11", "unknown default \"deny\"", "\"drop\""],
    );
    one_error(
        "[guard]\ninterfaces = [\"eth0\"]\npriority = 0\n",
        &["policy.toml:3:12", "priority 0 is out of range", "-99 and -1"],
    );
    one_error(
        "[guard]\ninterfaces = [\"eth0\"]\npriority = -100\n",
        &["out of range"],
    );
    one_error(
        "[guard]\ninterfaces = [\"eth0\"]\ntable = \"my table\"\n",
        &["not a valid nftables name"],
    );
    one_error(
        "[guard]\ninterfaces = [\"eth0\"]\nlog = \"yes\"\n",
        &["\"log\" must be true or false, not string"],
    );
    one_error(
        "[guard]\ninterfaces = [\"eth0\"]\nversion = 1\n",
        &["unknown key \"version\" in [guard]"],
    );
}

#[test]
fn log_target_is_a_group_by_default_or_the_kernel_log() {
    use dockfw_core::policy::{DEFAULT_LOG_GROUP, LogTarget};
    let guard = |extra: &str| {
        parse(
            "policy.toml",
            &format!("[guard]\ninterfaces = [\"eth0\"]\n{extra}"),
        )
        .unwrap()
        .policy
        .guard
        .log_to
    };
    assert_eq!(guard(""), LogTarget::Group(DEFAULT_LOG_GROUP));
    assert_eq!(guard("log_group = 0\n"), LogTarget::Group(0));
    assert_eq!(guard("log_group = 65535\n"), LogTarget::Group(65535));
    assert_eq!(guard("log_to = \"group\"\nlog_group = 5\n"), LogTarget::Group(5));
    assert_eq!(guard("log_to = \"kernel\"\n"), LogTarget::Kernel);
}

#[test]
fn log_target_errors() {
    one_error(
        "[guard]\ninterfaces = [\"eth0\"]\nlog_group = 65536\n",
        &[
            "policy.toml:3:13",
            "log_group 65536 is out of range",
            "0 and 65535",
        ],
    );
    one_error(
        "[guard]\ninterfaces = [\"eth0\"]\nlog_group = -1\n",
        &["policy.toml:3:13", "out of range"],
    );
    one_error(
        "[guard]\ninterfaces = [\"eth0\"]\nlog_group = \"7\"\n",
        &["policy.toml:3:13", "\"log_group\" must be a whole number"],
    );
    one_error(
        "[guard]\ninterfaces = [\"eth0\"]\nlog_to = \"syslog\"\n",
        &["policy.toml:3:10", "unknown log_to \"syslog\"", "\"kernel\""],
    );
    one_error(
        "[guard]\ninterfaces = [\"eth0\"]\nlog_to = \"kernel\"\nlog_group = 3\n",
        &["policy.toml:4:13", "log_to = \"kernel\""],
    );
}

#[test]
fn unknown_version_is_an_error() {
    one_error(
        &format!("version = 2\n{GUARD}"),
        &["policy.toml:1:11", "unknown policy version 2", "version 1"],
    );
}

#[test]
fn address_errors_name_the_rule_and_the_fix() {
    one_error(
        &rule("from = [\"198.51.100.7/24\"]"),
        &[
            "policy.toml:6:9",
            "rule \"web\"",
            "has host bits set",
            "\"198.51.100.0/24\"",
        ],
    );
    one_error(
        &rule("from = [\"10.0.0.9-10.0.0.1\"]"),
        &["reversed", "\"10.0.0.1-10.0.0.9\""],
    );
    one_error(
        &rule("to = [\"300.0.0.1\"]"),
        &["policy.toml:6:7", "\"300.0.0.1\" is not an IP address"],
    );
    one_error(
        &rule("from = [\"@nope\"]"),
        &["set \"@nope\" is not defined", "define it under [sets]"],
    );
    one_error(
        &format!("{GUARD}[sets]\nadmins = [\"192.0.2.1\"]\n[[rule]]\nfrom = \"@admin\"\n"),
        &["rule \"rule 1\"", "did you mean \"@admins\"?"],
    );
    one_error(
        &format!("{GUARD}[sets]\nbad = [\"192.0.3.0/23\"]\n"),
        &["policy.toml:4:8", "set \"bad\"", "host bits"],
    );
    one_error(
        &format!("{GUARD}[sets]\n\"bad name\" = []\n"),
        &["set name \"bad name\" is not allowed"],
    );
    one_error(
        &format!("{GUARD}[sets]\na = [\"@b\"]\n"),
        &["cannot stand in a set"],
    );
    one_error(&rule("from = []"), &["empty list", "remove \"from\""]);
}

#[test]
fn port_errors() {
    one_error(
        &rule("ports = [\"0\"]"),
        &["policy.toml:6:10", "port 0 is out of range", "1 to 65535"],
    );
    one_error(&rule("ports = [65536]"), &["policy.toml:6:10", "out of range"]);
    one_error(
        &rule("ports = [\"8100-8000\"]"),
        &["reversed", "\"8000-8100/tcp\""],
    );
    one_error(&rule("ports = [\"80/icmp\"]"), &["unknown protocol \"icmp\""]);
    one_error(
        &rule("ports = [\"http\"]"),
        &["not a port number", "service names are not looked up"],
    );
    one_error(&rule("ports = [true]"), &["must be a port"]);
}

#[test]
fn rule_errors() {
    one_error(
        &format!("{GUARD}[[rule]]\nname = \"a\"\n[[rule]]\nname = \"a\"\n"),
        &[
            "policy.toml:6:8",
            "the name \"a\" is already used by the rule on line 4",
        ],
    );
    // A given name may not collide with a default one either.
    one_error(
        &format!("{GUARD}[[rule]]\n[[rule]]\nname = \"rule 1\"\n"),
        &["already used"],
    );
    one_error(
        &rule("interfaces = [\"eth9\"]"),
        &[
            "policy.toml:6:14",
            "interface \"eth9\" is not guarded",
            "eth0, eth1, wg*",
        ],
    );
    // A wildcard covers the names it matches, not the other way round.
    assert!(parse("p", &rule("interfaces = [\"wg0\"]")).is_ok());
    one_error(
        "[guard]\ninterfaces = [\"wg0\"]\n[[rule]]\ninterfaces = [\"wg*\"]\n",
        &["\"wg*\" is not guarded"],
    );
    one_error(
        &rule("action = \"deny\""),
        &["unknown action \"deny\"", "\"drop\"", "\"reject\""],
    );
    one_error(
        &rule("action = \"drop\"\nlimit = { rate = \"5/second\" }"),
        &[
            "policy.toml:7:9",
            "\"limit\" only applies to allow rules",
            "action = \"allow\"",
        ],
    );
    one_error(
        &rule("action = \"reject\"\nmax_connections = 5"),
        &["\"max_connections\" only applies to allow rules"],
    );
    one_error(
        &rule("limit = { rate = \"5/fortnight\" }"),
        &["limit.rate", "is not a rate"],
    );
    one_error(&rule("limit = { rate = \"0/second\" }"), &["allows nothing"]);
    one_error(&rule("limit = { burst = 5 }"), &["limit needs a \"rate\""]);
    one_error(
        &rule("limit = { rate = \"5/second\", burst = 0 }"),
        &["burst 0 is out of range"],
    );
    one_error(&rule("limit = \"5/second\""), &["\"limit\" must be a table"]);
    one_error(
        &rule("max_connections = 0"),
        &["max_connections 0 is out of range"],
    );
    one_error(&rule("container = \"\""), &["\"container\" is empty"]);
    one_error(
        &format!("{GUARD}[[rule]]\nname = \"say \\\"hi\\\"\"\n"),
        &["cannot contain '\"'"],
    );
    one_error(
        &format!("{GUARD}[rule]\nname = \"x\"\n"),
        &["array of tables", "[[rule]]"],
    );
}

#[test]
fn labels_select_by_string_values() {
    let parsed = parse(
        "p.toml",
        &rule("labels = { \"com.example.tier\" = \"db\", env = \"prod\" }\ncontainer = \"pg\""),
    )
    .unwrap();
    let web = &parsed.policy.rules[0];
    assert_eq!(web.container.as_deref(), Some("pg"));
    let labels = web.labels.as_ref().unwrap();
    assert_eq!(
        (labels["com.example.tier"].as_str(), labels["env"].as_str()),
        ("db", "prod")
    );
    assert_eq!(web.field_locations["labels"].line, 6);
    assert_eq!(web.field_locations["container"].line, 7);
    // A sub-table works too.
    let parsed = parse(
        "p.toml",
        &format!("{GUARD}[[rule]]\nports = 5432\n[rule.labels]\n\"com.example.tier\" = \"db\"\n"),
    )
    .unwrap();
    assert_eq!(parsed.policy.rules[0].labels.as_ref().unwrap().len(), 1);
}

#[test]
fn label_errors() {
    one_error(
        &rule("labels = {}"),
        &[
            "policy.toml:6:10",
            "\"labels\" is empty, which would select every container",
            "remove \"labels\"",
        ],
    );
    one_error(
        &rule("labels = \"tier=db\""),
        &["policy.toml:6:10", "\"labels\" must be a table", "not string"],
    );
    one_error(
        &rule("labels = { tier = 1 }"),
        &[
            "policy.toml:6:19",
            "labels: \"tier\" must be a string, not integer",
            "write \"tier\" = \"1\"",
        ],
    );
    one_error(
        &rule("labels = { enabled = true }"),
        &["must be a string, not boolean", "\"enabled\" = \"true\""],
    );
    // An unquoted dotted name is a nested table in TOML.
    one_error(
        &rule("labels = { com.example.tier = \"db\" }"),
        &["labels: \"com\" holds a table", "quote the whole label name"],
    );
    one_error(
        &rule("labels = { \"\" = \"db\" }"),
        &["a label name cannot be empty"],
    );
    one_error(
        &rule("lables = { tier = \"db\" }"),
        &["unknown key \"lables\"", "did you mean \"labels\"?"],
    );
    // Every bad label at once.
    let errors = errors(&rule("labels = { a = 1, b = 2 }"));
    assert_eq!(errors.len(), 2, "{errors:#?}");
}

#[test]
fn all_errors_are_reported_at_once_in_file_order() {
    let text =
        format!("{GUARD}[[rule]]\nports = [\"0\"]\nfrom = [\"1.2.3.4/8\"]\n[[rule]]\naction = \"maybe\"\n");
    let errors = errors(&text);
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert!(errors[0].starts_with("policy.toml:4:") && errors[0].contains("port 0"));
    assert!(errors[1].starts_with("policy.toml:5:") && errors[1].contains("host bits"));
    assert!(errors[2].starts_with("policy.toml:7:") && errors[2].contains("rule \"rule 2\""));
}

#[test]
fn shadowed_rules_are_warnings_not_errors() {
    let text = format!(
        "{GUARD}[sets]\nlan = [\"10.0.0.0/8\"]\n\
         [[rule]]\nname = \"lan\"\nfrom = [\"@lan\"]\n\
         [[rule]]\nname = \"lan web\"\nfrom = [\"10.1.0.0/16\"]\nports = [\"80\"]\n\
         [[rule]]\nname = \"web eth0\"\ninterfaces = [\"eth0\"]\nports = [\"80-90\"]\n\
         [[rule]]\nname = \"port 85\"\nports = [\"85\"]\naction = \"drop\"\n\
         [[rule]]\nname = \"all web\"\nports = [\"80-90\"]\n"
    );
    let parsed = parse("policy.toml", &text).unwrap();
    let warnings: Vec<String> = parsed.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(
        warnings[0].contains("rule \"lan web\": this rule can never match: rule \"lan\" (line 5)"),
        "{}",
        warnings[0]
    );
    assert!(parsed.warnings.iter().all(|w| w.severity == Severity::Warning));
}

#[test]
fn shadowing_accounts_for_container_selection() {
    let warnings = |rules: &str| -> Vec<String> {
        parse("policy.toml", &format!("{GUARD}{rules}"))
            .unwrap()
            .warnings
            .iter()
            .map(ToString::to_string)
            .collect()
    };
    // Fewer labels select more containers: the second rule is dead.
    let dead = warnings(
        "[[rule]]\nname = \"db\"\nlabels = { tier = \"db\" }\n\
         [[rule]]\nname = \"prod db\"\nlabels = { tier = \"db\", env = \"prod\" }\ncontainer = \"pg\"\n",
    );
    assert_eq!(dead.len(), 1, "{dead:#?}");
    assert!(dead[0].contains("rule \"prod db\": this rule can never match: rule \"db\""));
    // More labels, or another value, select fewer or other containers.
    assert!(
        warnings(
            "[[rule]]\nlabels = { tier = \"db\", env = \"prod\" }\n[[rule]]\nlabels = { tier = \"db\" }\n\
             [[rule]]\nlabels = { tier = \"web\" }\n[[rule]]\ncontainer = \"pg\"\n[[rule]]\ncontainer = \"web\"\n"
        )
        .is_empty()
    );
    // A plain rule with ports cannot be shown to cover a container rule:
    // routed clients reach the container at its container ports.
    assert!(warnings("[[rule]]\nports = 8081\n[[rule]]\ncontainer = \"django\"\nports = 8081\n").is_empty());
    // Without ports it covers everything the container rule would match.
    assert_eq!(
        warnings("[[rule]]\nfrom = \"any\"\n[[rule]]\ncontainer = \"django\"\n").len(),
        1
    );
    // A container rule never covers a plain one.
    assert!(warnings("[[rule]]\ncontainer = \"django\"\n[[rule]]\nports = 80\n").is_empty());
}

#[test]
fn other_warnings() {
    let parsed = parse(
        "p.toml",
        &format!("{GUARD}[sets]\nunused = [\"192.0.2.1\"]\n[[rule]]\nfrom = [\"any\", \"10.0.0.0/8\"]\n"),
    )
    .unwrap();
    let warnings: Vec<String> = parsed.warnings.iter().map(ToString::to_string).collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("\"any\" makes the other entries pointless")),
        "{warnings:#?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("set \"unused\" is defined but no rule uses it")),
        "{warnings:#?}"
    );
}

#[test]
fn diagnostics_serialise_to_json() {
    let error = parse("p.toml", &rule("ports = [\"0\"]")).unwrap_err();
    let json = serde_json::to_value(&error).unwrap();
    assert_eq!(json["diagnostics"][0]["location"]["line"], 6);
    assert_eq!(json["diagnostics"][0]["rule"], "web");
    assert_eq!(json["diagnostics"][0]["severity"], "error");
}

#[test]
fn text_that_is_not_utf8_is_located_at_the_bad_byte() {
    let bytes = b"[guard]\ninterfaces = [\"eth0\"]\n[[rule]]\nname = \"caf\xe9\"\n";
    let error = dockfw_core::parse_bytes("p.toml", bytes).unwrap_err();
    assert_eq!(error.diagnostics.len(), 1, "{error}");
    let shown = error.diagnostics[0].to_string();
    assert!(
        shown.starts_with("p.toml:4:12: error: the policy is not UTF-8 text: 0xe9 is not valid UTF-8"),
        "{shown}"
    );
    // Columns count characters: the valid 'é' before the bad byte is one column.
    let bytes = [&b"[guard]\n# \xc3\xa9"[..], b"\xff"].concat();
    let error = dockfw_core::parse_bytes("p.toml", &bytes).unwrap_err();
    let location = error.diagnostics[0].location.clone().unwrap();
    assert_eq!((location.line, location.column), (2, 4));
    // A character cut short at the end of the file.
    let error = dockfw_core::parse_bytes("p.toml", b"[guard]\n\xe2\x82").unwrap_err();
    assert!(
        error.diagnostics[0].to_string().starts_with("p.toml:2:1: error:"),
        "{error}"
    );
    // Valid UTF-8 reads exactly as `parse` reads it.
    let text = format!("{GUARD}[[rule]]\nports = [80]\n");
    let via_bytes = dockfw_core::parse_bytes("p.toml", text.as_bytes()).unwrap();
    assert_eq!(via_bytes.policy, parse("p.toml", &text).unwrap().policy);
}

#[test]
fn ipv4_mapped_ipv6_addresses_are_refused_with_the_ipv4_form() {
    one_error(
        &rule("from = [\"::ffff:1.2.3.4\"]"),
        &[
            "policy.toml:6:9: error: rule \"web\": from:",
            "\"::ffff:1.2.3.4\" is an IPv4-mapped IPv6 address",
            "never match",
            "hint: IPv4 clients are matched by their IPv4 address: write \"1.2.3.4\"",
        ],
    );
    one_error(
        &rule("to = \"::ffff:198.51.100.7\""),
        &["to:", "write \"198.51.100.7\""],
    );
    one_error(
        &rule("from = [\"::ffff:10.0.0.0/104\"]"),
        &["IPv4-mapped", "write \"10.0.0.0/8\""],
    );
    one_error(
        &rule("from = [\"::ffff:10.0.0.1-::ffff:10.0.0.9\"]"),
        &["IPv4-mapped", "write \"10.0.0.1\""],
    );
    one_error(
        &format!("{GUARD}[sets]\nlan = [\"192.0.2.0/24\", \"::ffff:192.0.2.1\"]\n"),
        &[
            "policy.toml:4:24:",
            "set \"lan\"",
            "IPv4-mapped",
            "write \"192.0.2.1\"",
        ],
    );
    // Ordinary IPv6, and ranges merely spanning the mapped block, stay fine.
    parse(
        "p.toml",
        &rule("from = [\"::/0\", \"2001:db8::1\", \"::1-::fffe:0:0\"]"),
    )
    .unwrap();
}

/// A policy of `rules` rules of one TCP port each, ports repeating past
/// 65,535 (the shape of the 10 MB policy of issue 10).
fn port_per_rule_policy(rules: usize) -> String {
    use std::fmt::Write;
    let mut text = String::from(GUARD);
    for i in 0..rules {
        let _ = write!(text, "[[rule]]\nports = [{}]\n", 1 + i % 65_535);
    }
    text
}

/// Large policies parse and lint, each rule that repeats an earlier port
/// warned about once, naming the first rule with that port. (The time it
/// takes is measured by `cargo xtask bench compile`, not asserted.)
fn large_policy_parses_and_lints(rules: usize) {
    let parsed = parse("big.toml", &port_per_rule_policy(rules)).unwrap();
    assert_eq!(parsed.policy.rules.len(), rules);
    assert_eq!(parsed.warnings.len(), rules.saturating_sub(65_535));
    if let Some(first) = parsed.warnings.first() {
        assert_eq!(first.rule.as_deref(), Some("rule 65536"));
        assert!(
            first.message.contains("rule \"rule 1\" (line 3) above it"),
            "{first}"
        );
    }
}

#[test]
fn a_policy_of_70_000_rules_parses_and_lints() {
    large_policy_parses_and_lints(70_000);
}

/// Tests `--include-ignored` must not run (`cargo xtask test` skips
/// `manual::`).
mod manual {
    /// Slow in a debug build; `cargo xtask bench compile` runs this size in release.
    #[test]
    #[ignore = "manual: slow in debug builds: cargo test --release -p dockfw-core --test parse -- --ignored"]
    fn a_policy_of_500_000_rules_parses_and_lints() {
        super::large_policy_parses_and_lints(500_000);
    }
}
