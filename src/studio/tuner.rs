//! The merge tuner: a dst frame merged with the settings on the page, redrawn as they change,
//! the grid of alternatives `dfl merge --preview` draws, and the merge config file
//! (`data_dst/merge.config.json`: the default settings and per-scene settings) that `dfl
//! merge` then uses.
//!
//! The model stays loaded between requests ([`TunerState`]): one [`Tuner`] for the model and
//! XSeg model last asked for, loaded again when another is asked for or the model saved a newer
//! checkpoint. A frame's predictions are kept by the tuner, so a changed setting costs a merge,
//! not a forward pass. The tuner reads the dst faceset under a shared lock (as `dfl merge`
//! does) and never takes the merge lock: a running `dfl merge` is not disturbed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use clap::ValueEnum;
use opencv::core::{Mat, Size, Vector};
use opencv::imgcodecs;
use opencv::imgproc;
use opencv::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::paths;
use super::server::{ApiError, AppState, blocking};
use crate::color::MergeColorTransfer;
use crate::device::DeviceRequest;
use crate::lock::LockError;
use crate::merge::config::{BlendMode, MaskMode, MergeConfig, SharpenMode};
use crate::merge::{ConfigFileError, MergeError, MergeSettings, PredictError, Tuner};
use crate::model::folder::ModelFolder;
use crate::workspace::Workspace;

/// The widest merged frame sent when the page asks for no width.
const DEFAULT_WIDTH_PX: i32 = 1280;

/// What the merge tuner keeps between requests.
pub(super) struct TunerState {
    /// The device asked for with `dfl --device` (resolved when a model is first loaded).
    request: DeviceRequest,
    /// The loaded tuner (the model stays in memory), if any.
    tuner: Mutex<Option<Tuner>>,
    /// Counts merged-frame requests: one still waiting for the tuner when a newer one came is
    /// answered without merging (the page has moved on).
    renders: AtomicU64,
    /// The device models run on, once resolved.
    device: OnceLock<Result<tch::Device, String>>,
}

impl TunerState {
    /// A tuner that will run models on `request`.
    pub fn new(request: DeviceRequest) -> Self {
        Self {
            request,
            tuner: Mutex::default(),
            renders: AtomicU64::default(),
            device: OnceLock::new(),
        }
    }

    fn device(&self) -> Result<tch::Device, ApiError> {
        self.device
            .get_or_init(|| {
                crate::device::resolve(self.request).map(|d| d.device).map_err(|e| e.to_string())
            })
            .clone()
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e))
    }

    /// Runs `f` on the tuner of `model` (and `xseg`), loading it unless the one in memory is
    /// that model at its latest checkpoint; the dst faces are read again when they changed.
    fn with_tuner<T>(
        &self,
        ws: &Workspace,
        model: &str,
        xseg: Option<&str>,
        f: impl FnOnce(&mut Tuner) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let mut slot = self.tuner.lock().unwrap_or_else(|poisoned| {
            // A request panicked while merging: the tuner it left may be half-updated.
            self.tuner.clear_poison();
            let mut slot = poisoned.into_inner();
            *slot = None;
            slot
        });
        let fits =
            |t: &Tuner| t.model() == model && t.xseg().map(|x| x.0) == xseg && t.is_current(ws);
        match slot.as_mut() {
            Some(tuner) if fits(tuner) => tuner.refresh_faces(ws).map_err(merge_error)?,
            _ => {
                // The old model leaves memory before the new one comes in.
                *slot = None;
                *slot = Some(Tuner::load(ws, model, xseg, self.device()?).map_err(merge_error)?);
            }
        }
        let tuner = slot.as_mut().ok_or_else(|| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the tuner did not load")
        })?;
        f(tuner)
    }
}

/// The routes of the merge tuner.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/tuner/models", get(models))
        .route("/api/tuner/schema", get(schema))
        .route("/api/tuner/session", get(session))
        .route("/api/tuner/render", get(render))
        .route("/api/tuner/grid", get(grid))
        .route("/api/tuner/config", get(read_config).put(save_config))
}

