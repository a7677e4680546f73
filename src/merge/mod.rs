//! `dfl merge`: the src face onto every dst frame, then `result.mp4` with the dst audio
//! (design §6, anchors doc §5).

pub mod video;
