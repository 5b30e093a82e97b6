//! docs/openapi.json describes exactly the routes the server serves.

use std::collections::BTreeSet;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tributary_http::{Registry, Server, ROUTES};

fn described() -> BTreeSet<(String, String)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("reading docs/openapi.json"))
            .expect("docs/openapi.json is JSON");
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            out.insert((method.clone(), path.clone()));
        }
    }
    out
}

async fn request(addr: &str, method: &str, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.unwrap();
    let status = raw.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = raw
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

#[test]
fn openapi_lists_exactly_the_served_routes() {
    let served: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(
        described(),
        served,
        "docs/openapi.json vs tributary_http::ROUTES"
    );
}

#[tokio::test]
async fn every_described_route_is_served_and_errors_are_json() {
    let server = Server::bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap().to_string();
    let registry = Registry::new("w", None);
    let (stop_tx, stop) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(registry, None, async move {
        let _ = stop.await;
    }));
    for (method, path) in described() {
        let path = path.replace("{name}", "nope");
        let (status, body) = request(&addr, &method.to_uppercase(), &path).await;
        assert!(
            !body.contains("no route for"),
            "{method} {path} is described but not served: {status} {body}"
        );
        if status == 404 {
            let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(doc["error_code"], 404);
            assert!(
                doc["message"].as_str().unwrap().contains("\"nope\""),
                "{body}"
            );
        }
    }
    let (status, body) = request(&addr, "GET", "/nowhere").await;
    assert_eq!(status, 404);
    assert!(body.contains("no route for GET /nowhere"), "{body}");
    let (status, body) = request(&addr, "GET", "/pipelines/x/pause").await;
    assert_eq!(status, 405);
    assert!(
        body.contains("GET is not allowed on /pipelines/x/pause"),
        "{body}"
    );
    // An empty worker is ready and alive.
    assert_eq!(request(&addr, "GET", "/readyz").await.0, 200);
    assert_eq!(request(&addr, "GET", "/healthz").await.0, 200);
    let _ = stop_tx.send(());
    task.await.unwrap().unwrap();
}
