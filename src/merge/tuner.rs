//! The merge for a long-lived caller that tunes settings by eye (the studio's Merge page): the
//! dst side and the model are loaded once, any frame is merged under any settings on demand.
//!
//! A frame's swap (its crops and the model's predictions) does not depend on the settings but
//! the landmark smoothing, so it is kept per (frame, smoothing radius): moving a slider costs a
//! merge of the frame, not a forward pass. A tuner belongs to one model checkpoint; the caller
//! makes a new one when [`Tuner::is_current`] says the model saved again.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::SystemTime;

use opencv::core::Mat;
use tch::Device;

use super::clip::FrameReader;
use super::config::MergeConfig;
use super::faces::ClipFaces;
use super::predict::Predictor;
use super::preview::FrameSwap;
use super::run::{DstSide, load_dst};
use super::{MergeError, MergedFrame};
use crate::model::folder::ModelFolder;
use crate::model::xseg::{XSegFolder, XSegModel};
use crate::workspace::{Input, Side, Workspace};

/// Frame swaps kept (each holds its decoded frame and R×R predictions).
const KEPT_SWAPS: usize = 6;

/// A loaded dst clip and model, merging any frame under any settings.
pub struct Tuner {
    input: Input,
    faces: ClipFaces,
    /// `data_dst/aligned`'s modification time when the faces were read.
    faces_stamp: Option<SystemTime>,
    reader: FrameReader,
    model: String,
    predictor: Predictor,
    xseg: Option<(XSegModel, PathBuf)>,
    /// Swaps by (frame index, smoothing radius), the most recently used last.
    swaps: VecDeque<((usize, u32), FrameSwap)>,
}

impl std::fmt::Debug for Tuner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tuner")
            .field("input", &self.input)
            .field("model", &self.model)
            .field("iteration", &self.predictor.iteration())
            .field("frames", &self.reader.len())
            .finish_non_exhaustive()
    }
}

impl Tuner {
    /// Loads the dst faces (under a shared lock on the dst faceset, as `dfl merge` reads
    /// them), opens the dst input (the one `dfl merge` would use), and loads model `model` and,
    /// when named, XSeg model `xseg` onto `device`.
    ///
    /// # Errors
    /// `Lock` when a stage is rewriting the dst faceset; as [`super::run`] for the input and
    /// the models.
    pub fn load(
        ws: &Workspace,
        model: &str,
        xseg: Option<&str>,
        device: Device,
    ) -> Result<Self, MergeError> {
        let (input, faces, faces_stamp) = read_faces(ws)?;
        let reader = FrameReader::open(&input)?;
        let predictor = Predictor::load(ws, model, device)?;
        let xseg = match xseg {
            Some(name) => {
                let folder = XSegFolder::open(ws, name)?;
                let checkpoint = folder.sets.latest().ok().flatten().unwrap_or_default();
                Some((XSegModel::load(&folder, device)?, checkpoint))
            }
            None => None,
        };
        Ok(Self {
            input,
            faces,
            faces_stamp,
            reader,
            model: model.to_owned(),
            predictor,
            xseg,
            swaps: VecDeque::new(),
        })
    }

    /// Returns whether this tuner still shows what a merge would use now: the model's and the
    /// XSeg model's latest checkpoints are the ones loaded. (Faces that changed are read again
    /// by [`Tuner::refresh_faces`], without reloading the model.)
    pub fn is_current(&self, ws: &Workspace) -> bool {
        let latest = |dir: Result<PathBuf, _>| {
            dir.ok().and_then(|d| ModelFolder::new(d).latest().ok().flatten())
        };
        let model_same =
            latest(ws.model_dir(&self.model)).as_deref() == Some(self.predictor.checkpoint());
        let xseg_same = self.xseg.as_ref().is_none_or(|(x, checkpoint)| {
            latest(ws.xseg_dir(x.name())).as_ref() == Some(checkpoint)
        });
        model_same && xseg_same
    }

    /// Reads the dst faces again when `data_dst/aligned` changed since they were read (a face
    /// deleted, restored, re-extracted or given an XSeg mask); the kept swaps are dropped then.
    ///
    /// # Errors
    /// As [`Tuner::load`].
    pub fn refresh_faces(&mut self, ws: &Workspace) -> Result<(), MergeError> {
        if aligned_stamp(ws) == self.faces_stamp {
            return Ok(());
        }
        let (input, faces, stamp) = read_faces(ws)?;
        if input != self.input {
            self.reader = FrameReader::open(&input)?;
            self.input = input;
        }
        self.faces = faces;
        self.faces_stamp = stamp;
        self.swaps.clear();
        Ok(())
    }

