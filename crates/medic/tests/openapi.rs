//! `GET /openapi.json` against the router: every route the daemon's source declares (each `.route("PATH", ...)` of
//! `src/daemon/`, with its methods) is described with exactly those methods, and every described path and method
//! is answered by the real `medic serve` through a route — never its fallback (404 "no such route") nor 405.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

mod support;

use serde_json::Value;
use support::Daemon;

const METHODS: [&str; 7] = ["get", "post", "put", "delete", "patch", "head", "options"];

/// Every `.route("PATH", METHODS...)` in the Rust files under `dir` (comments skipped): path → methods.
fn declared_routes(dir: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut routes: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for file in files {
        if file.is_dir() {
            for (path, methods) in declared_routes(&file) {
                routes.entry(path).or_default().extend(methods);
            }
            continue;
        }
        if file.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let code: String = std::fs::read_to_string(&file)
            .unwrap()
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        for (path, methods) in routes_in(&code) {
            assert!(
                !methods.is_empty(),
                "{}: route {path} with no method found",
                file.display()
            );
            routes.entry(path).or_default().extend(methods);
        }
    }
    routes
}

/// The routes declared in one file's code.
fn routes_in(code: &str) -> Vec<(String, BTreeSet<String>)> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find(".route(") {
        rest = &rest[at + ".route(".len()..];
        let args = rest.trim_start();
        let Some(args) = args.strip_prefix('"') else {
            continue;
        };
        let end = args.find('"').unwrap();
        let path = args[..end].to_string();
        // The method router: up to the `)` closing `.route(`.
        let mut depth = 1usize;
        let mut close = None;
        for (i, c) in args[end + 1..].char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        close = Some(end + 1 + i);
                        break;
                    }
                }
                _ => {}
            }
        }
        let body = &args[end + 1..close.expect("a closed .route(")];
        out.push((path, methods_in(body)));
    }
    out
}

/// The method functions called in a method router's expression (`get(..)`, `.put(..)`; not `api::get_doc`).
fn methods_in(expr: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for m in METHODS {
        let call = format!("{m}(");
        let mut from = 0;
        while let Some(i) = expr[from..].find(&call) {
            let at = from + i;
            let before = expr[..at].chars().next_back();
            if before.is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == ':')) {
                found.insert(m.to_string());
            }
            from = at + call.len();
        }
    }
    found
}

/// A value for each path parameter that reaches the handler without changing anything.
fn sample(param: &str) -> &'static str {
    match param {
        "id" => "987654",
        "collection" => "openapi-probe-missing",
        "action" => "ack",
        "strategy" => "openapi_probe_missing",
        "period" => "daily",
        other => panic!("no sample value for path parameter {{{other}}}"),
    }
}

fn params_of(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .collect()
}

fn concrete(path: &str) -> String {
    path.split('/')
        .map(
            |seg| match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(p) => sample(p).to_string(),
                None => seg.to_string(),
            },
        )
        .collect::<Vec<_>>()
        .join("/")
}

#[test]
fn openapi_describes_exactly_the_routes_of_the_router() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/daemon");
    let declared = declared_routes(&src);
    // The scan found the router (a broken scan would make the comparison below vacuous).
    for (path, method) in [
        ("/v1/docs/{id}", "put"),
        ("/v1/docs/{id}", "delete"),
        ("/v1/incidents/{id}/{action}", "post"),
        ("/openapi.json", "get"),
        ("/metrics", "get"),
    ] {
        assert!(
            declared.get(path).is_some_and(|m| m.contains(method)),
            "the scan of {} misses {method} {path}: {declared:?}",
            src.display()
        );
    }

    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::start(&tmp.path().join("data"), tmp.path());
    let (status, doc) = d.json("GET", "/openapi.json", None);
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["openapi"], "3.1.0");
    let (_, health) = d.json("GET", "/health", None);
    assert!(health["serving"].as_bool().is_some(), "{health}");
    let described: BTreeMap<String, BTreeSet<String>> = doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .map(|(path, item)| {
            let methods = item
                .as_object()
                .unwrap()
                .keys()
                .filter(|k| METHODS.contains(&k.as_str()))
                .cloned()
                .collect();
            (path.clone(), methods)
        })
        .collect();

    let mut problems = Vec::new();
    for (path, methods) in &declared {
        match described.get(path) {
            None => problems.push(format!("{path} ({methods:?}) is routed but not described")),
            Some(d) if d != methods => problems.push(format!(
                "{path}: routed for {methods:?}, described for {d:?}"
            )),
            Some(_) => {}
        }
    }
    for path in described.keys() {
        if !declared.contains_key(path) {
            problems.push(format!("{path} is described but no route declares it"));
        }
    }

    // Every described operation: its path parameters declared, responses given, and the daemon routes it.
    for (path, methods) in &described {
        for method in methods {
            let op = &doc["paths"][path][method];
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{method} {path}: no responses"
            );
            for param in params_of(path) {
                let declared_param = op["parameters"].as_array().is_some_and(|ps| {
                    ps.iter()
                        .any(|p| p["in"] == "path" && p["name"] == param && p["required"] == true)
                });
                if !declared_param {
                    problems.push(format!(
                        "{method} {path}: path parameter {{{param}}} not declared"
                    ));
                }
            }
            let url = format!("{}{}", d.url, concrete(path));
            let resp = match method.as_str() {
                "get" => d.agent.get(&url).call(),
                "delete" => d.agent.delete(&url).call(),
                "post" => d.agent.post(&url).send_empty(),
                "put" => d.agent.put(&url).send_empty(),
                other => panic!("{other} {path}: no request for this method"),
            };
            let mut resp = resp.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
            let code = resp.status().as_u16();
            let text = resp.body_mut().read_to_string().unwrap_or_default();
            let fallback = code == 405
                || (code == 404
                    && serde_json::from_str::<Value>(&text).is_ok_and(|v| {
                        v["error"]
                            .as_str()
                            .is_some_and(|e| e.starts_with("no such route"))
                    }));
            if fallback {
                problems.push(format!(
                    "{method} {path} is described but the daemon answers {code} {text}"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // The fallback check above can fail: a route that does not exist is told apart.
    let (code, _, text) = d.request("GET", "/v1/no-such-route", None);
    assert_eq!(code, 404);
    assert!(text.contains("no such route"), "{text}");
    d.stop();
}
