//! The browser pages: the player page `/STREAM/embed.html` (live, and with
//! `?dvr=true` a timeline of the archive to seek, select and export) and
//! the operator page `/admin/`.
//!
//! Everything the pages load is in this binary (`include_bytes!` of
//! `assets/`, hls.js vendored there by `scripts/vendor-web.sh`), so
//! `cargo build` needs no node and a page makes no request to anyone but
//! this server; a `Content-Security-Policy` says so to the browser too.
//!
//! Scripts and styles are served under [`ASSET_PREFIX`]`/VERSION/`, where
//! `VERSION` is a hash of every asset: the URL changes whenever a byte
//! does, so the files are cached as immutable and an upgrade is never
//! half-seen. The pages themselves are `no-cache`.
//!
//! `embed.html` is the packager's to answer (it sits under a stream's path,
//! behind the same playback gate as the stream's playlists): it calls
//! [`embed_page`], or [`refused_page`] when the gate refused. `/admin/`
//! carries no data: its script asks for the API token and calls `/api/v1`
//! with `Authorization: Bearer`, never a cookie, so no other site can make
//! a browser change anything (see docs/api.md, CSRF).

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

/// The first path component of every asset URL; no stream may be named
/// so (see `dvr_common::StreamName`).
pub const ASSET_PREFIX: &str = "_dvr";
/// The operator page's path component; no stream may be named so either.
pub const ADMIN_PREFIX: &str = "admin";

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset {
            name: $name,
            content_type: $type,
            body: include_bytes!(concat!("../assets/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

const ASSETS: &[Asset] = &[
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("common.js", JS),
    asset!("timeline.js", JS),
    asset!("calendar.js", JS),
    asset!("embed.js", JS),
    asset!("admin.js", JS),
    asset!("vendor/hls.min.js", JS),
    asset!("vendor/hls.js.LICENSE", "text/plain; charset=utf-8"),
];

const EMBED_HTML: &str = include_str!("../assets/embed.html");
const ADMIN_HTML: &str = include_str!("../assets/admin.html");

/// The player page may be framed by any site (that is what it is for),
/// and reaches only this origin; hls.js runs its demuxer in a `blob:`
/// worker and feeds the video through a `blob:` MediaSource URL.
const EMBED_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; media-src 'self' blob:; connect-src 'self'; worker-src 'self' blob:; \
    base-uri 'none'; form-action 'none'";
/// The operator page is never framed (no clickjacking of its buttons).
const ADMIN_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// A hash of every asset (12 hex digits): the version in asset URLs.
pub fn version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        let mut hasher = blake3::Hasher::new();
        for asset in ASSETS {
            hasher.update(asset.name.as_bytes());
            hasher.update(&(asset.body.len() as u64).to_le_bytes());
            hasher.update(asset.body);
        }
        hasher.finalize().to_hex()[..12].to_owned()
    })
}

/// `/admin/` and the assets; merged beside the packager's routes.
pub fn router() -> Router {
    Router::new()
        .route(
            &format!("/{ADMIN_PREFIX}"),
            get(|| async { Redirect::permanent(&format!("/{ADMIN_PREFIX}/")) }),
        )
        .route(&format!("/{ADMIN_PREFIX}/"), get(admin_page))
        .route(
            &format!("/{ASSET_PREFIX}/{{version}}/{{*file}}"),
            get(asset),
        )
}

/// `embed.html` for `stream` (a validated stream name): the page reads
/// its query (`dvr`, `token`, `autoplay`, `mute`, `from`, `to`, `ago`,
/// `play_duration`, `realtime`) in the browser.
pub fn embed_page(stream: &str) -> Response {
    page(
        StatusCode::OK,
        &render(EMBED_HTML, stream, ""),
        EMBED_CSP,
        false,
    )
}

/// `embed.html` when the playback gate refused: `403`, and the page says
/// why instead of a player that would fail on every request.
pub fn refused_page(stream: &str) -> Response {
    let message = "This stream needs a valid token: open the page with the \
                   <code>?token=</code> your provider gave you.";
    page(
        StatusCode::FORBIDDEN,
        &render(EMBED_HTML, stream, message),
        EMBED_CSP,
        false,
    )
}

async fn admin_page() -> Response {
    page(StatusCode::OK, &render(ADMIN_HTML, "", ""), ADMIN_CSP, true)
}

