//! The web page at `/`: a live service map (from GET /api/topology), the
//! recent traces of a node or an edge (GET /api/traces), and a trace's
//! waterfall (GET /api/traces/{id}). Plain HTML, CSS and JavaScript built
//! into the binary: nothing is fetched from the internet and nothing is
//! built at run time, so the page works on an air-gapped node.

use axum::{
    Router,
    http::{HeaderValue, header},
    response::IntoResponse,
    routing::get,
};

const INDEX_HTML: &str = include_str!("index.html");
const STYLE_CSS: &str = include_str!("style.css");
/// Layout and drawing of the service map (pan, zoom, layered layout).
const MAP_JS: &str = include_str!("map.js");
/// Polling, side panel, trace list and waterfall.
const APP_JS: &str = include_str!("app.js");

/// `/` and the page's assets under `/ui/`.
pub fn routes() -> Router {
    Router::new()
        .route("/", get(|| asset("text/html; charset=utf-8", INDEX_HTML)))
        .route("/ui/style.css", get(|| asset("text/css; charset=utf-8", STYLE_CSS)))
        .route("/ui/map.js", get(|| asset("text/javascript; charset=utf-8", MAP_JS)))
        .route("/ui/app.js", get(|| asset("text/javascript; charset=utf-8", APP_JS)))
}

async fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            // Assets change with the binary; revalidating is cheap on loopback
            // and avoids a stale page after an upgrade.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            // The page loads only its own assets and talks only to this API.
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'",
                ),
            ),
            (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        ],
        body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The page must not reach the internet: no absolute URLs in any asset.
    #[test]
    fn assets_are_self_contained() {
        for (name, text) in
            [("index.html", INDEX_HTML), ("style.css", STYLE_CSS), ("map.js", MAP_JS), ("app.js", APP_JS)]
        {
            // The SVG namespace is an identifier, never fetched.
            let text = text.replace("http://www.w3.org/2000/svg", "");
            for bad in ["http://", "https://", "//cdn", "@import"] {
                assert!(!text.contains(bad), "{name} contains {bad}");
            }
        }
        assert!(INDEX_HTML.contains("/ui/app.js") && INDEX_HTML.contains("/ui/style.css"));
        assert!(APP_JS.contains("from './map.js'"), "app.js imports map.js, which routes() serves");
    }
}