    /// Returns the dst input.
    pub fn input(&self) -> &Input {
        &self.input
    }

    /// Returns how many frames the dst input holds.
    pub fn frame_count(&self) -> usize {
        self.reader.len()
    }

    /// Returns the name of the 0-based frame `index`, `None` past the end.
    pub fn frame_name(&self, index: usize) -> Option<String> {
        self.reader.name(index)
    }

    /// Returns how many dst faces the clip has.
    pub fn face_count(&self) -> usize {
        self.faces.raw().len()
    }

    /// Returns the model's name.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// Returns the training iteration of the loaded weights.
    pub fn iteration(&self) -> u64 {
        self.predictor.iteration()
    }

    /// Returns the XSeg model's name and iteration, when one is loaded.
    pub fn xseg(&self) -> Option<(&str, u64)> {
        self.xseg.as_ref().map(|(x, _)| (x.name(), x.iteration()))
    }

    /// Returns the swap of the 0-based frame `index` with its faces smoothed at `smooth`,
    /// predicting it unless it is kept.
    ///
    /// # Errors
    /// `Preview` for a frame past the end or that does not decode; the model's errors.
    pub fn swap(&mut self, index: usize, smooth: u32) -> Result<&FrameSwap, MergeError> {
        let key = (index, smooth);
        if let Some(k) = self.swaps.iter().position(|(k, _)| *k == key) {
            let entry = self.swaps.remove(k).expect("invariant: k is a position of swaps");
            self.swaps.push_back(entry);
        } else {
            let image = self.reader.read(index)?;
            let name = self.reader.name(index).unwrap_or_default();
            // One smoothed copy of the clip's faces at a time: a slider over `smooth` would
            // otherwise keep one per value.
            self.faces.keep_only(smooth);
            self.faces.smooth(smooth);
            let swap = FrameSwap::predict(
                &name,
                image,
                self.faces.at(smooth).of(&name),
                self.input.path(),
                &self.predictor,
                self.xseg.as_ref().map(|(x, _)| x),
            )?;
            if self.swaps.len() == KEPT_SWAPS {
                self.swaps.pop_front();
            }
            self.swaps.push_back((key, swap));
        }
        Ok(&self.swaps.back().expect("invariant: the swap was just pushed").1)
    }

    /// Merges the 0-based frame `index` with `cfg`, as `dfl merge` would.
    ///
    /// # Errors
    /// As [`Tuner::swap`] and [`FrameSwap::merge`].
    pub fn render(&mut self, index: usize, cfg: &MergeConfig) -> Result<MergedFrame, MergeError> {
        cfg.validate()?;
        self.swap(index, cfg.smooth)?.merge(cfg)
    }

    /// Returns the 0-based frame `index` as decoded (BGR u8).
    ///
    /// # Errors
    /// As [`Tuner::swap`].
    pub fn original(&mut self, index: usize) -> Result<Mat, MergeError> {
        self.reader.read(index)
    }

    /// Draws the grid of alternatives of the 0-based frame `index` around `cfg` (the grid of
    /// `dfl merge --preview`).
    ///
    /// # Errors
    /// As [`Tuner::render`]; `Preview` when the frame has no face.
    pub fn grid(&mut self, index: usize, cfg: &MergeConfig) -> Result<Mat, MergeError> {
        cfg.validate()?;
        self.swap(index, cfg.smooth)?.grid(cfg)
    }
}

/// Reads the dst faces and finds the dst input, under a shared lock on the dst faceset.
fn read_faces(ws: &Workspace) -> Result<(Input, ClipFaces, Option<SystemTime>), MergeError> {
    let _lock = crate::lock::shared(&ws.faceset_lock(Side::Dst), "the dst faceset")?;
    let stamp = aligned_stamp(ws);
    let DstSide { input, faces, .. } = load_dst(ws, None)?;
    Ok((input, faces, stamp))
}

/// `data_dst/aligned`'s modification time: it changes when a face file is added, removed,
/// renamed or replaced (every stage writes faces as a new file renamed into place).
fn aligned_stamp(ws: &Workspace) -> Option<SystemTime> {
    std::fs::metadata(ws.aligned_dir(Side::Dst)).and_then(|m| m.modified()).ok()
}