/// A merge error as an answer: a busy faceset is 409; a bad setting, model name or frame 400;
/// a missing model or input 404; a frame that cannot be shown so (no face, no XSeg) 422.
fn merge_error(e: MergeError) -> ApiError {
    let status = match &e {
        MergeError::Lock(LockError::Busy { .. }) => StatusCode::CONFLICT,
        MergeError::Config(_) | MergeError::Scenes(_) | MergeError::Workspace(_) => {
            StatusCode::BAD_REQUEST
        }
        MergeError::Predict(PredictError::Model { .. } | PredictError::Workspace(_))
        | MergeError::NoInput(_)
        | MergeError::Frames(_) => StatusCode::NOT_FOUND,
        MergeError::XSeg(crate::model::xseg::XSegError::Untrained { .. }) => StatusCode::NOT_FOUND,
        MergeError::NeedsXSeg { .. } | MergeError::Preview(_) | MergeError::FrameSize { .. } => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let mut message = e.to_string();
    if let MergeError::NeedsXSeg { .. } = e {
        message = message.replace("pass --xseg NAME", "choose an XSeg model on the page");
    }
    ApiError::new(status, message)
}

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, message)
}

/// One trained model the page may merge with.
#[derive(Debug, Serialize)]
struct ModelEntry {
    name: String,
    /// The latest checkpoint's iteration.
    iteration: u64,
}

/// `GET /api/tuner/models`: the SAEHD models with a checkpoint (`models`), the XSeg models with
/// one (`xseg`), and where the merge config file is.
async fn models(State(state): State<AppState>) -> Result<Response, ApiError> {
    let ws = state.ws.clone();
    let body = blocking(move || {
        let trained = |dir: &std::path::Path| -> Vec<ModelEntry> {
            ModelFolder::list_in(dir)
                .into_iter()
                .filter(|(_, folder)| folder.has_config())
                .filter_map(|(name, folder)| {
                    let iteration = folder.latest_state().ok().flatten()?.iteration;
                    Some(ModelEntry { name, iteration })
                })
                .collect()
        };
        Ok(serde_json::json!({
            "models": trained(&ws.models_dir()),
            "xseg": trained(&ws.xseg_models_dir()),
            "config_file": ws.portable(&ws.merge_config()),
        }))
    })
    .await?;
    Ok(Json(body).into_response())
}

/// One control of the page: a [`MergeConfig`] field.
#[derive(Debug, Serialize)]
struct Field {
    /// The field's name in the JSON.
    name: &'static str,
    /// What the page shows.
    label: &'static str,
    /// A sentence on what it does.
    help: &'static str,
    /// `enum`, `int` or `bool`.
    kind: &'static str,
    /// The values of an `enum`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    options: Vec<Value>,
    /// The range of an `int`, inclusive.
    #[serde(skip_serializing_if = "Option::is_none")]
    min: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max: Option<i32>,
    /// The default value.
    default: Value,
}

/// The JSON names of every value of a value enum.
fn options<T: ValueEnum + Serialize>() -> Vec<Value> {
    T::value_variants().iter().filter_map(|v| serde_json::to_value(v).ok()).collect()
}

