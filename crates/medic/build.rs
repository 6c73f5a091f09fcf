//! Records the git commit medic is built from (`MEDIC_BUILD_COMMIT`: `medic --version`, `medic_build_info`).
//! Outside a git checkout (a crate tarball, a container build) the commit is `MEDIC_BUILD_COMMIT` from the build's
//! environment when set (`docker build --build-arg MEDIC_BUILD_COMMIT=...`), else "unknown". Uncommitted changes are not detected (asking
//! git would refresh its index file and make every build re-run this script).

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

fn main() {
    println!("cargo:rerun-if-env-changed=MEDIC_BUILD_COMMIT");
    let given = std::env::var("MEDIC_BUILD_COMMIT")
        .ok()
        .filter(|c| !c.is_empty() && c != "unknown");
    let commit = git(&["rev-parse", "--short=12", "HEAD"])
        .or(given)
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=MEDIC_BUILD_COMMIT={commit}");
    // Rebuild when HEAD moves (a commit, a checkout).
    for path in ["HEAD", "packed-refs"] {
        if let Some(p) = git(&["rev-parse", "--git-path", path]) {
            watch(&p);
        }
    }
    if let Some(head_ref) = git(&["symbolic-ref", "-q", "HEAD"])
        && let Some(p) = git(&["rev-parse", "--git-path", &head_ref])
    {
        watch(&p);
    }
}

/// Watches a file that exists (a missing one would make cargo re-run this script on every build).
fn watch(path: &str) {
    if std::path::Path::new(path).exists() {
        println!("cargo:rerun-if-changed={path}");
    }
}
