//! DFL's `random_hsv_power`: a random hue, saturation and value shift of the src network input
//! only (targets stay true), so the model cannot lean on src's exact colours
//! (`docs/dfl-parity.md`, "Training samples").
//!
//! For power a: the hue moves by a whole number of degrees drawn from [−h, h], h = max(1,
//! int(180·a)), wrapping around 360; saturation and value each move by (U(0,1) − 0.5)·a and are
//! clipped to [0, 1].

use opencv::core::{self, Mat, Scalar, Vector};
use opencv::imgproc;
use opencv::prelude::*;
use rand::Rng;

/// The largest power DFL allows.
pub const MAX_POWER: f32 = 0.3;

/// The three shifts drawn for one sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HsvShift {
    /// Hue shift in degrees.
    pub hue_deg: i32,
    /// Saturation shift.
    pub saturation: f32,
    /// Value shift.
    pub value: f32,
}

impl HsvShift {
    /// Draws the shifts for `power` (0–0.3), hue first, then saturation, then value.
    pub fn draw(rng: &mut impl Rng, power: f32) -> Self {
        let h = ((180.0 * power) as i32).max(1);
        let hue_deg = rng.random_range(-h..=h);
        let saturation = (rng.random::<f32>() - 0.5) * power;
        let value = (rng.random::<f32>() - 0.5) * power;
        Self { hue_deg, saturation, value }
    }

    /// Applies the shifts to a `CV_32FC3` BGR image in [0, 1]; returns a new one, clipped to
    /// [0, 1].
    ///
    /// # Errors
    /// OpenCV's error.
    pub fn apply(&self, bgr: &Mat) -> opencv::Result<Mat> {
        let mut hsv = Mat::default();
        imgproc::cvt_color_def(bgr, &mut hsv, imgproc::COLOR_BGR2HSV)?;
        let mut planes = Vector::<Mat>::new();
        core::split(&hsv, &mut planes)?;
        let (h, s, v) = (planes.get(0)?, planes.get(1)?, planes.get(2)?);
        // OpenCV's float hue is in [0, 360): shift, then wrap.
        let mut shifted = Mat::default();
        core::add(
            &h,
            &Scalar::all(f64::from(self.hue_deg) + 360.0),
            &mut shifted,
            &core::no_array(),
            -1,
        )?;
        let hue = wrap_degrees(&shifted)?;
        let clipped = |plane: &Mat, by: f32| -> opencv::Result<Mat> {
            let mut moved = Mat::default();
            core::add(plane, &Scalar::all(f64::from(by)), &mut moved, &core::no_array(), -1)?;
            clip_unit(&moved)
        };
        let merged = Vector::<Mat>::from_iter([
            hue,
            clipped(&s, self.saturation)?,
            clipped(&v, self.value)?,
        ]);
        let mut hsv_out = Mat::default();
        core::merge(&merged, &mut hsv_out)?;
        let mut out = Mat::default();
        imgproc::cvt_color_def(&hsv_out, &mut out, imgproc::COLOR_HSV2BGR)?;
        clip_unit(&out)
    }
}

/// `x mod 360` for a float plane with values in [0, 720).
fn wrap_degrees(xs: &Mat) -> opencv::Result<Mat> {
    let mut over = Mat::default();
    core::compare(xs, &Scalar::all(360.0), &mut over, core::CMP_GE)?;
    let mut out = xs.try_clone()?;
    let mut wrapped = Mat::default();
    core::subtract(xs, &Scalar::all(360.0), &mut wrapped, &core::no_array(), -1)?;
    wrapped.copy_to_masked(&mut out, &over)?;
    Ok(out)
}

/// Clips every value of a float image to [0, 1].
fn clip_unit(xs: &Mat) -> opencv::Result<Mat> {
    let mut low = Mat::default();
    core::max(xs, &Scalar::all(0.0), &mut low)?;
    let mut out = Mat::default();
    core::min(&low, &Scalar::all(1.0), &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opencv::core::{CV_32FC3, Vec3f};
    use rand::SeedableRng;

    fn pixel(bgr: [f32; 3]) -> Mat {
        Mat::new_rows_cols_with_default(
            1,
            1,
            CV_32FC3,
            Scalar::new(bgr[0].into(), bgr[1].into(), bgr[2].into(), 0.0),
        )
        .unwrap()
    }

    fn read(m: &Mat) -> [f32; 3] {
        let v = m.at_2d::<Vec3f>(0, 0).unwrap();
        [v[0], v[1], v[2]]
    }

    fn close(a: [f32; 3], b: [f32; 3]) -> bool {
        a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-4)
    }

    #[test]
    fn a_hue_shift_of_120_degrees_rotates_the_primaries() {
        // Pure red (BGR 0,0,1) at hue 0 → hue 120 is pure green; blue at 240 wraps to 0: red.
        let shift = HsvShift { hue_deg: 120, saturation: 0.0, value: 0.0 };
        assert!(close(read(&shift.apply(&pixel([0.0, 0.0, 1.0])).unwrap()), [0.0, 1.0, 0.0]));
        assert!(close(read(&shift.apply(&pixel([1.0, 0.0, 0.0])).unwrap()), [0.0, 0.0, 1.0]));
    }

    #[test]
    fn saturation_and_value_shift_and_clip() {
        // Grey 0.5 has saturation 0: −0.1 clips to 0 (still grey), value 0.5 + 0.2 = 0.7.
        let shift = HsvShift { hue_deg: 0, saturation: -0.1, value: 0.2 };
        assert!(close(read(&shift.apply(&pixel([0.5, 0.5, 0.5])).unwrap()), [0.7, 0.7, 0.7]));
        // Value 0.6 + 0.9 clips to 1: the colour scales by 1/0.6, hue and saturation kept.
        let bright = HsvShift { hue_deg: 0, saturation: 0.0, value: 0.9 };
        let out = read(&bright.apply(&pixel([0.2, 0.4, 0.6])).unwrap());
        assert!(close(out, [1.0 / 3.0, 2.0 / 3.0, 1.0]), "{out:?}");
    }

    #[test]
    fn draws_stay_in_dfls_ranges() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for _ in 0..500 {
            let s = HsvShift::draw(&mut rng, 0.05);
            assert!((-9..=9).contains(&s.hue_deg), "int(180·0.05) = 9: {s:?}");
            assert!(s.saturation.abs() <= 0.025 && s.value.abs() <= 0.025, "{s:?}");
        }
        let tiny = HsvShift::draw(&mut rng, 0.001);
        assert!((-1..=1).contains(&tiny.hue_deg), "at least ±1 degree");
    }
}
