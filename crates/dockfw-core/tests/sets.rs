//! Sets and their sources: the syntax (every error at its file:line:column),
//! list files as published (FireHOL, ipdeny, Cloudflare, Spamhaus), and where
//! each entry came from.

use dockfw_core::sets::{Content, Loaded, Origin, SetSource};
use dockfw_core::{Draft, Parsed, Severity, parse};
use std::net::IpAddr;
use std::time::Duration;

const GUARD: &str = "[guard]\ninterfaces = [\"eth0\"]\n[sets]\n";

/// The rendered errors of a policy whose draft must fail.
fn errors(sets: &str) -> Vec<String> {
    let error = Draft::parse("policy.toml", &format!("{GUARD}{sets}")).expect_err("should be rejected");
    error.errors().map(ToString::to_string).collect()
}

/// Asserts exactly one error, which starts with `start` (its place and
/// message) and contains each of `needles`.
fn one_error(sets: &str, start: &str, needles: &[&str]) {
    let errors = errors(sets);
    assert_eq!(errors.len(), 1, "expected one error, got {errors:#?}");
    assert!(
        errors[0].starts_with(start),
        "{:?} does not start with {start:?}",
        errors[0]
    );
    for needle in needles {
        assert!(errors[0].contains(needle), "{needle:?} not in {:?}", errors[0]);
    }
}

