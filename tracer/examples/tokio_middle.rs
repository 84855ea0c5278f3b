//! A tokio middle tier for the end-to-end chain tests (tracer/tests/
//! e2e_runtimes.rs): axum on the multi-threaded runtime (4 workers, work
//! stealing); GET /call/<port>/<path> calls http://127.0.0.1:<port>/<path>
//! with hyper-util's pooled client and answers with its body. Built by the
//! test with `cargo build --example tokio_middle`.

use axum::{
    Router,
    body::Bytes,
    extract::{Path, State},
    http::StatusCode,
    routing::get,
};
use http_body_util::{BodyExt, Empty};
use hyper_util::{client::legacy::Client, client::legacy::connect::HttpConnector, rt::TokioExecutor};

type Http = Client<HttpConnector, Empty<Bytes>>;

async fn call(State(client): State<Http>, Path((port, rest)): Path<(u16, String)>) -> (StatusCode, Bytes) {
    let Ok(uri) = format!("http://127.0.0.1:{port}/{rest}").parse() else {
        return (StatusCode::BAD_REQUEST, Bytes::from_static(b"bad path"));
    };
    match client.get(uri).await {
        Ok(resp) => {
            let status = resp.status();
            match resp.into_body().collect().await {
                Ok(body) => (status, body.to_bytes()),
                Err(e) => (StatusCode::BAD_GATEWAY, Bytes::from(e.to_string())),
            }
        }
        Err(e) => (StatusCode::BAD_GATEWAY, Bytes::from(e.to_string())),
    }
}

fn main() {
    let port: u16 = std::env::args().nth(1).and_then(|p| p.parse().ok()).expect("usage: tokio_middle PORT");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().expect("runtime");
    rt.block_on(async move {
        let client: Http = Client::builder(TokioExecutor::new()).build_http();
        let app = Router::new().route("/call/{port}/{*rest}", get(call)).with_state(client);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
        axum::serve(listener, app).await.expect("serve");
    });
}
