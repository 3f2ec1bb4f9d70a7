//! Every TOML example in the README and under examples/ is a valid policy.

use dockfw_core::sets::{Content, Loaded, SetSource};

/// Parses a policy, each of its sets' list files and downloads standing in
/// as a one-entry list (the files are the reader's own), each name as
/// resolving to one address; any other external source is left unloaded,
/// and so an error.
fn parse(name: &str, text: &str) -> Result<dockfw_core::Parsed, dockfw_core::PolicyError> {
    let draft = dockfw_core::Draft::parse(name, text)?;
    let mut loaded = Loaded::new();
    for external in draft.external_sources() {
        let content = match external.source {
            SetSource::File { path: list, .. } | SetSource::Url { url: list, .. } => Content::List {
                name: list.clone(),
                bytes: b"192.0.2.1\n".to_vec(),
            },
            SetSource::Names { names, .. } => {
                Content::Resolved(vec![vec!["192.0.2.1".parse().unwrap()]; names.len()])
            }
            _ => continue,
        };
        loaded.insert(external.set, external.index, content);
    }
    draft.resolve(loaded)
}

fn toml_blocks(markdown: &str) -> Vec<String> {
    markdown
        .split("```toml\n")
        .skip(1)
        .map(|block| block.split("```").next().unwrap().to_string())
        .collect()
}

#[test]
fn readme_policies_are_valid() {
    let readme = include_str!("../../../README.md");
    let blocks = toml_blocks(readme);
    assert!(blocks.len() >= 3, "the README shows its policy examples");
    for (i, block) in blocks.iter().enumerate() {
        if let Err(error) = parse(&format!("README block {i}"), block) {
            panic!("README example {i} is invalid:\n{error}\n{block}");
        }
    }
}

#[test]
fn example_files_are_valid_without_warnings() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples");
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path).unwrap();
            let parsed =
                dockfw_core::parse(&path.display().to_string(), &text).unwrap_or_else(|e| panic!("{e}"));
            assert!(
                parsed.warnings.is_empty(),
                "{}: {:#?}",
                path.display(),
                parsed.warnings
            );
            count += 1;
        }
    }
    assert!(count > 0);
}
