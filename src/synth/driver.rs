//! The driving video's motion: the landmarks of its largest face in each frame, with the
//! gaps filled and smoothed over time.

use std::path::Path;

use super::motion::smoothed;
use super::{FaceFinder, SynthError};
use crate::face::landmarks::Landmarks68;
use crate::frames::{Frame, FrameSource, Pick};
use crate::workspace::Input;

/// The driver's landmarks, one list of 68 per frame.
pub(super) struct DriverTrack {
    /// Landmarks of the largest face per frame, gaps filled, smoothed over time.
    pub(super) landmarks: Vec<Landmarks68>,
    /// Frames that had no face.
    pub(super) without_face: usize,
}

/// Returns the landmarks of the largest face in each of the first `limit` driver frames
/// (frames without a face reuse the previous landmarks, leading ones the first found),
/// smoothed over time ([`smoothed`]).
pub(super) fn driver_landmarks(
    driver: &Path,
    limit: Option<usize>,
    finder: &mut FaceFinder<'_>,
) -> Result<DriverTrack, SynthError> {
    let mut source = FrameSource::open(&Input::Video(driver.to_owned()))?;
    let mut found: Vec<Option<Landmarks68>> = Vec::new();
    // One frame past the limit, so the last frame is smoothed as in a longer run.
    while limit.is_none_or(|n| found.len() <= n) {
        let Some(Frame { image: Ok(image), .. }) = source.next_picked(|_, _| Pick::Take) else {
            break;
        };
        let landmarks = finder
            .largest(&image)
            .map_err(|source| SynthError::Detect { path: driver.to_owned(), source })?;
        found.push(landmarks);
    }
    let used = limit.map_or(found.len(), |n| n.min(found.len()));
    let without_face = found[..used].iter().filter(|l| l.is_none()).count();
    let filled =
        filled_gaps(found).ok_or_else(|| SynthError::DriverWithoutFace(driver.to_owned()))?;
    let mut landmarks = smoothed(&filled);
    landmarks.truncate(used);
    Ok(DriverTrack { landmarks, without_face })
}

/// Returns `found` with each gap filled by the landmarks before it (leading gaps by the
/// first landmarks found), or `None` when there are none at all.
fn filled_gaps(found: Vec<Option<Landmarks68>>) -> Option<Vec<Landmarks68>> {
    let mut last = *found.iter().flatten().next()?;
    Some(
        found
            .into_iter()
            .map(|l| {
                if let Some(l) = l {
                    last = l;
                }
                last
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_take_the_landmarks_before_them_and_leading_gaps_the_first_found() {
        let a = Landmarks68::new([[1.0f32, 1.0]; 68]);
        let b = Landmarks68::new([[2.0f32, 2.0]; 68]);
        let filled = filled_gaps(vec![None, Some(a), None, Some(b), None]);
        assert_eq!(filled, Some(vec![a, a, a, b, b]));
        assert_eq!(filled_gaps(vec![None, None]), None);
    }
}
