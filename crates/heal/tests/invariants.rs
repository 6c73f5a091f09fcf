//! Architecture invariants, checked: the engine opens no file or socket, spawns no thread and never sleeps, and its
//! dependencies point one way (nothing of the store's or the program's, no async runtime, no SQL driver).

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read heal source dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Strips `//` comments so that docs may name what the code must not do.
fn code_only(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn engine_sources_do_no_io_threads_or_sleeps() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(files.len() >= 5, "found the engine's sources: {files:?}");
    let banned = [
        "std::fs",
        "std::net",
        "std::thread::spawn",
        "thread::spawn",
        "thread::sleep",
        "std::process",
        "File::open",
        "File::create",
        "TcpStream",
        "UdpSocket",
        "Instant::now",
    ];
    let mut found = Vec::new();
    for file in &files {
        let text = code_only(&std::fs::read_to_string(file).expect("read source"));
        for pattern in banned {
            if text.contains(pattern) {
                found.push(format!("{}: {pattern}", file.display()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "the engine must stay pure; found:\n{}",
        found.join("\n")
    );
}

#[test]
fn engine_dependencies_point_one_way() {
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .expect("read heal's Cargo.toml");
    let deps = manifest
        .split("[dependencies]")
        .nth(1)
        .and_then(|rest| rest.split("\n[").next())
        .expect("a [dependencies] table");
    let names: Vec<&str> = deps
        .lines()
        .filter_map(|l| l.split(['.', '=', ' ']).next())
        .filter(|n| !n.is_empty() && !n.starts_with('#'))
        .collect();
    assert!(
        names.contains(&"hdrhistogram"),
        "parsed the table: {names:?}"
    );
    for banned in [
        "store", "medic", "tokio", "axum", "rusqlite", "reqwest", "ureq", "libc", "rustix",
    ] {
        assert!(
            !names.contains(&banned),
            "heal must not depend on {banned}: {names:?}"
        );
    }
}
