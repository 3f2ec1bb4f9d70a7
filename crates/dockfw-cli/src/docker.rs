//! What Docker runs, for `container` and `labels` rules.

use crate::cli::Global;
use anyhow::Result;
use dockfw_core::Container;
use std::fmt;

/// Docker could not be reached and `--require-docker` was given.
#[derive(Debug)]
pub struct Unreachable(pub String);

impl fmt::Display for Unreachable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unreachable {}

/// Running containers, and why the list may be incomplete.
#[derive(Debug, Default)]
pub struct DockerView {
    pub containers: Vec<Container>,
    /// Whether Docker answered.
    pub reachable: bool,
    /// Why Docker was not consulted, for a warning.
    pub problem: Option<String>,
}

pub fn query(global: &Global) -> Result<DockerView> {
    if global.no_docker {
        return Ok(DockerView::default());
    }
    let problem = "Docker is not consulted yet: `container` rules match nothing".to_string();
    if global.require_docker {
        return Err(Unreachable(problem).into());
    }
    Ok(DockerView {
        containers: Vec::new(),
        reachable: false,
        problem: None,
    })
}
