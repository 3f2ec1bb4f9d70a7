//! `cargo xtask bench …`: not written yet (issue 3 adds `bench apply`).

use anyhow::{Result, bail};
use std::path::Path;

pub fn run(_root: &Path, args: &[String]) -> Result<()> {
    bail!("no benchmark called {:?} yet", args.first())
}
