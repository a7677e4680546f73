//! Probing the dst video and assembling `result.mp4` with ffmpeg.
