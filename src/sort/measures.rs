//! What sorting measures in a face image: sharpness, colour, black pixels and histograms.
//!
//! Measures that describe the face (sharpness, brightness, hue, the dissimilarity histogram)
//! look only inside DFL's landmark hull, so the background does not decide. DFL multiplies
//! the image by the hull instead, which also counts the black outside (and, for sharpness,
//! the hard edge the multiplication draws); see `face::sharpness`.

use opencv::core::{CV_8U, Mat};
use opencv::imgproc;
use opencv::prelude::*;

use crate::face::landmarks::Landmarks68;
use crate::face::masks::hull_mask;
use crate::face::sharpness;
use crate::faceset::scores::{FaceScores, Measure};

/// A decoded face with its hull.
pub struct FaceImage {
    /// BGR u8.
    pub bgr: Mat,
    /// Gray u8.
    pub gray: Mat,
    /// The landmark hull, u8 0/255.
    pub hull: Mat,
}

impl FaceImage {
    /// Wraps a decoded BGR face whose 68 `landmarks` are in its pixels.
    ///
    /// # Errors
    /// OpenCV's error.
    pub fn new(bgr: Mat, landmarks: &Landmarks68) -> opencv::Result<Self> {
        let mut gray = Mat::default();
        imgproc::cvt_color_def(&bgr, &mut gray, imgproc::COLOR_BGR2GRAY)?;
        let hull_f = hull_mask(bgr.rows().max(bgr.cols()), landmarks)?;
        let mut hull = Mat::default();
        hull_f.convert_to(&mut hull, CV_8U, 255.0, 0.0)?;
        if hull.size()? != bgr.size()? {
            let roi = opencv::core::Rect::new(0, 0, bgr.cols(), bgr.rows());
            hull = Mat::roi(&hull, roi)?.try_clone()?;
        }
        Ok(Self { bgr, gray, hull })
    }

    /// Measures everything in `wanted` except the embedding.
    ///
    /// # Errors
    /// OpenCV's error.
    pub fn measure(&self, wanted: &[Measure]) -> opencv::Result<FaceScores> {
        let mut s = FaceScores::default();
        for m in wanted {
            match m {
                Measure::Blur => s.blur = Some(sharpness::cpbd_sharpness(&self.gray, &self.hull)?),
                Measure::MotionBlur => {
                    s.motion_blur = Some(sharpness::laplacian_variance(&self.gray, &self.hull)?);
                }
                Measure::Brightness | Measure::Hue => {
                    let (v, h) = self.value_and_hue()?;
                    s.brightness = Some(v);
                    s.hue = Some(h);
                }
                Measure::Black => s.black = Some(black_fraction(&self.bgr)?),
                Measure::Embedding => {}
            }
        }
        Ok(s)
    }

    /// Mean HSV value (0–255) and circular mean hue (degrees) inside the hull.
    fn value_and_hue(&self) -> opencv::Result<(f64, f64)> {
        let mut hsv = Mat::default();
        imgproc::cvt_color_def(&self.bgr, &mut hsv, imgproc::COLOR_BGR2HSV)?;
        let (mut v_sum, mut sin, mut cos, mut n) = (0.0, 0.0, 0.0, 0usize);
        for (px, &m) in hsv.data_bytes()?.chunks_exact(3).zip(self.hull.data_bytes()?) {
            if m == 0 {
                continue;
            }
            // OpenCV's 8-bit hue is degrees / 2.
            let angle = (f64::from(px[0]) * 2.0).to_radians();
            sin += angle.sin();
            cos += angle.cos();
            v_sum += f64::from(px[2]);
            n += 1;
        }
        if n == 0 {
            return Ok((0.0, 0.0));
        }
        Ok((v_sum / n as f64, sin.atan2(cos).to_degrees()))
    }

    /// DFL's `hist` feature: the three BGR 256-bin histograms of the whole image, each as
    /// `sqrt(count / pixels)` so that a dot product gives the Bhattacharyya coefficient.
    ///
    /// # Errors
    /// OpenCV's error.
    pub fn color_histograms(&self) -> opencv::Result<Vec<f32>> {
        let mut counts = vec![0u32; 3 * 256];
        for px in self.bgr.data_bytes()?.chunks_exact(3) {
            for (c, &v) in px.iter().enumerate() {
                counts[c * 256 + usize::from(v)] += 1;
            }
        }
        let total = (self.bgr.total() as f32).max(1.0);
        Ok(counts.iter().map(|&c| (c as f32 / total).sqrt()).collect())
    }

