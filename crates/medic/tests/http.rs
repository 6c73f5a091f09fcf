//! The HTTP API through `tower::ServiceExt::oneshot`: every route, every bad input (4xx `{"error"}`, never a 5xx),
//! and bearer-token authentication of mutating requests.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use medic::app::App;
use medic::config::Config;
use serde_json::{Value, json};
use tower::ServiceExt;

mod support;

struct Fixture {
    router: Router,
    _dir: tempfile::TempDir,
}

fn fixture_with(edit: impl FnOnce(&mut Config)) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.server.data_dir = dir.path().join("data");
    config.http.request_body_bytes_max = 4096;
    config.http.search_k_max = 50;
    edit(&mut config);
    config.validate().unwrap();
    let app = App::open(&config).unwrap();
    Fixture {
        router: medic::daemon::router(Arc::new(app)),
        _dir: dir,
    }
}

fn fixture() -> Fixture {
    fixture_with(|_| {})
}

async fn send(router: &Router, req: Request<Body>) -> (StatusCode, Value, String) {
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let ct = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let bytes = axum::body::to_bytes(resp.into_body(), 64 << 20)
        .await
        .unwrap();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let json = if ct.starts_with("application/json") {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad JSON {text:?}: {e}"))
    } else {
        Value::Null
    };
    (status, json, text)
}

fn json_req(method: &str, uri: &str, body: &Value) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn raw_req(method: &str, uri: &str, ct: Option<&str>, body: impl Into<Body>) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(ct) = ct {
        b = b.header(header::CONTENT_TYPE, ct);
    }
    b.body(body.into()).unwrap()
}

fn empty(method: &str, uri: &str) -> Request<Body> {
    raw_req(method, uri, None, Body::empty())
}

/// A 4xx with a JSON `{"error"}` that mentions `needle`.
fn assert_client_error(got: &(StatusCode, Value, String), status: StatusCode, needle: &str) {
    assert_eq!(got.0, status, "{}", got.2);
    let msg = got.1["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error field: {}", got.2));
    assert!(
        msg.to_lowercase().contains(&needle.to_lowercase()),
        "error {msg:?} should mention {needle:?}"
    );
}