/// `GET /api/tuner/schema`: every merge setting with its kind, its values or range (the ones
/// `dfl merge` accepts) and its default, in the order the page shows them.
async fn schema() -> Response {
    let defaults = serde_json::to_value(MergeConfig::default()).unwrap_or(Value::Null);
    let range = |name: &str| MergeConfig::RANGES.iter().find(|r| r.0 == name).map(|r| (r.1, r.2));
    let field = |name: &'static str, label, help, kind, options| {
        let (min, max) = range(name).unzip();
        Field { name, label, help, kind, options, min, max, default: defaults[name].clone() }
    };
    let fields = vec![
        field("mode", "Mode", "how the face goes into the frame", "enum", options::<BlendMode>()),
        field(
            "mask_mode",
            "Mask",
            "which mask decides where the face shows (XSeg modes need an XSeg model)",
            "enum",
            options::<MaskMode>(),
        ),
        field(
            "erode",
            "Erode",
            "shrink (> 0) or grow (< 0) the mask, in pixels of the 4×-resolution mask",
            "int",
            Vec::new(),
        ),
        field("blur", "Blur", "soften the mask edge, in pixels of the 4× mask", "int", Vec::new()),
        field(
            "color_transfer",
            "Colour transfer",
            "recolour the face toward the dst face",
            "enum",
            options::<MergeColorTransfer>(),
        ),
        field(
            "hist_match_threshold",
            "Hist-match threshold",
            "hist-match modes: 255 matches exactly, lower keeps more of the face's own contrast",
            "int",
            Vec::new(),
        ),
        field(
            "masked_hist_match",
            "Masked hist-match",
            "hist-match modes: only the face area takes part",
            "bool",
            Vec::new(),
        ),
        field(
            "face_scale",
            "Face scale",
            "grow (> 0) or shrink (< 0) the pasted face, in percent",
            "int",
            Vec::new(),
        ),
        field("sharpen_mode", "Sharpen", "the sharpening filter", "enum", options::<SharpenMode>()),
        field(
            "sharpen_amount",
            "Sharpen amount",
            "sharpen (> 0) or blur (< 0) the face",
            "int",
            Vec::new(),
        ),
        field(
            "smooth",
            "Smooth landmarks",
            "average each face's landmarks over ± this many frames, against jitter",
            "int",
            Vec::new(),
        ),
    ];
    Json(serde_json::json!({ "fields": fields })).into_response()
}

/// What names the tuner: `?model=NAME&xseg=NAME` (`xseg` empty or absent: none).
#[derive(Debug, Deserialize)]
struct ModelQuery {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    xseg: Option<String>,
}

impl ModelQuery {
    /// The model and XSeg model names, checked as plain names of existing folders.
    fn names(&self, ws: &Workspace) -> Result<(String, Option<String>), ApiError> {
        let model = self.model.as_deref().filter(|m| !m.is_empty()).ok_or_else(|| {
            bad_request("no model given; pick one (train one with `dfl train --name NAME`)")
        })?;
        let exists = |kind: &str, name: &str| -> Result<String, ApiError> {
            let name = paths::plain_name(name)?;
            if !paths::resolve(ws.root(), &format!("{kind}/{name}"))?.is_dir() {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    format!("no {kind} named {name}"),
                ));
            }
            Ok(name.to_owned())
        };
        let xseg = match self.xseg.as_deref().filter(|x| !x.is_empty()) {
            Some(x) => Some(exists("xseg", x)?),
            None => None,
        };
        Ok((exists("model", model)?, xseg))
    }
}

/// `GET /api/tuner/session?model=&xseg=`: loads the model (or keeps it) and the dst clip, and
/// says what they are: frames, faces, the model's iteration, the device.
async fn session(
    State(state): State<AppState>,
    Query(q): Query<ModelQuery>,
) -> Result<Response, ApiError> {
    let (ws, tuner) = (state.ws.clone(), state.tuner.clone());
    let body = blocking(move || {
        let (model, xseg) = q.names(&ws)?;
        let device = tuner.device()?;
        tuner.with_tuner(&ws, &model, xseg.as_deref(), |t| {
            Ok(serde_json::json!({
                "model": t.model(),
                "iteration": t.iteration(),
                "xseg": t.xseg(),
                "frames": t.frame_count(),
                "faces": t.face_count(),
                "input": ws.portable(t.input().path()),
                "device": if device.is_cuda() { "cuda" } else { "cpu" },
            }))
        })
    })
    .await?;
    Ok(Json(body).into_response())
}

/// A frame to draw: the model, the 1-based `frame`, the settings as JSON, the widest image
/// wanted (`width`, 0 = full size) and `view` (`merged`, the default, or `original`).
#[derive(Debug, Deserialize)]
struct FrameQuery {
    #[serde(flatten)]
    names: ModelQuery,
    #[serde(default)]
    frame: Option<String>,
    #[serde(default)]
    settings: Option<String>,
    #[serde(default)]
    width: Option<String>,
    #[serde(default)]
    view: Option<String>,
}

/// A checked [`FrameQuery`].
struct FrameRequest {
    model: String,
    xseg: Option<String>,
    /// 1-based.
    frame: usize,
    settings: MergeConfig,
    /// 0 = full size.
    width: i32,
    original: bool,
}

