//! The overview and the training monitor: the workspace's status, every model with its
//! history, its live progress and its preview grids.

use std::path::PathBuf;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;

use super::paths;
use super::server::{ApiError, AppState, blocking};
use crate::model::folder::control::{self, Request};
use crate::model::folder::{LIVE_FILE, ModelFolder, TrainState};
use crate::workspace::Workspace;

/// The two kinds of model folders: SAEHD models under `model/`, XSeg models under `xseg/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Kind {
    Model,
    Xseg,
}

impl Kind {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "model" => Some(Self::Model),
            "xseg" => Some(Self::Xseg),
            _ => None,
        }
    }

    fn dir(self) -> &'static str {
        match self {
            Self::Model => "model",
            Self::Xseg => "xseg",
        }
    }
}

/// `GET /api/status`: what `dfl status --json` reports.
pub(super) async fn status(State(state): State<AppState>) -> Result<Response, ApiError> {
    let ws = state.ws.clone();
    Ok(Json(blocking(move || Ok(crate::status::read(&ws))).await?).into_response())
}

/// One model in the list.
#[derive(Debug, Serialize)]
struct ModelEntry {
    kind: Kind,
    name: String,
    iteration: Option<u64>,
    /// The live progress file's content, when a run writes one.
    live: Option<Value>,
}

/// `GET /api/models`: every SAEHD and XSeg model.
pub(super) async fn models(State(state): State<AppState>) -> Result<Response, ApiError> {
    let ws = state.ws.clone();
    let list = blocking(move || {
        let mut out = Vec::new();
        for (kind, dir) in [(Kind::Model, ws.models_dir()), (Kind::Xseg, ws.xseg_models_dir())] {
            for (name, folder) in ModelFolder::list_in(&dir) {
                let iteration = folder.latest_state().ok().flatten().map(|s| s.iteration);
                let live = read_live(folder.dir());
                out.push(ModelEntry { kind, name, iteration, live });
            }
        }
        Ok(out)
    })
    .await?;
    Ok(Json(list).into_response())
}

/// Everything the monitor draws for one model.
#[derive(Debug, Serialize)]
struct ModelDetail {
    kind: Kind,
    name: String,
    /// `config.json` as written.
    config: Option<Value>,
    /// The latest checkpoint's state (histories up to the last save).
    state: Option<TrainState>,
    /// The live progress of a running (or the last) run.
    live: Option<Value>,
    /// Iterations of the kept preview grids, oldest first.
    previews: Vec<u64>,
}

/// The folder of `kind/name`, resolved inside the workspace.
fn folder(ws: &Workspace, kind: &str, name: &str) -> Result<(Kind, ModelFolder), ApiError> {
    let refused = |e: paths::PathRefused| ApiError::new(StatusCode::BAD_REQUEST, e.to_string());
    let kind =
        Kind::parse(kind).ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such kind"))?;
    let name = paths::plain_name(name).map_err(refused)?;
    let dir = paths::resolve(ws.root(), &format!("{}/{name}", kind.dir())).map_err(refused)?;
    if !dir.is_dir() {
        let missing = format!("no {} named {name}", kind.dir());
        return Err(ApiError::new(StatusCode::NOT_FOUND, missing));
    }
    Ok((kind, ModelFolder::new(dir)))
}