    /// DFL's `hist-dissim` feature: the gray 256-bin histogram inside the hull, as
    /// `sqrt(count / pixels)`.
    ///
    /// # Errors
    /// OpenCV's error.
    pub fn gray_histogram(&self) -> opencv::Result<Vec<f32>> {
        let mut counts = [0u32; 256];
        let mut n = 0u32;
        for (&g, &m) in self.gray.data_bytes()?.iter().zip(self.hull.data_bytes()?) {
            if m != 0 {
                counts[usize::from(g)] += 1;
                n += 1;
            }
        }
        let total = (n as f32).max(1.0);
        Ok(counts.iter().map(|&c| (c as f32 / total).sqrt()).collect())
    }
}

/// DFL's `black`: the fraction of colour samples that are exactly 0 (faces cut by the frame
/// edge are filled with black when aligned).
fn black_fraction(bgr: &Mat) -> opencv::Result<f64> {
    let bytes = bgr.data_bytes()?;
    let zeros = bytes.iter().filter(|&&b| b == 0).count();
    Ok(zeros as f64 / bytes.len().max(1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opencv::core::{CV_8UC3, Scalar};

    /// A 64² face: a hull around the centre from a ring of 68 points.
    fn face_of(colour: [f64; 3]) -> FaceImage {
        let img = Mat::new_rows_cols_with_default(
            64,
            64,
            CV_8UC3,
            Scalar::new(colour[0], colour[1], colour[2], 0.0),
        )
        .unwrap();
        let ring = Landmarks68::new(std::array::from_fn(|i| {
            let a = i as f32 / 68.0 * std::f32::consts::TAU;
            [32.0 + 20.0 * a.cos(), 32.0 + 20.0 * a.sin()]
        }));
        FaceImage::new(img, &ring).unwrap()
    }

    #[test]
    fn brightness_and_hue_are_those_of_the_face_colour() {
        // Pure red in BGR: hue 0°, value 200.
        let s = face_of([0.0, 0.0, 200.0]).measure(&[Measure::Brightness]).unwrap();
        assert_eq!(s.brightness, Some(200.0));
        assert!(s.hue.unwrap().abs() < 1e-9);
        // Green: hue 120°.
        let g = face_of([0.0, 150.0, 0.0]).measure(&[Measure::Hue]).unwrap();
        assert!((g.hue.unwrap() - 120.0).abs() < 1e-9, "{g:?}");
        assert_eq!(g.brightness, Some(150.0));
    }

    #[test]
    fn hue_averages_around_the_circle() {
        // Half the face at hue 350° (OpenCV 175), half at 10° (OpenCV 5): the mean is 0°,
        // not the 180° an arithmetic mean gives.
        let mut face = face_of([0.0, 0.0, 0.0]);
        let mut hsv =
            Mat::new_rows_cols_with_default(64, 64, CV_8UC3, Scalar::new(5.0, 255.0, 200.0, 0.0))
                .unwrap();
        imgproc::rectangle(
            &mut hsv,
            opencv::core::Rect::new(0, 0, 32, 64),
            Scalar::new(175.0, 255.0, 200.0, 0.0),
            -1,
            imgproc::LINE_8,
            0,
        )
        .unwrap();
        imgproc::cvt_color_def(&hsv, &mut face.bgr, imgproc::COLOR_HSV2BGR).unwrap();
        let hue = face.measure(&[Measure::Hue]).unwrap().hue.unwrap();
        // Within the 8-bit HSV round trip and the hull's odd column.
        assert!(hue.abs() < 5.0, "{hue}");
    }

    #[test]
    fn black_counts_zero_samples() {
        let mut face = face_of([10.0, 10.0, 10.0]);
        imgproc::rectangle(
            &mut face.bgr,
            opencv::core::Rect::new(0, 0, 16, 64),
            Scalar::all(0.0),
            -1,
            imgproc::LINE_8,
            0,
        )
        .unwrap();
        assert_eq!(face.measure(&[Measure::Black]).unwrap().black, Some(0.25));
    }

    #[test]
    fn histograms_are_unit_vectors() {
        let face = face_of([10.0, 20.0, 30.0]);
        let c = face.color_histograms().unwrap();
        let dot: f32 = c.iter().map(|v| v * v).sum();
        assert!((dot - 3.0).abs() < 1e-5, "three unit histograms: {dot}");
        let g = face.gray_histogram().unwrap();
        assert!((g.iter().map(|v| v * v).sum::<f32>() - 1.0).abs() < 1e-5);
    }
}