fn addr(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// Reads `policy` with each file source's content given by `files` (name,
/// text), as the command line would read them from disk.
fn resolve(policy: &str, files: &[(&str, &str)]) -> Result<Parsed, dockfw_core::PolicyError> {
    let draft = Draft::parse("policy.toml", policy)?;
    let mut loaded = Loaded::new();
    for external in draft.external_sources() {
        if let SetSource::File { path, .. } = external.source {
            let (_, text) = files
                .iter()
                .find(|(name, _)| name == path)
                .expect("a file for each source");
            let content = Content::List {
                name: format!("/etc/dockfw/{path}"),
                bytes: text.as_bytes().to_vec(),
            };
            loaded.insert(external.set, external.index, content);
        }
    }
    draft.resolve(loaded)
}

#[test]
fn the_issue_example_parses_into_sources() {
    let text = format!(
        "{GUARD}\
admins    = [\"203.0.113.10\", \"2001:db8::10\"]
countries = {{ file = \"/etc/dockfw/sets/blocked-countries.netset\" }}
cdn       = {{ url = \"https://www.example.com/ips-v4\", refresh = \"1d\" }}
banned    = {{ dynamic = true, timeout = \"1h\" }}
partners  = {{ names = [\"api.partner.example\"], refresh = \"5m\" }}
mixed     = {{ entries = [\"198.51.100.0/24\"], file = \"/etc/dockfw/sets/extra.txt\" }}

[sets.table-form]
entries = \"192.0.2.1\"
"
    );
    let draft = Draft::parse("policy.toml", &text).unwrap();
    let external: Vec<(&str, usize, &str)> = draft
        .external_sources()
        .map(|e| (e.set, e.index, e.source.kind()))
        .collect();
    assert_eq!(
        external,
        [
            ("banned", 0, "dynamic"),
            ("cdn", 0, "url"),
            ("countries", 0, "file"),
            ("mixed", 1, "file"),
            ("partners", 0, "names"),
        ]
    );
    let sources: Vec<&SetSource> = draft.external_sources().map(|e| e.source).collect();
    assert!(matches!(
        sources[0],
        SetSource::Dynamic { timeout: Some(t), location } if *t == Duration::from_secs(3600) && location.line == 7
    ));
    assert!(matches!(
        sources[1],
        SetSource::Url { url, refresh: Some(r), .. } if url == "https://www.example.com/ips-v4" && *r == Duration::from_secs(86_400)
    ));
    assert!(matches!(
        sources[4],
        SetSource::Names { names, refresh: Some(r), .. } if names == &["api.partner.example"] && *r == Duration::from_secs(300)
    ));
    // Without the files and downloads loaded, the policy is not complete.
    let error = parse("policy.toml", &text).unwrap_err();
    let messages: Vec<String> = error.errors().map(ToString::to_string).collect();
    assert!(
        messages.iter().any(|m| m.starts_with(
            "policy.toml:5:22: error: set \"countries\": file \"/etc/dockfw/sets/blocked-countries.netset\" was not read"
        )),
        "{messages:#?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("policy.toml:6:21: error: set \"cdn\": its url source was not loaded")),
        "{messages:#?}"
    );
}

#[test]
fn syntax_errors_are_located() {
    one_error(
        "x = { fil = \"a.txt\" }\n",
        "policy.toml:4:7: error: unknown key \"fil\" in set \"x\"",
        &["did you mean \"file\"?"],
    );
    one_error(
        "x = { url = \"https://example.com/x\", refresh = \"1x\" }\n",
        "policy.toml:4:48: error: set \"x\": refresh \"1x\" is not a duration",
        &["\"30s\", \"5m\", \"1h\" or \"1d\""],
    );
    one_error(
        "x = { dynamic = true, timeout = \"0s\" }\n",
        "policy.toml:4:33: error: set \"x\": timeout \"0s\" must be longer than zero",
        &[],
    );
    one_error(
        "x = { names = [\"a.example\"], refresh = 60 }\n",
        "policy.toml:4:40: error: \"x.refresh\" must be a duration like \"1h\", not integer",
        &[],
    );
    one_error(
        "x = {}\n",
        "policy.toml:4:5: error: set \"x\" has no source",
        &["entries = [", "file = \"PATH\"", "dynamic = true"],
    );
    one_error(
        "x = { dynamic = false }\n",
        "policy.toml:4:5: error: set \"x\" has no source",
        &[],
    );
    one_error(
        "x = { file = 7 }\n",
        "policy.toml:4:14: error: \"x.file\" must be a string, not integer",
        &[],
    );
    one_error(
        "x = { file = \" \" }\n",
        "policy.toml:4:14: error: set \"x\": \"file\" is empty",
        &[],
    );
    one_error(
        "x = { dynamic = \"yes\" }\n",
        "policy.toml:4:17: error: \"x.dynamic\" must be true or false, not string",
        &[],
    );
    one_error(
        "x = { entries = { a = 1 } }\n",
        "policy.toml:4:17: error: \"x.entries\" must be a list of addresses, not table",
        &[],
    );
    one_error(
        "x = 5\n",
        "policy.toml:4:5: error: \"x\" must be a list of addresses or a table of sources",
        &[],
    );
    one_error(
        "x = { entries = [\"192.0.2.1\", \"10.0.0.256\"] }\n",
        "policy.toml:4:31: error: set \"x\": \"10.0.0.256\" is not an IP address",
        &[],
    );
    one_error(
        "x = { url = \"ftp://example.com/x\" }\n",
        "policy.toml:4:13: error: set \"x\": url: \"ftp://example.com/x\" is not an https:// or http:// URL",
        &[],
    );
    one_error(
        "x = { url = \"https:///x\" }\n",
        "policy.toml:4:13: error: set \"x\": url: URL \"https:///x\" has no host",
        &[],
    );
    one_error(
        "x = { names = [\"a.example\", \"192.0.2.1\"] }\n",
        "policy.toml:4:29: error: set \"x\": names: \"192.0.2.1\" is an address, not a name",
        &["entries = [...]"],
    );
    one_error(
        "x = { names = [\"bad name.example\"] }\n",
        "policy.toml:4:16: error: set \"x\": names: \"bad name.example\" is not a DNS name",
        &[],
    );
    one_error(
        "x = { names = [] }\n",
        "policy.toml:4:15: error: set \"x\": \"names\" is an empty list",
        &[],
    );
    one_error(
        "x = { file = \"a.txt\", refresh = \"1h\" }\n",
        "policy.toml:4:33: error: set \"x\": \"refresh\" applies to url and names sources",
        &[],
    );
    one_error(
        "x = { entries = [\"192.0.2.1\"], timeout = \"1h\" }\n",
        "policy.toml:4:42: error: set \"x\": \"timeout\" applies to dynamic sets",
        &["dynamic = true"],
    );
}

#[test]
fn a_dynamic_set_stands_alone() {
    one_error(
        "banned = { dynamic = true, file = \"more.txt\" }\n",
        "policy.toml:4:35: error: set \"banned\": a dynamic set is filled at run time and cannot also have \"file\"",
        &["from = [\"@banned\", \"@banned-static\"]"],
    );
    let errors =
        errors("banned = { entries = [\"192.0.2.1\"], dynamic = true, url = \"https://x.example/\" }\n");
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(errors[0].starts_with("policy.toml:4:22: error: set \"banned\": a dynamic set"));
    assert!(errors[1].contains("cannot also have \"url\""));
}

/// FireHOL's header (abridged), as its `.netset` files start.
const FIREHOL: &str = "\
#
# firehol_level1
#
# ipv4 hash:net ipset
#
# A firewall blacklist composed from IP lists, providing
# maximum protection with minimum false positives.
#
# Maintainer      : FireHOL
# Maintainer URL  : http://iplists.firehol.org/
# List source URL :
# Source File Date: Mon Jan 15 10:32:05 UTC 2024
#
# Category        : attacks
# Version         : 37412
#
# This File Date  : Mon Jan 15 10:41:54 UTC 2024
# Update Frequency: 1 min
# Aggregation     : none
# Entries         : 4 subnets, 285212928 unique IPs
#
# Generated by FireHOL's update-ipsets.sh
# Processed with FireHOL's iprange
#
0.0.0.0/8
1.10.16.0/20
198.51.100.7
224.0.0.0/3
";

/// An ipdeny `.zone` file: one network a line, nothing else.
const IPDENY_ZONE: &str = "2.56.8.0/22\n5.10.128.0/21\n2001:db8:100::/40\n";

/// Cloudflare's ips-v4 and ips-v6 (as published: no newline at the end).
const CLOUDFLARE_V4: &str = "173.245.48.0/20\n103.21.244.0/22\n103.22.200.0/22\n103.31.4.0/22\n141.101.64.0/18\n108.162.192.0/18\n190.93.240.0/20\n188.114.96.0/20\n197.234.240.0/22\n198.41.128.0/17\n162.158.0.0/15\n104.16.0.0/13\n104.24.0.0/14\n172.64.0.0/13\n131.0.72.0/22";
const CLOUDFLARE_V6: &str = "2400:cb00::/32\n2606:4700::/32\n2803:f800::/32\n2405:b500::/32\n2405:8100::/32\n2a06:98c0::/29\n2c0f:f248::/32";

/// Spamhaus DROP: `;` comments, trailing too, CRLF line ends.
const SPAMHAUS: &str =
    "; Spamhaus DROP List 2024/01/15\r\n; Last-Modified: Mon, 15 Jan 2024\r\n1.10.16.0/20 ; SBL256894\r\n";

#[test]
fn published_lists_load_as_they_are() {
    let policy = format!(
        "{GUARD}\
blocked = {{ entries = [\"192.0.2.0/24\"], file = \"firehol_level1.netset\" }}
countries = {{ file = \"de.zone\" }}
cdn = {{ file = \"ips-v4\" }}
cdn6 = {{ file = \"ips-v6\" }}
drop = {{ file = \"drop.txt\" }}
[[rule]]
name = \"no\"
from = [\"@blocked\", \"@countries\", \"@drop\"]
action = \"drop\"
[[rule]]
name = \"web\"
from = [\"@cdn\", \"@cdn6\"]
ports = 443
"
    );
    let parsed = resolve(
        &policy,
        &[
            ("firehol_level1.netset", FIREHOL),
            ("de.zone", IPDENY_ZONE),
            ("ips-v4", CLOUDFLARE_V4),
            ("ips-v6", CLOUDFLARE_V6),
            ("drop.txt", SPAMHAUS),
        ],
    )
    .unwrap();
    let sets = &parsed.policy.sets;
    assert_eq!(sets["blocked"].entries.len(), 1 + 4);
    assert_eq!(sets["countries"].entries.len(), 3);
    assert_eq!(sets["cdn"].entries.len(), 15);
    assert_eq!(sets["cdn6"].entries.len(), 7);
    assert_eq!(sets["drop"].entries.len(), 1);
    assert!(sets["countries"].addrs.contains(addr("2001:db8:1ff::1")));
    assert!(sets["cdn6"].addrs.contains(addr("2606:4700::1111")));

    // The rules hold the sets' addresses: evaluation and the compiled ruleset agree.
    let from = parsed.policy.rules[0].from.as_ref().unwrap();
    assert!(from.addrs.contains(addr("198.51.100.7")) && from.addrs.contains(addr("2.56.9.1")));
    assert!(!from.addrs.contains(addr("198.51.100.8")));
    let ruleset = dockfw_core::compile(&parsed.policy, &[]);
    let connection = |source: &str| dockfw_core::Connection {
        interface: "eth0".into(),
        source: addr(source),
        dialled: None,
        port: 443,
        proto: dockfw_core::Proto::Tcp,
    };
    for (source, rule) in [
        ("1.10.20.1", "no"),
        ("104.16.1.1", "web"),
        ("2405:8100::1", "web"),
    ] {
        let decision = dockfw_core::evaluate(&parsed.policy, &[], &connection(source));
        assert!(
            matches!(&decision, dockfw_core::Decision::Rule { name, .. } if name == rule),
            "{source}: {decision:?}"
        );
        assert_eq!(
            dockfw_core::evaluate_ruleset(&ruleset, &connection(source)),
            decision
        );
    }
}

#[test]
fn each_entry_knows_where_it_came_from() {
    let policy = format!(
        "{GUARD}blocked = {{ entries = [\"192.0.2.0/24\",\n  \"198.51.100.7\"], file = \"firehol_level1.netset\" }}\n\
         inline = [\"198.51.100.0/24\"]\n"
    );
    let parsed = resolve(&policy, &[("firehol_level1.netset", FIREHOL)]).unwrap();
    let blocked = &parsed.policy.sets["blocked"];
    let origins: Vec<Origin<'_>> = blocked.origins_of(addr("198.51.100.7")).collect();
    assert_eq!(
        origins,
        [
            Origin::Policy {
                file: "policy.toml",
                line: 5
            },
            Origin::File {
                path: "/etc/dockfw/firehol_level1.netset",
                line: 27
            },
        ]
    );
    assert_eq!(origins[0].to_string(), "written in policy.toml line 5");
    assert_eq!(
        origins[1].to_string(),
        "from /etc/dockfw/firehol_level1.netset line 27"
    );
    let inline: Vec<String> = parsed.policy.sets["inline"]
        .origins_of(addr("198.51.100.7"))
        .map(|o| o.to_string())
        .collect();
    assert_eq!(inline, ["written in policy.toml line 6"]);
    assert_eq!(blocked.origins_of(addr("203.0.113.1")).count(), 0);
}

#[test]
fn a_bad_line_is_an_error_at_its_file_line_and_column() {
    let policy = format!("{GUARD}blocked = {{ file = \"list.txt\" }}\n");
    let error = resolve(&policy, &[("list.txt", "# ok\n10.0.0.0/8\n  10.0.0.1/8 ; bad\n")]).unwrap_err();
    let errors: Vec<String> = error.errors().map(ToString::to_string).collect();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].starts_with(
            "/etc/dockfw/list.txt:3:3: error: set \"blocked\": \"10.0.0.1/8\" has host bits set"
        ),
        "{}",
        errors[0]
    );
    // Not an empty set on top of it.
    assert!(error.diagnostics.iter().all(|d| !d.message.contains("empty")));

    // A page that is no list: the first lines, then how many more.
    let html = "<html>\n".repeat(25);
    let error = resolve(&policy, &[("list.txt", &html)]).unwrap_err();
    let errors: Vec<String> = error.errors().map(ToString::to_string).collect();
    assert_eq!(errors.len(), 11, "{errors:#?}");
    assert!(
        errors[0]
            .starts_with("/etc/dockfw/list.txt:1:1: error: set \"blocked\": \"<html>\" is not an IP address")
    );
    assert!(
        errors.iter().any(|e| e.starts_with(
            "policy.toml:4:20: error: set \"blocked\": /etc/dockfw/list.txt has 15 more bad lines"
        )),
        "{errors:#?}"
    );
}

#[test]
fn what_the_caller_could_not_or_would_not_load() {
    let policy = format!(
        "{GUARD}blocked = {{ file = \"gone.txt\" }}\ncdn = {{ url = \"https://example.com/ips\" }}\n\
         [[rule]]\nfrom = \"@blocked\"\naction = \"drop\"\n[[rule]]\nfrom = \"@cdn\"\n"
    );
    let draft = Draft::parse("policy.toml", &policy).unwrap();
    let mut loaded = Loaded::new();
    for external in draft.external_sources() {
        let content = match external.source {
            SetSource::File { .. } => Content::Failed {
                problem: "cannot read gone.txt: No such file or directory".into(),
                hint: None,
            },
            _ => Content::Skipped {
                why: "url sources are not fetched by check".into(),
            },
        };
        loaded.insert(external.set, external.index, content);
    }
    let error = draft.clone().resolve(loaded).unwrap_err();
    let diagnostics: Vec<String> = error.diagnostics.iter().map(ToString::to_string).collect();
    assert_eq!(
        diagnostics,
        [
            "policy.toml:4:20: error: set \"blocked\": cannot read gone.txt: No such file or directory",
            "policy.toml:5:15: warning: set \"cdn\": url sources are not fetched by check",
        ]
    );

    // Skipped alone: a warning; the set is incomplete, and a rule using it
    // is not called unreachable for want of its addresses.
    let mut loaded = Loaded::new();
    for external in draft.external_sources() {
        let content = match external.source {
            SetSource::File { .. } => Content::List {
                name: "blocked.txt".into(),
                bytes: b"0.0.0.0/0\n".to_vec(),
            },
            _ => Content::Skipped {
                why: "not fetched".into(),
            },
        };
        loaded.insert(external.set, external.index, content);
    }
    let parsed = draft.resolve(loaded).unwrap();
    assert!(!parsed.policy.sets["cdn"].complete && parsed.policy.sets["blocked"].complete);
    let warnings: Vec<String> = parsed.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(warnings, ["policy.toml:5:15: warning: set \"cdn\": not fetched"]);
}

#[test]
fn names_resolve_through_the_caller() {
    let policy = format!(
        "{GUARD}partners = {{ names = [\"a.example\", \"b.example\", \"c.example\"] }}\n[[rule]]\nfrom = \"@partners\"\n"
    );
    let draft = Draft::parse("policy.toml", &policy).unwrap();
    let resolved = |answers: Vec<Vec<IpAddr>>| {
        let mut loaded = Loaded::new();
        loaded.insert("partners", 0, Content::Resolved(answers));
        draft.clone().resolve(loaded)
    };
    let parsed = resolved(vec![
        vec![addr("192.0.2.1"), addr("2001:db8::1")],
        vec![],
        vec![addr("192.0.2.3")],
    ])
    .unwrap();
    let partners = &parsed.policy.sets["partners"];
    let origins: Vec<String> = partners
        .origins_of(addr("2001:db8::1"))
        .map(|o| o.to_string())
        .collect();
    assert_eq!(origins, ["resolved from a.example"]);
    assert!(partners.addrs.contains(addr("192.0.2.3")));
    let warnings: Vec<String> = parsed.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        ["policy.toml:4:22: warning: set \"partners\": b.example resolved to no address"]
    );

    let error = resolved(vec![vec![], vec![], vec![]]).unwrap_err();
    assert_eq!(
        error.errors().next().unwrap().to_string(),
        "policy.toml:4:22: error: set \"partners\": no name resolved to any address"
    );
}

#[test]
fn an_empty_list_is_a_warning_like_an_empty_inline_set() {
    let parsed = resolve(
        &format!("{GUARD}none = {{ file = \"empty.txt\" }}\n[[rule]]\nfrom = \"@none\"\n"),
        &[("empty.txt", "# nothing yet\n")],
    )
    .unwrap();
    let warnings: Vec<(Severity, String)> = parsed
        .warnings
        .iter()
        .map(|w| (w.severity, w.to_string()))
        .collect();
    assert_eq!(
        warnings,
        [(
            Severity::Warning,
            "policy.toml:4:8: warning: set \"none\" is empty and matches nothing".to_string()
        )]
    );
}