/// `GET /api/models/{kind}/{name}`.
pub(super) async fn model(
    State(state): State<AppState>,
    Path((kind, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let ws = state.ws.clone();
    let detail = blocking(move || {
        let (kind, folder) = folder(&ws, &kind, &name)?;
        let previews = preview_iterations(&folder.dir().join("previews"));
        Ok(ModelDetail {
            kind,
            config: read_json(&folder.config_path()),
            state: folder.latest_state().ok().flatten(),
            live: read_live(folder.dir()),
            previews,
            name,
        })
    })
    .await?;
    Ok(Json(detail).into_response())
}

/// `GET /api/models/{kind}/{name}/live`: the running trainer's progress (`null` when no run
/// wrote any).
pub(super) async fn live(
    State(state): State<AppState>,
    Path((kind, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let ws = state.ws.clone();
    let live = blocking(move || Ok(read_live(folder(&ws, &kind, &name)?.1.dir()))).await?;
    Ok(Json(live).into_response())
}

/// `GET /api/models/{kind}/{name}/preview.png`: the latest preview grid.
pub(super) async fn preview(
    State(state): State<AppState>,
    Path((kind, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let ws = state.ws.clone();
    png(move || Ok((folder(&ws, &kind, &name)?.1.preview_path(), false))).await
}

/// `GET /api/models/{kind}/{name}/previews/{iteration}`: a kept preview grid.
pub(super) async fn preview_at(
    State(state): State<AppState>,
    Path((kind, name, iteration)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let ws = state.ws.clone();
    png(move || {
        let iteration: u64 = iteration
            .trim_end_matches(".png")
            .parse()
            .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "an iteration number"))?;
        Ok((folder(&ws, &kind, &name)?.1.preview_history_path(iteration), true))
    })
    .await
}

/// Serves a PNG file; `immutable` ones may be cached by the browser.
async fn png(
    locate: impl FnOnce() -> Result<(PathBuf, bool), ApiError> + Send + 'static,
) -> Result<Response, ApiError> {
    let (bytes, immutable) = blocking(move || {
        let (path, immutable) = locate()?;
        let bytes = std::fs::read(&path)
            .map_err(|_| ApiError::new(StatusCode::NOT_FOUND, "not written yet"))?;
        Ok((bytes, immutable))
    })
    .await?;
    let cache = if immutable { "private, max-age=86400, immutable" } else { "no-store" };
    Ok(([(header::CONTENT_TYPE, "image/png"), (header::CACHE_CONTROL, cache)], bytes)
        .into_response())
}

/// Iterations of the `NNNNNNNNN.png` files in `dir`, sorted.
fn preview_iterations(dir: &std::path::Path) -> Vec<u64> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out: Vec<u64> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".png")?.parse().ok())
        .collect();
    out.sort_unstable();
    out
}

/// A model folder's `live.json`, with `running` false when the process that wrote it is gone
/// (a killed run leaves its last `live.json` behind).
fn read_live(dir: &std::path::Path) -> Option<Value> {
    let mut live = read_json(&dir.join(LIVE_FILE))?;
    let pid = live.get("pid").and_then(Value::as_u64);
    let alive = pid.is_some_and(|pid| std::path::Path::new("/proc").join(pid.to_string()).exists());
    if !alive && let Some(running) = live.get_mut("running") {
        *running = Value::Bool(false);
    }
    Some(live)
}

/// A small JSON file's content; `None` when missing, too big or not JSON.
fn read_json(path: &std::path::Path) -> Option<Value> {
    const MAX: u64 = 16 << 20;
    let meta = std::fs::metadata(path).ok()?;
    if meta.len() > MAX {
        return None;
    }
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// The body of a control request.
#[derive(Debug, serde::Deserialize)]
pub(super) struct ControlBody {
    /// `save` or `stop`.
    action: String,
}

/// `POST /api/models/{kind}/{name}/control` with `{"action": "save" | "stop"}`: asks the
/// running trainer, through the model folder's `control.json`, to save now or to stop after
/// its current step.
pub(super) async fn control(
    State(state): State<AppState>,
    Path((kind, name)): Path<(String, String)>,
    Json(body): Json<ControlBody>,
) -> Result<Response, ApiError> {
    let what = match body.action.as_str() {
        "save" => Request::Save,
        "stop" => Request::Stop,
        other => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("unknown action {other:?}"),
            ));
        }
    };
    let ws = state.ws.clone();
    let counters = blocking(move || {
        let (_, folder) = folder(&ws, &kind, &name)?;
        control::request(&folder, what)
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
    })
    .await?;
    Ok(Json(counters).into_response())
}
