//! Probing the dst video and assembling `result.mp4` with ffmpeg.
//! (temporary: being written in the wt-video worktree)

/// How result.mp4 is encoded.
#[derive(Debug, Clone)]
pub struct EncodeOptions {
    /// x264 CRF.
    pub crf: u8,
    /// x264 preset.
    pub preset: String,
}

/// Errors of video assembly.
#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    /// Not ready.
    #[error("video assembly is not built yet")]
    NotReady,
}

/// Not ready.
pub fn not_ready() -> VideoError {
    VideoError::NotReady
}
