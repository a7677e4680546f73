//! The server: binding, routes, the change feed, and shutdown.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::broadcast;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;

use super::assets;
use super::auth::{self, Guard};
use super::watch;
use super::{faces, labeller, monitor, tuner};
use crate::device::DeviceRequest;
use crate::workspace::Workspace;

/// Where and how the studio listens.
#[derive(Debug, Clone)]
pub struct StudioOptions {
    /// The address to bind (loopback unless asked otherwise).
    pub host: IpAddr,
    /// The port (0: any free port).
    pub port: u16,
    /// The session token (a fresh random one when `None`).
    pub token: Option<String>,
    /// The device the merge tuner runs models on.
    pub device: DeviceRequest,
}

impl Default for StudioOptions {
    fn default() -> Self {
        Self {
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 7860,
            token: None,
            device: DeviceRequest::Auto,
        }
    }
}

/// Errors that stop the studio.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StudioError {
    /// The address cannot be bound.
    #[error("cannot listen on {addr}: {source}; choose another --port (or stop what uses it)")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The async runtime cannot start.
    #[error("cannot start the server's threads: {0}")]
    Runtime(#[source] std::io::Error),
    /// A token given on the command line is too short to be a secret.
    #[error("the session token must be at least 32 characters of [0-9a-zA-Z_-]")]
    WeakToken,
}

/// What every handler sees.
#[derive(Clone)]
pub(super) struct AppState {
    pub ws: Arc<Workspace>,
    pub guard: Guard,
    pub changes: broadcast::Sender<Vec<String>>,
    /// What the faceset browser keeps between requests.
    pub faces: Arc<faces::FacesState>,
    /// What the XSeg labeller keeps between requests.
    pub labeller: Arc<labeller::LabellerState>,
    /// What the merge tuner keeps between requests (the loaded model).
    pub tuner: Arc<tuner::TunerState>,
}

/// A studio that listens.
pub struct Running {
    runtime: tokio::runtime::Runtime,
    addr: SocketAddr,
    token: String,
    stop: tokio::sync::watch::Sender<bool>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// The URL to open: it carries the session token.
    pub fn url(&self) -> String {
        let host = match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => "127.0.0.1".to_owned(),
            IpAddr::V6(ip) if ip.is_unspecified() => "[::1]".to_owned(),
            IpAddr::V6(ip) => format!("[{ip}]"),
            IpAddr::V4(ip) => ip.to_string(),
        };
        format!("http://{host}:{}/?token={}", self.addr.port(), self.token)
    }

    /// Serves until Ctrl-C or SIGTERM, then stops: open event streams are closed; nothing the
    /// studio writes is left half-written (every write is a temp file and a rename).
    ///
    /// # Errors
    /// The OS error that stopped the server.
    pub fn serve_until_signal(self) -> std::io::Result<()> {
        let Running { runtime, stop, server, .. } = self;
        runtime.block_on(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            let _ = stop.send(true);
            server.await.map_err(std::io::Error::other)?
        })
    }
}

