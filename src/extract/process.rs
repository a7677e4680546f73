//! The work on one frame, run on the worker threads: detect, landmark, align, write.

use std::sync::Mutex;

use opencv::core::Mat;
use opencv::prelude::*;

use super::{DetectorFactory, ExtractConfig, ExtractError, debug};
use crate::detect::FaceDetector;
use crate::face::align;
use crate::face::landmarks::Landmarks68;
use crate::face::locate::{self, Landmarker};
use crate::face::metadata::{FaceFileError, FaceMetadata, METADATA_VERSION, write_face};
use crate::frames::Frame;
use crate::img::{self, ImageWriteError};
use crate::workspace::{Side, Workspace};

/// What became of one frame.
pub(super) enum FrameOutcome {
    /// Finished: the names of the face files written (maybe none).
    Done(Vec<String>),
    /// Unreadable; not logged, so a rerun tries it again.
    Skipped(String),
}

/// Everything a worker needs to process a frame.
pub(super) struct FrameContext<'a> {
    pub(super) cfg: &'a ExtractConfig,
    pub(super) ws: &'a Workspace,
    pub(super) side: Side,
    pub(super) landmarker: Landmarker<'a>,
}

/// One face found in a frame, before it is written.
struct FoundFace {
    rect: [f32; 4],
    score: f32,
    landmarks: Landmarks68,
    to_face: align::Affine,
}

impl FrameContext<'_> {
    /// Detects, landmarks, aligns and writes the faces of one frame.
    pub(super) fn process(
        &self,
        frame: &Frame,
        detector: &mut dyn FaceDetector,
    ) -> Result<FrameOutcome, ExtractError> {
        let image = match &frame.image {
            Ok(image) => image,
            Err(reason) => return Ok(FrameOutcome::Skipped(reason.clone())),
        };
        let faces = match self.find_faces(image, detector) {
            Ok(faces) => faces,
            Err(reason) => return Ok(FrameOutcome::Skipped(reason)),
        };
        let mut names = Vec::with_capacity(faces.len());
        for (index, face) in faces.iter().enumerate() {
            names.push(self.write_face(frame, image, index, face)?);
        }
        self.write_extras(frame, image, &faces)?;
        Ok(FrameOutcome::Done(names))
    }

    fn find_faces(
        &self,
        image: &Mat,
        detector: &mut dyn FaceDetector,
    ) -> Result<Vec<FoundFace>, String> {
        let cfg = self.cfg;
        let faces = locate::find_faces(image, detector, &self.landmarker, cfg.refine_landmarks)
            .map_err(|e| e.to_string())?;
        let found = faces
            .into_iter()
            .filter_map(|(det, landmarks)| {
                let to_face = align::transform_mat(&landmarks, cfg.size_px, cfg.face_type)?;
                Some(FoundFace { rect: det.rect, score: det.score, landmarks, to_face })
            })
            .collect();
        Ok(found)
    }

    fn write_face(
        &self,
        frame: &Frame,
        image: &Mat,
        index: usize,
        face: &FoundFace,
    ) -> Result<String, ExtractError> {
        let cfg = self.cfg;
        let name = format!("{}_{index}.{}", frame.name, cfg.format.extension());
        let path = self.ws.aligned_dir(self.side).join(&name);
        let codec = |source| FaceFileError::Codec { path: path.clone(), source };
        let aligned = img::warp_to_face(image, &face.to_face, cfg.size_px).map_err(codec)?;
        let meta = FaceMetadata {
            version: METADATA_VERSION,
            source_filename: frame.name.clone(),
            // Absolute, so merge and eval find the input from any working folder.
            source_path: std::path::absolute(&frame.source)
                .unwrap_or_else(|_| frame.source.clone())
                .to_string_lossy()
                .into_owned(),
            source_size: [image.cols() as u32, image.rows() as u32],
            face_index: index,
            face_type: cfg.face_type,
            size_px: cfg.size_px,
            landmarks: face.landmarks.transformed(&face.to_face),
            source_landmarks: face.landmarks,
            image_to_face_mat: face.to_face,
            source_rect: face.rect,
            detector_score: face.score,
            seg_ie_polys: Vec::new(),
            xseg_mask: None,
        };
        write_face(&path, &aligned, &meta, cfg.format, cfg.jpeg_quality)?;
        Ok(name)
    }

    /// Writes the `--debug` drawing and the `--keep-frames` copy of a frame.
    fn write_extras(
        &self,
        frame: &Frame,
        image: &Mat,
        faces: &[FoundFace],
    ) -> Result<(), ExtractError> {
        if self.cfg.debug {
            let path = self.ws.aligned_debug_dir(self.side).join(format!("{}.jpg", frame.name));
            let drawn: Vec<debug::DebugFace<'_>> = faces
                .iter()
                .map(|f| debug::DebugFace {
                    rect: f.rect,
                    landmarks: &f.landmarks,
                    to_face: &f.to_face,
                    size_px: self.cfg.size_px,
                })
                .collect();
            let canvas = debug::draw(image, &drawn)
                .map_err(|source| ImageWriteError::Encode { path: path.clone(), source })?;
            img::write_image(&path, &canvas, debug::DEBUG_JPEG_QUALITY)?;
        }
        if self.cfg.keep_frames
            && frame.source.is_file()
            && !crate::workspace::is_image_file(&frame.source)
        {
            let path = self.ws.frames_dir(self.side).join(format!("{}.png", frame.name));
            img::write_image(&path, image, 0)?;
        }
        Ok(())
    }
}

/// Detectors for the worker threads: taken from the pool, made on demand, and put back.
pub(super) struct DetectorPool<'a> {
    pub(super) free: Mutex<Vec<Box<dyn FaceDetector>>>,
    pub(super) make: &'a DetectorFactory<'a>,
}

impl DetectorPool<'_> {
    pub(super) fn with<R>(
        &self,
        f: impl FnOnce(&mut dyn FaceDetector) -> R,
    ) -> Result<R, ExtractError> {
        let taken = self.free.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop();
        let mut detector = match taken {
            Some(detector) => detector,
            None => (self.make)()?,
        };
        let result = f(detector.as_mut());
        self.free.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(detector);
        Ok(result)
    }
}