#[tokio::test]
async fn put_get_delete_round_trip_exactly() {
    let f = fixture();
    // Non-dyadic values (0.1 is not exact in binary): they come back as written, not widened to f64.
    let doc = json!({"text": "hello world", "vector": [0.1, 0.2, -0.3, 1e-7, 3.3333333, 0.5, 1e30],
                     "meta": {"lang": "en", "n": 3, "tags": ["a"]}});
    let (s, v, t) = send(&f.router, json_req("PUT", "/v1/docs/a%20b", &doc)).await;
    assert_eq!(s, StatusCode::OK, "{t}");
    assert_eq!(v["id"], "a b");
    let lsn1 = v["lsn"].as_u64().expect("lsn is a number");

    let (s, v, t) = send(&f.router, empty("GET", "/v1/docs/a%20b")).await;
    assert_eq!(s, StatusCode::OK, "{t}");
    let mut expected = doc.clone();
    expected["id"] = json!("a b");
    assert_eq!(v, expected, "{t}");
    assert!(t.contains("[0.1,0.2,-0.3,"), "{t}");

    // Text only: no vector or meta keys come back.
    let (s, v, _) = send(
        &f.router,
        json_req("PUT", "/v1/docs/plain", &json!({"text": ""})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(v["lsn"].as_u64().unwrap() > lsn1);
    let (_, v, _) = send(&f.router, empty("GET", "/v1/docs/plain")).await;
    assert_eq!(v, json!({"id": "plain", "text": ""}));

    let (s, v, _) = send(&f.router, empty("DELETE", "/v1/docs/a%20b")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["id"], "a b");
    let got = send(&f.router, empty("GET", "/v1/docs/a%20b")).await;
    assert_client_error(&got, StatusCode::NOT_FOUND, "no document");
    let got = send(&f.router, empty("DELETE", "/v1/docs/a%20b")).await;
    assert_client_error(&got, StatusCode::NOT_FOUND, "no document");
}

#[tokio::test]
async fn malformed_and_wrong_typed_json_get_4xx_json_errors() {
    let f = fixture();
    let got = send(
        &f.router,
        raw_req("PUT", "/v1/docs/x", Some("application/json"), "{not json"),
    )
    .await;
    assert_client_error(&got, StatusCode::BAD_REQUEST, "json");
    let got = send(
        &f.router,
        json_req("PUT", "/v1/docs/x", &json!({"text": 5})),
    )
    .await;
    assert_client_error(&got, StatusCode::BAD_REQUEST, "text");
    let got = send(
        &f.router,
        json_req("PUT", "/v1/docs/x", &json!({"vector": [1.0]})),
    )
    .await;
    assert_client_error(&got, StatusCode::BAD_REQUEST, "text");
    let got = send(
        &f.router,
        json_req("PUT", "/v1/docs/x", &json!({"text": "t", "meta": [1]})),
    )
    .await;
    assert_client_error(&got, StatusCode::BAD_REQUEST, "meta");
    let got = send(
        &f.router,
        json_req("PUT", "/v1/docs/x", &json!({"text": "t", "extra": 1})),
    )
    .await;
    assert_client_error(&got, StatusCode::BAD_REQUEST, "extra");
    let got = send(
        &f.router,
        raw_req("PUT", "/v1/docs/x", None, "{\"text\":\"t\"}"),
    )
    .await;
    assert_client_error(&got, StatusCode::UNSUPPORTED_MEDIA_TYPE, "content-type");
    // Nothing of the rejected writes was stored.
    let got = send(&f.router, empty("GET", "/v1/docs/x")).await;
    assert_eq!(got.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn oversize_body_names_the_limit() {
    let f = fixture();
    let big = json!({"text": "x".repeat(10_000)});
    let got = send(&f.router, json_req("PUT", "/v1/docs/big", &big)).await;
    assert_client_error(
        &got,
        StatusCode::PAYLOAD_TOO_LARGE,
        "request_body_bytes_max = 4096",
    );
}

#[tokio::test]
async fn bad_ids_and_vectors_are_refused() {
    let f = fixture();
    let long = "i".repeat(257);
    let got = send(
        &f.router,
        json_req("PUT", &format!("/v1/docs/{long}"), &json!({"text": "t"})),
    )
    .await;
    assert!(got.0.is_client_error(), "{}", got.2);
    assert!(
        got.1["error"].as_str().unwrap().contains("256"),
        "{}",
        got.2
    );
    let ok = "i".repeat(256);
    let got = send(
        &f.router,
        json_req("PUT", &format!("/v1/docs/{ok}"), &json!({"text": "t"})),
    )
    .await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.2);

    // 1e39 overflows f32: not finite.
    let got = send(
        &f.router,
        raw_req(
            "PUT",
            "/v1/docs/v",
            Some("application/json"),
            r#"{"text":"t","vector":[1e39, 0]}"#,
        ),
    )
    .await;
    assert_client_error(&got, StatusCode::BAD_REQUEST, "vector[0]");

    let got = send(
        &f.router,
        json_req(
            "PUT",
            "/v1/docs/v",
            &json!({"text": "t", "vector": [1.0, 2.0]}),
        ),
    )
    .await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.2);
    let got = send(
        &f.router,
        json_req(
            "PUT",
            "/v1/docs/w",
            &json!({"text": "t", "vector": [1.0, 2.0, 3.0]}),
        ),
    )
    .await;
    assert!(got.0.is_client_error(), "wrong dimension: {}", got.2);
    assert!(
        got.1["error"].as_str().unwrap().contains("dimension"),
        "{}",
        got.2
    );
    let got = send(&f.router, empty("GET", "/v1/docs/w")).await;
    assert_eq!(got.0, StatusCode::NOT_FOUND, "no partial write");
}

#[tokio::test]
async fn vector_search_ranks_by_cosine_and_validates_input() {
    let f = fixture();
    for (id, v) in [
        ("east", [1.0, 0.0]),
        ("north", [0.0, 1.0]),
        ("northeast", [1.0, 1.0]),
        ("west", [-1.0, 0.0]),
    ] {
        let got = send(
            &f.router,
            json_req(
                "PUT",
                &format!("/v1/docs/{id}"),
                &json!({"text": id, "vector": v}),
            ),
        )
        .await;
        assert_eq!(got.0, StatusCode::OK);
    }
    send(
        &f.router,
        json_req("PUT", "/v1/docs/novec", &json!({"text": "no vector"})),
    )
    .await;
    let (s, v, t) = send(
        &f.router,
        json_req("POST", "/v1/search", &json!({"vector": [2.0, 0.1], "k": 3})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{t}");
    let ids: Vec<&str> = v["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["east", "northeast", "north"]);
    let top = v["hits"][0]["score"].as_f64().unwrap();
    assert!(top > 0.99 && top <= 1.0 + 1e-6, "{top}");

    let got = send(
        &f.router,
        json_req("POST", "/v1/search", &json!({"vector": [1.0, 0.0], "k": 0})),
    )
    .await;
    assert_client_error(&got, StatusCode::BAD_REQUEST, "k = 0");
    let got = send(
        &f.router,
        json_req(
            "POST",
            "/v1/search",
            &json!({"vector": [1.0, 0.0], "k": 51}),
        ),
    )
    .await;
    assert_client_error(&got, StatusCode::BAD_REQUEST, "search_k_max");
    let got = send(
        &f.router,
        json_req(
            "POST",
            "/v1/search",
            &json!({"vector": [1.0, 0.0], "k": -1}),
        ),
    )
    .await;
    assert!(got.0.is_client_error(), "{}", got.2);
    let got = send(
        &f.router,
        json_req(
            "POST",
            "/v1/search",
            &json!({"vector": [1.0, 0.0, 0.0], "k": 1}),
        ),
    )
    .await;
    assert_client_error(&got, StatusCode::BAD_REQUEST, "dimension");
    let got = send(
        &f.router,
        json_req("POST", "/v1/search", &json!({"vector": [0.0, 0.0], "k": 1})),
    )
    .await;
    assert_client_error(&got, StatusCode::BAD_REQUEST, "zero length");
    let got = send(&f.router, json_req("POST", "/v1/search", &json!({"k": 1}))).await;
    assert_client_error(&got, StatusCode::BAD_REQUEST, "vector");
    // Text search: the text index is attached on first use; a query that does not parse names its column.
    let (s, v, t) = send(
        &f.router,
        json_req(
            "POST",
            "/v1/search",
            &json!({"text": "vector", "k": 1, "consistency": "strong"}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{t}");
    assert_eq!(v["hits"][0]["id"], "novec", "{t}");
    let got = send(
        &f.router,
        json_req("POST", "/v1/search", &json!({"text": "(hello", "k": 1})),
    )
    .await;
    assert_client_error(&got, StatusCode::BAD_REQUEST, "query: column");
}

#[tokio::test]
async fn health_status_incidents_heal_and_metrics_answer() {
    let f = fixture();
    send(
        &f.router,
        json_req("PUT", "/v1/docs/a", &json!({"text": "a"})),
    )
    .await;

    let (s, v, t) = send(&f.router, empty("GET", "/health")).await;
    assert_eq!(s, StatusCode::OK, "{t}");
    assert_eq!(v["serving"], true, "{t}");
    assert!(v["state"].is_string(), "{t}");

    for tier in ["deep", "full", "shallow"] {
        let (s, v, t) = send(&f.router, empty("GET", &format!("/v1/health?tier={tier}"))).await;
        assert_eq!(s, StatusCode::OK, "{t}");
        assert!(v["state"].is_string(), "{t}");
        assert!(v["checks"].is_array(), "{t}");
    }
    let got = send(&f.router, empty("GET", "/v1/health?tier=bogus")).await;
    assert_client_error(&got, StatusCode::BAD_REQUEST, "bogus");

    let (s, v, _) = send(
        &f.router,
        json_req("POST", "/v1/heal?dry_run=true", &json!({})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let got = send(&f.router, empty("POST", "/v1/heal?dry_run=maybe")).await;
    assert_client_error(&got, StatusCode::BAD_REQUEST, "query");

    let (s, v, t) = send(&f.router, empty("GET", "/v1/status")).await;
    assert_eq!(s, StatusCode::OK, "{t}");
    for key in [
        "state",
        "active_incidents",
        "repairs_in_flight",
        "kpis",
        "store",
    ] {
        assert!(v.get(key).is_some(), "status lacks {key}: {t}");
    }
    assert_eq!(v["store"]["docs"], 1, "{t}");

    let (s, v, t) = send(&f.router, empty("GET", "/v1/incidents")).await;
    assert_eq!(s, StatusCode::OK, "{t}");
    assert!(v["incidents"].is_array());
    let got = send(&f.router, empty("GET", "/v1/incidents/999999")).await;
    assert_client_error(&got, StatusCode::NOT_FOUND, "999999");
    let got = send(&f.router, empty("GET", "/v1/incidents/abc")).await;
    assert_client_error(&got, StatusCode::BAD_REQUEST, "abc");
    let got = send(
        &f.router,
        empty("POST", "/v1/incidents/999999/false-positive"),
    )
    .await;
    assert_client_error(&got, StatusCode::NOT_FOUND, "999999");
    let got = send(&f.router, empty("GET", "/v1/incidents?limit=0")).await;
    assert_client_error(&got, StatusCode::BAD_REQUEST, "limit");

    let (s, _, text) = send(&f.router, empty("GET", "/metrics")).await;
    assert_eq!(s, StatusCode::OK);
    for name in [
        "# TYPE medic_operation_duration_seconds histogram",
        "medic_documents 1",
        "medic_health_state{state=\"HEALTHY\"}",
        "# TYPE medic_incidents_total counter",
        "medic_incidents_total{severity=\"sev0\"} 0",
        "medic_http_requests_total{route=\"/v1/docs/{id}\",method=\"PUT\",code=\"200\"} 1",
        "medic_heal_cycles_total 1",
        "medic_build_info{version=\"",
    ] {
        assert!(text.contains(name), "metrics lack {name:?}:\n{text}");
    }
    assert!(!text.contains("# EOF"), "{text}");
}

#[tokio::test]
async fn unknown_routes_and_methods_get_json_errors() {
    let f = fixture();
    let got = send(&f.router, empty("GET", "/nope")).await;
    assert_client_error(&got, StatusCode::NOT_FOUND, "route");
    let got = send(&f.router, empty("PATCH", "/v1/docs/a")).await;
    assert_client_error(&got, StatusCode::METHOD_NOT_ALLOWED, "method");
}

#[tokio::test]
async fn a_token_guards_every_mutating_request() {
    let token = "a-token-long-enough-1234";
    let f = fixture_with(|c| {
        c.server.listen = "0.0.0.0:0".into();
        c.server.token = Some(token.into());
    });
    let doc = json!({"text": "t"});
    let got = send(&f.router, json_req("PUT", "/v1/docs/a", &doc)).await;
    assert_client_error(&got, StatusCode::UNAUTHORIZED, "bearer");
    let mut req = json_req("PUT", "/v1/docs/a", &doc);
    req.headers_mut()
        .insert(header::AUTHORIZATION, "Bearer wrong".parse().unwrap());
    let got = send(&f.router, req).await;
    assert_client_error(&got, StatusCode::UNAUTHORIZED, "wrong");
    for (method, uri) in [
        ("DELETE", "/v1/docs/a"),
        ("POST", "/v1/heal"),
        ("POST", "/v1/incidents/1/false-positive"),
    ] {
        let got = send(&f.router, empty(method, uri)).await;
        assert_eq!(got.0, StatusCode::UNAUTHORIZED, "{method} {uri}");
    }
    let got = send(&f.router, empty("GET", "/v1/docs/a")).await;
    assert_eq!(
        got.0,
        StatusCode::NOT_FOUND,
        "reads need no token; nothing was written"
    );

    let mut req = json_req("PUT", "/v1/docs/a", &doc);
    req.headers_mut().insert(
        header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    let got = send(&f.router, req).await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.2);
    let got = send(&f.router, empty("GET", "/v1/docs/a")).await;
    assert_eq!(got.0, StatusCode::OK);

    // A search is a read: no token needed.
    let got = send(
        &f.router,
        json_req("POST", "/v1/search", &json!({"vector": [1.0], "k": 1})),
    )
    .await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.2);
    // Health checks of every tier are reads and stay open (the deep and full tiers log a deprecation warning
    // without the token), and answer with it too.
    let got = send(&f.router, empty("GET", "/v1/health?tier=shallow")).await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.2);
    for uri in ["/v1/health", "/v1/health?tier=deep", "/v1/health?tier=full"] {
        let got = send(&f.router, empty("GET", uri)).await;
        assert_eq!(got.0, StatusCode::OK, "{uri}: {}", got.2);
        let mut req = empty("GET", uri);
        req.headers_mut().insert(
            header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        let got = send(&f.router, req).await;
        assert_eq!(got.0, StatusCode::OK, "{uri}: {}", got.2);
    }
    // The accept-loss and heal routes stay guarded (checked above for heal; accept-loss here).
    let got = send(
        &f.router,
        json_req("POST", "/v1/accept-loss", &json!({"confirm": true})),
    )
    .await;
    assert_eq!(got.0, StatusCode::UNAUTHORIZED, "{}", got.2);
}

#[tokio::test]
async fn store_limits_are_named_in_4xx_errors() {
    let f = fixture_with(|c| c.http.request_body_bytes_max = 4 << 20);
    // Over the store's text_bytes_max (1 MiB) but under the body limit: the store's limit is named.
    let big = json!({"text": "x".repeat((1 << 20) + 1)});
    let got = send(&f.router, json_req("PUT", "/v1/docs/big", &big)).await;
    assert_client_error(&got, StatusCode::PAYLOAD_TOO_LARGE, "text_bytes_max");
    let got = send(&f.router, empty("GET", "/v1/docs/big")).await;
    assert_eq!(got.0, StatusCode::NOT_FOUND, "nothing written");
}

/// A router over an app whose store I/O goes through `faults`.
fn faulty_fixture(faults: Arc<store::IoFaults>, edit: impl FnOnce(&mut Config)) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.server.data_dir = dir.path().join("data");
    edit(&mut config);
    let app = App::open_with_faults(&config, faults).unwrap();
    Fixture {
        router: medic::daemon::router(Arc::new(app)),
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_disk_gets_503_naming_the_request_timeout() {
    let faults = Arc::new(store::IoFaults::default());
    let f = faulty_fixture(faults.clone(), |c| c.http.request_timeout_ms = 1_000);
    faults.set_latency_us(2_000_000);
    let got = send(
        &f.router,
        json_req("PUT", "/v1/docs/slow", &json!({"text": "t"})),
    )
    .await;
    assert_eq!(got.0, StatusCode::SERVICE_UNAVAILABLE, "{}", got.2);
    assert!(
        got.1["error"]
            .as_str()
            .unwrap()
            .contains("request_timeout_ms = 1000"),
        "{}",
        got.2
    );
    faults.set_latency_us(0);
    // The write that timed out still finishes in the background (it was not acknowledged); then all is well.
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    let got = send(&f.router, empty("GET", "/health")).await;
    assert_eq!(got.0, StatusCode::OK, "still serving: {}", got.2);
    let got = send(
        &f.router,
        json_req("PUT", "/v1/docs/fast", &json!({"text": "t"})),
    )
    .await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.2);
}

#[tokio::test]
async fn a_failed_fsync_stops_writes_with_503_and_reads_go_on() {
    let faults = Arc::new(store::IoFaults::default());
    let f = faulty_fixture(faults.clone(), |_| {});
    let got = send(
        &f.router,
        json_req("PUT", "/v1/docs/before", &json!({"text": "kept"})),
    )
    .await;
    assert_eq!(got.0, StatusCode::OK);
    faults.set_fail_fsync(true);
    let got = send(
        &f.router,
        json_req("PUT", "/v1/docs/after", &json!({"text": "lost?"})),
    )
    .await;
    assert_eq!(got.0, StatusCode::SERVICE_UNAVAILABLE, "{}", got.2);
    assert!(got.1["error"].is_string());
    faults.set_fail_fsync(false);
    // The store stopped writing for good (a failed fsync may have dropped pages): writes keep failing, reads work.
    let got = send(
        &f.router,
        json_req("PUT", "/v1/docs/later", &json!({"text": "t"})),
    )
    .await;
    assert_eq!(got.0, StatusCode::SERVICE_UNAVAILABLE, "{}", got.2);
    let got = send(&f.router, empty("GET", "/v1/docs/before")).await;
    assert_eq!(got.0, StatusCode::OK);
    let (s, v, t) = send(&f.router, empty("GET", "/health")).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{t}");
    assert_eq!(v["serving"], false, "{t}");
    assert!(v["poisoned"].is_string(), "{t}");
}

#[tokio::test]
async fn a_full_disk_refuses_writes_with_503_and_never_a_partial_write() {
    let faults = Arc::new(store::IoFaults::default());
    let f = faulty_fixture(faults.clone(), |_| {});
    faults.set_quota_bytes(Some(0));
    let got = send(
        &f.router,
        json_req("PUT", "/v1/docs/full", &json!({"text": "t".repeat(1000)})),
    )
    .await;
    assert_eq!(got.0, StatusCode::SERVICE_UNAVAILABLE, "{}", got.2);
    assert!(got.1["error"].is_string());
    let got = send(&f.router, empty("GET", "/v1/docs/full")).await;
    assert_eq!(got.0, StatusCode::NOT_FOUND, "{}", got.2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_answers_during_a_repair_and_shows_it_in_flight() {
    let faults = Arc::new(store::IoFaults::default());
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.server.data_dir = dir.path().join("data");
    let app = Arc::new(App::open_with_faults(&config, faults.clone()).unwrap());
    let router = medic::daemon::router(app.clone());
    for i in 0..20 {
        let got = send(
            &router,
            json_req("PUT", &format!("/v1/docs/d{i}"), &json!({"text": "t"})),
        )
        .await;
        assert_eq!(got.0, StatusCode::OK, "{}", got.2);
    }
    let got = send(&router, empty("GET", "/v1/status")).await;
    assert_eq!(got.1["repairs_in_flight"], 0, "{}", got.2);
    // The open segment's mirror is lost, and every write is slow: the repair that rebuilds it takes a while.
    let wal = config.server.data_dir.join("wal");
    let mirror = std::fs::read_dir(&wal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "mir"))
        .expect("the open segment has a mirror");
    std::fs::remove_file(&mirror).unwrap();
    faults.set_latency_us(150_000);
    let cycle = {
        let app = app.clone();
        std::thread::spawn(move || app.run_cycle(Some(false)).unwrap())
    };
    let mut seen = None;
    while !cycle.is_finished() {
        let got = send(&router, empty("GET", "/v1/status")).await;
        assert_eq!(got.0, StatusCode::OK, "{}", got.2);
        if got.1["repairs_in_flight"].as_u64() == Some(1) {
            seen = Some(got.1);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let cycle = cycle.join().unwrap();
    faults.set_latency_us(0);
    let seen =
        seen.unwrap_or_else(|| panic!("no status showed the repair in flight; cycle: {cycle}"));
    assert_eq!(seen["cycle_running"], true, "{seen}");
    let running = &seen["repairs_running"][0];
    assert!(
        running["resource"]
            .as_str()
            .is_some_and(|r| r.contains("wal")),
        "{seen}"
    );
    let got = send(&router, empty("GET", "/v1/status")).await;
    assert_eq!(got.1["repairs_in_flight"], 0, "{}", got.2);
    assert_eq!(got.1["cycle_running"], false, "{}", got.2);
}

#[tokio::test]
async fn accept_loss_needs_confirmation_and_with_nothing_lost_accepts_nothing() {
    let f = fixture();
    let got = send(
        &f.router,
        json_req("POST", "/v1/accept-loss", &json!({"confirm": false})),
    )
    .await;
    assert_client_error(&got, StatusCode::BAD_REQUEST, "confirm must be true");
    let got = send(&f.router, json_req("POST", "/v1/accept-loss", &json!({}))).await;
    assert_client_error(&got, StatusCode::BAD_REQUEST, "confirm");
    let got = send(
        &f.router,
        json_req("POST", "/v1/accept-loss", &json!({"confirm": true})),
    )
    .await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.2);
    assert_eq!(got.1["accepted"]["ranges"], json!([]), "{}", got.2);
    assert_eq!(got.1["nothing_lost"], true, "{}", got.2);
    assert!(
        got.1["message"]
            .as_str()
            .is_some_and(|m| m.contains("no acknowledged data is lost")),
        "{}",
        got.2
    );
}

#[tokio::test]
async fn vector_search_scores_huge_and_tiny_magnitudes() {
    let f = fixture();
    for (id, v) in [
        ("huge", json!([1e30, 1e30])),
        ("huge_x", json!([3e38, -3e38])),
        ("tiny", json!([1e-30, 2e-30])),
        ("subnormal", json!([1e-44, 0.0])),
    ] {
        let got = send(
            &f.router,
            json_req(
                "PUT",
                &format!("/v1/docs/{id}"),
                &json!({"text": id, "vector": v}),
            ),
        )
        .await;
        assert_eq!(got.0, StatusCode::OK, "{}", got.2);
    }
    for (query, top) in [
        (json!([1e30, 1e30]), "huge"),
        (json!([1e-30, 1e-30]), "huge"),
        (json!([1e-30, 2e-30]), "tiny"),
        (json!([3e38, -3e38]), "huge_x"),
        (json!([1e-44, 0.0]), "subnormal"),
    ] {
        let (s, v, t) = send(
            &f.router,
            json_req("POST", "/v1/search", &json!({"vector": query, "k": 5})),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{query}: {t}");
        let hits = v["hits"].as_array().unwrap();
        assert_eq!(hits.len(), 4, "{query}: {t}");
        for h in hits {
            let score = h["score"]
                .as_f64()
                .unwrap_or_else(|| panic!("{query}: a finite score: {t}"));
            assert!((-1.0..=1.0).contains(&score), "{query}: {t}");
        }
        assert_eq!(hits[0]["id"], top, "{query}: {t}");
        let best = hits[0]["score"].as_f64().unwrap();
        assert!(best > 0.999_999, "{query}: {t}");
    }
}

#[tokio::test]
async fn a_damaged_knowledge_base_is_moved_aside_and_documents_are_still_served() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.server.data_dir = dir.path().join("data");
    {
        let app = App::open(&config).unwrap();
        app.store()
            .put(
                "a",
                store::Document {
                    text: "still here".into(),
                    vector: None,
                    meta: None,
                },
            )
            .unwrap();
        app.run_cycle(None).unwrap();
        app.close().unwrap();
    }
    let kb = config.server.data_dir.join("medic.sqlite3");
    let mut bytes = std::fs::read(&kb).unwrap();
    for b in &mut bytes[100..4000] {
        *b ^= 0xff;
    }
    std::fs::write(&kb, &bytes).unwrap();

    let app = App::open(&config).expect("a damaged knowledge base does not stop the app");
    let moved_to = app.kb_recreated().expect("recreated").moved_to.clone();
    assert_eq!(
        std::fs::read(&moved_to).unwrap(),
        bytes,
        "the old file is kept aside"
    );
    let router = medic::daemon::router(Arc::new(app));
    let (s, v, t) = send(&router, empty("GET", "/v1/docs/a")).await;
    assert_eq!(s, StatusCode::OK, "{t}");
    assert_eq!(v["text"], "still here");
    let (s, v, t) = send(&router, empty("GET", "/v1/status")).await;
    assert_eq!(s, StatusCode::OK, "{t}");
    let moved = moved_to.display().to_string();
    assert_eq!(v["knowledge_base"]["recreated"]["moved_to"], moved, "{v}");
    assert_eq!(
        v["recovery"]["knowledge_base_recreated"]["moved_to"], moved,
        "{v}"
    );
    assert_eq!(v["knowledge_base"]["damaged_copies"], json!([moved]), "{v}");
    // The engine works on the fresh file.
    let (s, _, t) = send(&router, empty("POST", "/v1/heal")).await;
    assert_eq!(s, StatusCode::OK, "{t}");
}

#[tokio::test]
async fn metrics_expose_the_repairs_family_from_the_start_and_no_fake_zero_kpis() {
    let f = fixture();
    let (s, _, text) = send(&f.router, empty("GET", "/metrics")).await;
    assert_eq!(s, StatusCode::OK, "{text}");
    assert!(
        text.contains("# TYPE medic_repairs_total counter\n"),
        "{text}"
    );
    assert!(text.contains("# HELP medic_repairs_total "), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("medic_repairs_total{strategy=")
                && l.contains("outcome=\"succeeded\"")
                && l.ends_with(" 0")),
        "{text}"
    );
    // No incident yet: MTTD and MTTR are unknown, not 0.
    assert!(text.contains("medic_mttd_seconds NaN\n"), "{text}");
    assert!(text.contains("medic_mttr_seconds NaN\n"), "{text}");
}

/// `GET /metrics` as Prometheus asks for it (OpenMetrics) and as `curl` does (text 0.0.4); both parse, and the plain
/// text passes `promtool check metrics` (Debian's `prometheus` package; `.ci/run` installs it).
#[tokio::test]
async fn metrics_are_openmetrics_for_prometheus_and_pass_promtool_as_plain_text() {
    let f = fixture();
    let (s, _, _) = send(
        &f.router,
        json_req("PUT", "/v1/docs/a", &json!({"text": "x"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let req = Request::builder()
        .method("GET")
        .uri("/metrics")
        .header(
            header::ACCEPT,
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
        )
        .body(Body::empty())
        .unwrap();
    let resp = f.router.clone().oneshot(req).await.unwrap();
    let ct = resp.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_string();
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let om = String::from_utf8(body.to_vec()).unwrap();
    assert!(
        om.ends_with("# EOF\n") && om.contains("# TYPE medic_repairs counter\n"),
        "{om}"
    );

    let (s, _, text) = send(&f.router, empty("GET", "/metrics")).await;
    assert_eq!(s, StatusCode::OK);
    let promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match promtool {
        Ok(c) => c,
        Err(e) if std::env::var_os("MEDIC_SKIP_PROMTOOL").is_some() => {
            eprintln!("promtool not run ({e}); MEDIC_SKIP_PROMTOOL is set");
            return;
        }
        Err(e) => panic!(
            "promtool could not be started ({e}): install Debian's `prometheus` package (as .ci/run does) \
             or set MEDIC_SKIP_PROMTOOL=1"
        ),
    };
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A raw body POSTed or PUT to the real daemon: status and the JSON answer.
fn send_raw(d: &support::Daemon, method: &str, path: &str, body: &str) -> (u16, Value) {
    let url = format!("{}{path}", d.url);
    let req = match method {
        "PUT" => d.agent.put(&url),
        _ => d.agent.post(&url),
    };
    let mut resp = req
        .header("Content-Type", "application/json")
        .send(body.as_bytes())
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|_| json!({"raw": text})),
    )
}

#[test]
fn body_and_query_errors_are_400s_naming_the_field_what_was_expected_and_where() {
    let dir = tempfile::tempdir().unwrap();
    let d = support::Daemon::start(&dir.path().join("data"), dir.path());
    let (s, v) = d.json(
        "PUT",
        "/v1/docs/a",
        Some(&json!({"text": "t", "vector": [1.0, 0.0]})),
    );
    assert_eq!(s, 200, "{v}");
    let error = |v: &Value| -> String {
        let e = v["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error: {v}"))
            .to_string();
        assert!(!e.contains("Failed to deserialize"), "{e}");
        assert!(!e.contains("u64"), "Rust type names: {e}");
        e
    };

    // A string where a number belongs: the field, what it should be, what came, and where.
    let (s, v) = send_raw(&d, "POST", "/v1/search", r#"{"vector":[1,0],"k":"5"}"#);
    assert_eq!(s, 400, "{v}");
    let e = error(&v);
    assert!(e.starts_with("k: expected a whole number"), "{e}");
    assert!(e.contains(r#"got the string "5""#), "{e}");
    assert!(e.contains("(line 1, column 23)"), "{e}");

    // A whole number beyond what JSON numbers carry exactly is out of range, as the contract words it.
    let (s, v) = send_raw(
        &d,
        "POST",
        "/v1/search",
        r#"{"vector":[1,0],"k":99999999999999999999}"#,
    );
    assert_eq!(s, 400, "{v}");
    let e = error(&v);
    assert!(e.starts_with("k: "), "{e}");
    assert!(e.contains("out of range"), "{e}");

    // Malformed JSON and a type error answer the same status.
    let (s, v) = send_raw(&d, "PUT", "/v1/docs/b", "{not json");
    assert_eq!(s, 400, "{v}");
    let e = error(&v);
    assert!(e.starts_with("invalid JSON (line 1, column 2)"), "{e}");
    let (s, v) = send_raw(&d, "PUT", "/v1/docs/b", r#"{"text": 5}"#);
    assert_eq!(s, 400, "{v}");
    let e = error(&v);
    assert!(
        e.starts_with("text: expected a string, got the number 5"),
        "{e}"
    );
    let (s, v) = send_raw(
        &d,
        "PUT",
        "/v1/docs/b",
        r#"{"text": "t", "vector": [1, "x"]}"#,
    );
    assert_eq!(s, 400, "{v}");
    assert!(error(&v).starts_with("vector[1]: expected a number"), "{v}");

    // A query parameter of the wrong kind.
    let (s, v) = d.json("GET", "/v1/incidents?limit=abc", None);
    assert_eq!(s, 400, "{v}");
    let e = error(&v);
    assert!(e.starts_with("limit: expected a whole number"), "{e}");
    assert!(e.contains("query string"), "{e}");

    // A silence given both names of its duration.
    let (s, v) = send_raw(
        &d,
        "POST",
        "/v1/silences",
        r#"{"matchers":["code=slow_io"],"duration":"1h","for":"2h","comment":"x"}"#,
    );
    assert_eq!(s, 400, "{v}");
    let e = error(&v);
    assert!(e.contains(r#""duration" is given twice"#), "{e}");
    assert!(!e.contains("duplicate field"), "{e}");
    d.stop();
}

#[test]
fn accept_loss_with_nothing_lost_says_so_as_the_command_line_does() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = support::Daemon::start(&data, dir.path());
    let (s, v) = d.json("PUT", "/v1/docs/a", Some(&json!({"text": "t"})));
    assert_eq!(s, 200, "{v}");
    let (s, v) = d.json("POST", "/v1/accept-loss", Some(&json!({"confirm": true})));
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["nothing_lost"], true, "{v}");
    assert_eq!(v["accepted"]["ranges"], json!([]), "{v}");
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("nothing to accept")),
        "{v}"
    );
    // The command line through the daemon says the same.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_medic"))
        .args(["accept-loss", "--yes", "--server", &d.url])
        .env_remove("MEDIC_TOKEN")
        .env_remove("MEDIC_SERVER")
        .env_remove("MEDIC_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("nothing to accept"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    d.stop();
}
