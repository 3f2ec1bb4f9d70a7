//! Prints the nft script for a policy file: `cargo run -p dockfw-core --example plan -- FILE`.
fn main() {
    let path = std::env::args().nth(1).expect("usage: plan FILE");
    let text = std::fs::read_to_string(&path).expect("readable policy file");
    match dockfw_core::parse(&path, &text) {
        Ok(parsed) => {
            for warning in &parsed.warnings {
                eprintln!("{warning}");
            }
            print!(
                "{}",
                dockfw_core::render(&dockfw_core::compile(&parsed.policy, &[]))
            );
        }
        Err(error) => {
            eprintln!("{error}");
            std::process::exit(2);
        }
    }
}