impl FrameQuery {
    fn check(&self, ws: &Workspace) -> Result<FrameRequest, ApiError> {
        let (model, xseg) = self.names.names(ws)?;
        let frame = self
            .frame
            .as_deref()
            .and_then(|f| f.parse::<usize>().ok())
            .filter(|&f| f >= 1)
            .ok_or_else(|| bad_request("frame: a frame number from 1"))?;
        let settings: MergeConfig = match self.settings.as_deref() {
            Some(json) => serde_json::from_str(json)
                .map_err(|e| bad_request(format!("settings: not merge settings ({e})")))?,
            None => MergeConfig::default(),
        };
        settings.validate().map_err(|e| bad_request(e.to_string()))?;
        let width = match self.width.as_deref() {
            None | Some("") => DEFAULT_WIDTH_PX,
            Some(w) => w
                .parse::<i32>()
                .ok()
                .filter(|w| (0..=16384).contains(w))
                .ok_or_else(|| bad_request("width: pixels, 0 (full size) to 16384"))?,
        };
        let original = match self.view.as_deref() {
            None | Some("merged") => false,
            Some("original") => true,
            Some(other) => {
                return Err(bad_request(format!("view {other:?}: merged or original")));
            }
        };
        Ok(FrameRequest { model, xseg, frame, settings, width, original })
    }
}

/// Checks that the 1-based `frame` is in the clip and returns its 0-based index.
fn frame_index(tuner: &Tuner, frame: usize) -> Result<usize, ApiError> {
    let count = tuner.frame_count();
    if frame > count {
        return Err(bad_request(format!("frame {frame} is outside the dst clip (1 to {count})")));
    }
    Ok(frame - 1)
}

/// `GET /api/tuner/render?model=&xseg=&frame=&settings=&width=&view=`: the frame merged with
/// the settings (or the dst frame as it is, `view=original`) as PNG, no wider than `width`.
/// Headers: `X-DFL-Frame` (its name), `X-DFL-Faces` (faces swapped), `X-DFL-Render-Ms` (the
/// server's time), `X-DFL-Iteration` (the model's). A merged-frame request overtaken by a newer
/// one while it waited for the model is answered 409 without merging.
async fn render(
    State(state): State<AppState>,
    Query(q): Query<FrameQuery>,
) -> Result<Response, ApiError> {
    // Only merged frames count: fetching the dst frame does not overtake a merge.
    let merged = q.view.as_deref() != Some("original");
    let ticket = if merged { state.tuner.renders.fetch_add(1, Ordering::SeqCst) + 1 } else { 0 };
    let (ws, tuner_state) = (state.ws.clone(), state.tuner.clone());
    let (png, headers) = blocking(move || {
        let req = q.check(&ws)?;
        let start = Instant::now();
        tuner_state.with_tuner(&ws, &req.model, req.xseg.as_deref(), |t| {
            let index = frame_index(t, req.frame)?;
            let name = t.frame_name(index).unwrap_or_default();
            let (image, faces) = if req.original {
                (t.original(index).map_err(merge_error)?, 0)
            } else {
                if tuner_state.renders.load(Ordering::SeqCst) != ticket {
                    return Err(ApiError::new(
                        StatusCode::CONFLICT,
                        "a newer render was asked for; this one was dropped",
                    ));
                }
                let faces = t.swap(index, req.settings.smooth).map_err(merge_error)?.face_count();
                (t.render(index, &req.settings).map_err(merge_error)?.image, faces)
            };
            let png = encode_png(&image, req.width)?;
            let ms = start.elapsed().as_millis();
            let headers = [
                ("x-dfl-frame", name),
                ("x-dfl-faces", faces.to_string()),
                ("x-dfl-render-ms", ms.to_string()),
                ("x-dfl-iteration", t.iteration().to_string()),
            ];
            Ok((png, headers))
        })
    })
    .await?;
    Ok(png_response(png, &headers))
}

