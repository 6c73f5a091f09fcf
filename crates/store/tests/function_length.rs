//! The store and the engine read as lists of named steps: no function of either crate's sources is longer than
//! [`LINES_MAX`] lines. A function is counted from its `fn` line to the closing brace at its own indentation, so a
//! long one fails here with its file and name, whatever it does.

use std::path::{Path, PathBuf};

/// The longest function allowed, in lines.
const LINES_MAX: usize = 100;

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// `(lines, name)` of every function in `text` whose body closes at its own indentation.
fn functions(text: &str) -> Vec<(usize, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let body = line.trim_start();
        let indent = &line[..line.len() - body.len()];
        let after = [
            "pub fn ",
            "pub(crate) fn ",
            "pub(super) fn ",
            "fn ",
            "const fn ",
        ]
        .iter()
        .find_map(|p| body.strip_prefix(p));
        let Some(after) = after else { continue };
        let name: String = after
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let close = format!("{indent}}}");
        if let Some(end) = lines[i + 1..].iter().position(|l| *l == close) {
            out.push((end + 1, name));
        }
    }
    out
}

#[test]
fn no_function_of_the_store_or_the_engine_is_over_the_limit() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut long = Vec::new();
    for dir in [root.join("src"), root.join("../heal/src")] {
        for file in rust_files(&dir) {
            let text = std::fs::read_to_string(&file).unwrap();
            for (n, name) in functions(&text) {
                if n > LINES_MAX {
                    long.push(format!("{} {name}: {n} lines", file.display()));
                }
            }
        }
    }
    assert!(
        long.is_empty(),
        "functions over {LINES_MAX} lines (split them into named steps):\n{}",
        long.join("\n")
    );
}

#[test]
fn the_count_sees_a_long_function() {
    let body: String = (0..120).map(|i| format!("    let x{i} = {i};\n")).collect();
    let text = format!("fn short() {{\n}}\n\nfn long() {{\n{body}}}\n");
    assert_eq!(
        functions(&text),
        vec![(1, "short".to_string()), (121, "long".to_string())]
    );
}
