//! Builds `lab-echo` as a fully static executable so that it runs inside the
//! busybox-only lab image. A failure does not fail the crate: the lab reports
//! it when it needs the binary, so that plain builds work anywhere.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo::rerun-if-changed=lab-echo/main.rs");
    println!("cargo::rerun-if-changed=build.rs");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let bin = out.join("lab-echo");
    let err = out.join("lab-echo.err");
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let target = std::env::var("TARGET").unwrap_or_default();
    let mut cmd = Command::new(rustc);
    cmd.args(["--edition=2021", "--crate-type=bin", "--crate-name=lab_echo"])
        .args([
            "-C",
            "opt-level=s",
            "-C",
            "target-feature=+crt-static",
            "-C",
            "strip=symbols",
        ])
        .args(["-C", "panic=abort"]);
    if !target.is_empty() {
        cmd.args(["--target", &target]);
    }
    cmd.arg("lab-echo/main.rs").arg("-o").arg(&bin);
    let message = match cmd.output() {
        Ok(o) if o.status.success() => String::new(),
        Ok(o) => format!("rustc {}: {}", o.status, String::from_utf8_lossy(&o.stderr)),
        Err(e) => format!("cannot run rustc: {e}"),
    };
    if !message.is_empty() {
        println!(
            "cargo::warning=lab-echo not built (the lab will not work): {}",
            message.lines().next().unwrap_or("")
        );
        std::fs::write(&bin, b"").expect("write placeholder");
    }
    std::fs::write(&err, message).expect("write lab-echo.err");
}