/// Fills the template's `{{ASSETS}}`, `{{STREAM}}` and `{{REFUSED}}`.
fn render(template: &str, stream: &str, refused: &str) -> String {
    template
        .replace("{{ASSETS}}", &format!("/{ASSET_PREFIX}/{}", version()))
        .replace("{{STREAM}}", &escape(stream))
        .replace("{{REFUSED}}", refused)
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page(status: StatusCode, html: &str, csp: &'static str, no_frames: bool) -> Response {
    let tag = format!("\"{}\"", &blake3::hash(html.as_bytes()).to_hex()[..16]);
    let mut response = (status, html.to_owned()).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if no_frames {
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    if let Ok(tag) = HeaderValue::from_str(&tag) {
        h.insert(header::ETAG, tag);
    }
    response
}

async fn asset(Path((asked, file)): Path<(String, String)>, headers: HeaderMap) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.name == file) else {
        return (StatusCode::NOT_FOUND, format!("no such asset {file:?}\n")).into_response();
    };
    let current = asked == version();
    let tag = format!("\"{}\"", version());
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    let mut response = if fresh && current {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (StatusCode::OK, asset.body).into_response()
    };
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // A page of an older or newer build asking during an upgrade gets what
    // this build has, but must not keep it under that version's URL.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if current {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        }),
    );
    if current {
        if let Ok(tag) = HeaderValue::from_str(&tag) {
            h.insert(header::ETAG, tag);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn ask(path: &str, etag: Option<&str>) -> Response {
        let mut request = Request::get(path);
        if let Some(etag) = etag {
            request = request.header(header::IF_NONE_MATCH, etag);
        }
        router()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn assets_are_immutable_under_their_version_and_tagged() {
        let path = format!("/{ASSET_PREFIX}/{}/vendor/hls.min.js", version());
        let r = ask(&path, None).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.headers()[header::CACHE_CONTROL]
            .to_str()
            .unwrap()
            .contains("immutable"));
        let tag = r.headers()[header::ETAG].to_str().unwrap().to_owned();
        let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        assert!(body.len() > 100_000, "hls.js is {} bytes", body.len());
        assert_eq!(
            ask(&path, Some(&tag)).await.status(),
            StatusCode::NOT_MODIFIED
        );

        let old = ask(&format!("/{ASSET_PREFIX}/0123456789ab/embed.js"), None).await;
        assert_eq!(old.status(), StatusCode::OK);
        assert_eq!(old.headers()[header::CACHE_CONTROL], "no-cache");
        let missing = ask(&format!("/{ASSET_PREFIX}/{}/../lib.rs", version()), None).await;
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn the_admin_page_refuses_frames_and_names_its_assets() {
        assert_eq!(
            ask("/admin", None).await.status(),
            StatusCode::PERMANENT_REDIRECT
        );
        let r = ask("/admin/", None).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::X_FRAME_OPTIONS], "DENY");
        let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        let html = String::from_utf8(body.to_vec()).unwrap();
        assert!(html.contains(&format!("/{ASSET_PREFIX}/{}/admin.js", version())));
        assert!(!html.contains("{{"), "{html}");
    }

    #[test]
    fn no_stream_can_be_named_like_the_pages() {
        for prefix in [ASSET_PREFIX, ADMIN_PREFIX] {
            assert!(dvr_common::RESERVED_STREAM_NAMES.contains(&prefix));
            assert!(dvr_common::StreamName::new(prefix).is_err());
        }
    }

    #[tokio::test]
    async fn the_player_page_escapes_the_stream_and_says_when_refused() {
        let ok = embed_page("news/<hd>");
        assert_eq!(ok.status(), StatusCode::OK);
        assert!(ok.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("connect-src 'self'"));
        let html = axum::body::to_bytes(ok.into_body(), 1 << 20).await.unwrap();
        let html = String::from_utf8(html.to_vec()).unwrap();
        assert!(html.contains("news/&lt;hd&gt;") && !html.contains("<hd>"));
        let refused = refused_page("ch1");
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        let html = axum::body::to_bytes(refused.into_body(), 1 << 20)
            .await
            .unwrap();
        assert!(String::from_utf8_lossy(&html).contains("needs a valid token"));
    }
}