/// Binds and starts the studio over `ws` on its own threads; returns once it listens.
///
/// # Errors
/// [`StudioError`] when the address cannot be bound or the token is weak.
pub fn start(ws: Workspace, opts: &StudioOptions) -> Result<Running, StudioError> {
    let token = match &opts.token {
        Some(t)
            if t.len() >= 32
                && t.chars().all(|c| c.is_ascii_alphanumeric() || "-_".contains(c)) =>
        {
            t.clone()
        }
        Some(_) => return Err(StudioError::WeakToken),
        None => Guard::random_token(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("dfl-studio")
        .enable_all()
        .build()
        .map_err(StudioError::Runtime)?;
    let wanted = SocketAddr::new(opts.host, opts.port);
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(wanted))
        .map_err(|source| StudioError::Bind { addr: wanted, source })?;
    let addr =
        listener.local_addr().map_err(|source| StudioError::Bind { addr: wanted, source })?;
    let guard = Guard::new(token.clone(), addr.port(), opts.host.is_loopback());
    let (changes, _) = broadcast::channel(64);
    let state = AppState {
        ws: Arc::new(ws),
        guard: guard.clone(),
        changes: changes.clone(),
        faces: Arc::default(),
        labeller: Arc::default(),
        tuner: Arc::new(tuner::TunerState::new(opts.device)),
    };
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let app = router(state.clone());
    let mut watcher_stop = stop.subscribe();
    runtime.spawn(async move {
        let ws = state.ws.clone();
        let mut before = tokio::task::spawn_blocking({
            let ws = ws.clone();
            move || watch::snapshot(&ws)
        })
        .await
        .unwrap_or_default();
        let mut tick = tokio::time::interval(watch::POLL);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = watcher_stop.changed() => return,
            }
            let ws = ws.clone();
            let Ok(after) = tokio::task::spawn_blocking(move || watch::snapshot(&ws)).await else {
                continue;
            };
            let topics = watch::changed(&before, &after);
            if !topics.is_empty() {
                let _ = state.changes.send(topics);
            }
            before = after;
        }
    });
    let server = runtime.spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.wait_for(|s| *s).await;
            })
            .await
    });
    Ok(Running { runtime, addr, token, stop, server })
}

fn router(state: AppState) -> Router {
    let guard = state.guard.clone();
    Router::new()
        .route("/", get(index))
        .route("/assets/{file}", get(static_asset))
        .route("/api/status", get(monitor::status))
        .route("/api/events", get(events))
        .route("/api/models", get(monitor::models))
        .route("/api/models/{kind}/{name}", get(monitor::model))
        .route("/api/models/{kind}/{name}/live", get(monitor::live))
        .route("/api/models/{kind}/{name}/preview.png", get(monitor::preview))
        .route("/api/models/{kind}/{name}/previews/{iteration}", get(monitor::preview_at))
        .route("/api/models/{kind}/{name}/control", post(monitor::control))
        .merge(faces::routes())
        .merge(labeller::routes())
        .merge(tuner::routes())
        .layer(axum::middleware::from_fn_with_state(guard, auth::check))
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(state)
}

async fn index(State(state): State<AppState>) -> Response {
    let html = assets::INDEX_HTML.replace("{{TOKEN}}", state.guard.token());
    asset(html, "text/html; charset=utf-8")
}

/// `GET /assets/{file}`: one of the page's embedded scripts and style sheets.
async fn static_asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    match assets::file(&file) {
        Some((body, kind)) => asset(body, kind),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

fn asset(body: impl Into<axum::body::Body>, kind: &'static str) -> Response {
    ([(header::CONTENT_TYPE, kind)], body.into()).into_response()
}

/// Headers every answer carries: no caching of what holds the token, no sniffing, no framing,
/// no referrer (the first URL carries the token).
async fn security_headers(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(assets::CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    response
}

/// Server-sent events: `change` with the JSON list of topics whose files changed
/// (`status`, `model/<name>`, `xseg/<name>`, `faces/<side>`, `live/<kind>/<name>`), within
/// [`watch::POLL`] of the write.
async fn events(State(state): State<AppState>) -> impl IntoResponse {
    let hello =
        tokio_stream::once(Ok::<Event, Infallible>(Event::default().event("hello").data("{}")));
    let changes = BroadcastStream::new(state.changes.subscribe()).filter_map(|topics| {
        let topics = topics.ok()?;
        let data = serde_json::to_string(&topics).ok()?;
        Some(Ok::<Event, Infallible>(Event::default().event("change").data(data)))
    });
    Sse::new(hello.chain(changes)).keep_alive(KeepAlive::default())
}

/// An answer that went wrong: its status and a message for the page, sent as JSON.
#[derive(Debug)]
pub(super) struct ApiError(pub StatusCode, pub String);

impl ApiError {
    /// An error with `status`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self(status, message.into())
    }
}

impl From<super::paths::PathRefused> for ApiError {
    fn from(e: super::paths::PathRefused) -> Self {
        Self(StatusCode::BAD_REQUEST, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

/// Runs file work off the async threads.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}