/// `GET /api/tuner/grid?model=&xseg=&frame=&settings=`: the face region of the frame under the
/// settings and their alternatives (mask modes, colour transfers, blend modes), as PNG.
async fn grid(
    State(state): State<AppState>,
    Query(q): Query<FrameQuery>,
) -> Result<Response, ApiError> {
    let (ws, tuner_state) = (state.ws.clone(), state.tuner.clone());
    let (png, headers) = blocking(move || {
        let req = q.check(&ws)?;
        let start = Instant::now();
        tuner_state.with_tuner(&ws, &req.model, req.xseg.as_deref(), |t| {
            let index = frame_index(t, req.frame)?;
            let grid = t.grid(index, &req.settings).map_err(merge_error)?;
            let png = encode_png(&grid, 0)?;
            let ms = start.elapsed().as_millis();
            Ok((png, [("x-dfl-render-ms", ms.to_string())]))
        })
    })
    .await?;
    Ok(png_response(png, &headers))
}

/// `image` as PNG, scaled down (area filter) to at most `width` pixels wide (0: as it is).
/// zlib level 1: the page waits for this image after every change, and level 1 encodes a
/// 1280×720 frame several times faster than the default for a slightly larger file.
fn encode_png(image: &Mat, width: i32) -> Result<Vec<u8>, ApiError> {
    let cv = |e: opencv::Error| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    let mut small = Mat::default();
    let image = if width > 0 && image.cols() > width {
        let height = (f64::from(image.rows()) * f64::from(width) / f64::from(image.cols()))
            .round()
            .max(1.0) as i32;
        imgproc::resize(image, &mut small, Size::new(width, height), 0.0, 0.0, imgproc::INTER_AREA)
            .map_err(cv)?;
        &small
    } else {
        image
    };
    let params = Vector::from_slice(&[imgcodecs::IMWRITE_PNG_COMPRESSION, 1]);
    let mut png = Vector::<u8>::new();
    imgcodecs::imencode(".png", image, &mut png, &params).map_err(cv)?;
    Ok(png.to_vec())
}

fn png_response(png: Vec<u8>, headers: &[(&'static str, String)]) -> Response {
    let mut response = ([(header::CONTENT_TYPE, "image/png")], png).into_response();
    for (name, value) in headers {
        if let Ok(value) = HeaderValue::from_str(value) {
            response.headers_mut().insert(HeaderName::from_static(name), value);
        }
    }
    response
}

/// The merge config file as the page edits it.
#[derive(Debug, Serialize)]
struct ConfigAnswer {
    /// The file, relative to the workspace.
    path: std::path::PathBuf,
    /// Whether it exists (else the settings are the defaults).
    exists: bool,
    /// Why the file on disk is unusable, when it is (the settings are then the defaults; saving
    /// replaces it).
    problem: Option<String>,
    /// The settings: `default` and `scenes`.
    settings: MergeSettings,
}

fn config_answer(ws: &Workspace) -> Result<ConfigAnswer, ApiError> {
    let path = ws.merge_config();
    let (settings, problem) = match MergeSettings::load(&path) {
        Ok(settings) => (settings, None),
        Err(ConfigFileError::Invalid { source, .. }) => (None, Some(source.to_string())),
        Err(e) => return Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    };
    Ok(ConfigAnswer {
        exists: path.is_file(),
        path: ws.portable(&path),
        problem,
        settings: settings.unwrap_or_default(),
    })
}

/// `GET /api/tuner/config`: `data_dst/merge.config.json` (the defaults when there is none).
async fn read_config(State(state): State<AppState>) -> Result<Response, ApiError> {
    let ws = state.ws.clone();
    Ok(Json(blocking(move || config_answer(&ws)).await?).into_response())
}

/// `PUT /api/tuner/config` with `{"default": {...}, "scenes": [{"frames": "A..B", "settings":
/// {...}}]}`: validates (400 naming the scene and the setting) and writes
/// `data_dst/merge.config.json` atomically; answers as `GET`.
async fn save_config(State(state): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let ws = state.ws.clone();
    let answer = blocking(move || {
        let settings = MergeSettings::from_json(&body).map_err(|e| bad_request(e.to_string()))?;
        settings.save(&ws.merge_config()).map_err(|e| match e {
            ConfigFileError::Invalid { source, .. } => bad_request(source.to_string()),
            other => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
        })?;
        config_answer(&ws)
    })
    .await?;
    Ok(Json(answer).into_response())
}
