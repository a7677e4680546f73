//! The piecewise-affine warp `synth` animates a portrait with: a Delaunay triangulation of the
//! source points plus eight fixed anchors on the image border, and an inverse map that sends
//! every output pixel through the affine map of the target triangle it lies in.
//!
//! The topology comes from the source points only, so the same triangles are used for every
//! frame; a target triangle that collapses or flips is skipped (its pixels keep whatever a
//! neighbour or the identity map gives them), and [`TriangleMesh::flipped`] lets the caller
//! damp the motion so that this does not happen.

use opencv::core::{
    BORDER_REFLECT, BORDER_REPLICATE, CV_32FC1, CV_32FC2, Mat, Point, Scalar, Size, Vec2f, Vector,
};
use opencv::imgproc;
use opencv::prelude::*;

use super::delaunay::delaunay;

/// Number of anchors on the image border: the four corners and the four edge midpoints.
pub const ANCHOR_COUNT: usize = 8;
/// Source points closer than this (pixels) to an earlier one are left out of the mesh: two
/// coincident vertices would make zero-area triangles.
const MIN_POINT_GAP_PX: f64 = 0.25;
/// Triangles with less area than this (square pixels) are degenerate and skipped.
pub const MIN_TRIANGLE_AREA_PX2: f64 = 1e-3;
/// Barycentric slack when testing whether a pixel lies in a triangle, so that pixel centres
/// on a shared edge are never missed (both neighbours map them the same way).
const INSIDE_SLACK: f64 = 1e-7;

/// A triangle mesh over an image: source vertices (points, then the border anchors) and the
/// triangles of their Delaunay triangulation.
#[derive(Debug, Clone)]
pub struct TriangleMesh {
    /// Vertex positions in the source image: the kept points, then the anchors.
    vertices: Vec<[f64; 2]>,
    /// For each vertex, the index of the caller's point it came from (`None` for anchors).
    origin: Vec<Option<usize>>,
    /// Vertex indices of each triangle, counter-clockwise in image coordinates (y down).
    triangles: Vec<[usize; 3]>,
    width: usize,
    height: usize,
}

impl TriangleMesh {
    /// Triangulates `points` (pixels of a `width`×`height` image) together with the
    /// [`border_anchors`] of that image. Points outside the image are clamped onto it; a point
    /// that coincides with an earlier one (or an anchor) is left out.
    pub fn new(points: &[[f32; 2]], width: usize, height: usize) -> Self {
        let mut vertices: Vec<[f64; 2]> = border_anchors(width, height).to_vec();
        let mut origin: Vec<Option<usize>> = vec![None; ANCHOR_COUNT];
        let (max_x, max_y) = (width.saturating_sub(1) as f64, height.saturating_sub(1) as f64);
        for (i, p) in points.iter().enumerate() {
            let q = [f64::from(p[0]).clamp(0.0, max_x), f64::from(p[1]).clamp(0.0, max_y)];
            if !q.iter().all(|v| v.is_finite()) {
                continue;
            }
            let taken =
                vertices.iter().any(|v| (v[0] - q[0]).hypot(v[1] - q[1]) < MIN_POINT_GAP_PX);
            if !taken {
                vertices.push(q);
                origin.push(Some(i));
            }
        }
        let triangles = delaunay(&vertices);
        // Keep the caller's points first: rotate the anchors to the end.
        let order: Vec<usize> = (ANCHOR_COUNT..vertices.len()).chain(0..ANCHOR_COUNT).collect();
        let mut new_index = vec![0; vertices.len()];
        for (new, &old) in order.iter().enumerate() {
            new_index[old] = new;
        }
        Self {
            vertices: order.iter().map(|&i| vertices[i]).collect(),
            origin: order.iter().map(|&i| origin[i]).collect(),
            triangles: triangles.iter().map(|t| t.map(|i| new_index[i])).collect(),
            width,
            height,
        }
    }

    #[cfg(test)]
    /// Returns the triangles as vertex indices into [`TriangleMesh::vertices`].
    pub fn triangles(&self) -> &[[usize; 3]] {
        &self.triangles
    }

    #[cfg(test)]
    /// Returns the source vertices: the kept points, then the anchors.
    pub fn vertices(&self) -> &[[f64; 2]] {
        &self.vertices
    }

    /// Returns where each vertex moves when the caller's points move to `targets` (same order
    /// and length as the points given to [`TriangleMesh::new`]); anchors stay.
    fn target_vertices(&self, targets: &[[f32; 2]]) -> Vec<[f64; 2]> {
        self.vertices
            .iter()
            .zip(&self.origin)
            .map(|(v, o)| match o.and_then(|i| targets.get(i)) {
                Some(t) => [f64::from(t[0]), f64::from(t[1])],
                None => *v,
            })
            .collect()
    }

    #[cfg(test)]
    /// Returns how many triangles collapse or turn over when the points move to `targets`.
    pub fn flipped(&self, targets: &[[f32; 2]]) -> usize {
        let dst = self.target_vertices(targets);
        self.triangles
            .iter()
            .filter(|t| signed_area(t.map(|i| dst[i])) < MIN_TRIANGLE_AREA_PX2)
            .count()
    }

    /// Returns the caller's points (indices, ascending, once each) that are corners of a
    /// triangle that collapses or turns over when the points move to `targets`.
    pub fn folded_points(&self, targets: &[[f32; 2]]) -> Vec<usize> {
        let dst = self.target_vertices(targets);
        let mut points: Vec<usize> = self
            .triangles
            .iter()
            .filter(|t| signed_area(t.map(|i| dst[i])) < MIN_TRIANGLE_AREA_PX2)
            .flat_map(|t| t.map(|i| self.origin[i]))
            .flatten()
            .collect();
        points.sort_unstable();
        points.dedup();
        points
    }

    #[cfg(test)]
    /// Warps `image` so that each source point lands on its target (bicubic; anchors fixed).
    ///
    /// # Shapes
    /// `image`: `height×width`, any type `remap` takes (dfl passes `CV_8UC3` BGR). `targets`:
    /// one point per point given to [`TriangleMesh::new`], in pixels. Returns the same size
    /// and type.
    ///
    /// # Errors
    /// OpenCV's error; `StsBadSize` when `image` is not the mesh's size.
    pub fn warp(&self, image: &Mat, targets: &[[f32; 2]]) -> opencv::Result<Mat> {
        self.check_size(image)?;
        remap(image, &self.inverse_map(targets)?)
    }

    /// Warps like [`TriangleMesh::warp`], but outside the polygon `smoothing.keep` the motion
    /// is blurred, so straight edges in the background bend in curves instead of kinks.
    ///
    /// # Shapes
    /// As [`TriangleMesh::warp`]; `smoothing.keep` in output pixels.
    ///
    /// # Errors
    /// As [`TriangleMesh::warp`].
    pub fn warp_smoothed(
        &self,
        image: &Mat,
        targets: &[[f32; 2]],
        smoothing: &Smoothing<'_>,
    ) -> opencv::Result<Mat> {
        self.check_size(image)?;
        let mut map = self.inverse_map(targets)?;
        smooth_outside(&mut map, smoothing)?;
        remap(image, &map)
    }

    fn check_size(&self, image: &Mat) -> opencv::Result<()> {
        if image.cols() as usize == self.width && image.rows() as usize == self.height {
            return Ok(());
        }
        let msg = format!(
            "image is {}x{}, the mesh was built for {}x{}",
            image.cols(),
            image.rows(),
            self.width,
            self.height
        );
        Err(opencv::Error::new(opencv::core::StsBadSize, msg))
    }

    /// Builds the `CV_32FC2` map giving, for each output pixel, the source pixel it shows.
    fn inverse_map(&self, targets: &[[f32; 2]]) -> opencv::Result<Mat> {
        let dst = self.target_vertices(targets);
        let (w, h) = (self.width, self.height);
        let (rows, cols) = (i32::try_from(h).unwrap_or(i32::MAX), i32::try_from(w).unwrap_or(0));
        let mut map = Mat::new_rows_cols_with_default(rows, cols, CV_32FC2, Scalar::all(0.0))?;
        let data = map.data_typed_mut::<Vec2f>()?;
        for (i, px) in data.iter_mut().enumerate() {
            *px = Vec2f::from([(i % w) as f32, (i / w) as f32]);
        }
        for t in &self.triangles {
            let to = t.map(|i| dst[i]);
            let from = t.map(|i| self.vertices[i]);
            if let Some(raster) = TriangleRaster::new(to, from) {
                raster.fill(data, w, h);
            }
        }
        Ok(map)
    }
}

/// Where and how much [`TriangleMesh::warp_smoothed`] blurs the motion.
#[derive(Debug, Clone, Copy)]
pub struct Smoothing<'a> {
    /// The polygon (output pixels) inside which the exact motion is kept: the face.
    pub keep: &'a [[f32; 2]],
    /// Gaussian sigma of the blur of the motion outside it, in pixels.
    pub sigma_px: f64,
    /// Gaussian sigma of the polygon's soft edge, in pixels.
    pub feather_px: f64,
}

/// The displacement field is blurred at this fraction of the image size (it is smooth, and
/// a wide blur at full size would cost more than the warp).
const SMOOTHING_DOWNSCALE: i32 = 4;

/// Samples `image` at `map` (bicubic; pixels past the border repeat the edge).
fn remap(image: &Mat, map: &Mat) -> opencv::Result<Mat> {
    let mut out = Mat::default();
    imgproc::remap(
        image,
        &mut out,
        map,
        &opencv::core::no_array(),
        imgproc::INTER_CUBIC,
        BORDER_REPLICATE,
        Scalar::all(0.0),
    )?;
    Ok(out)
}

/// Replaces the displacement of `map` (source − output position) outside `s.keep` by its
/// blurred version, blending across a soft edge.
fn smooth_outside(map: &mut Mat, s: &Smoothing<'_>) -> opencv::Result<()> {
    let (rows, cols) = (map.rows(), map.cols());
    let w = cols as usize;
    let mut disp = map.try_clone()?;
    for (i, d) in disp.data_typed_mut::<Vec2f>()?.iter_mut().enumerate() {
        *d = Vec2f::from([d[0] - (i % w) as f32, d[1] - (i / w) as f32]);
    }
    let small_size =
        Size::new((cols / SMOOTHING_DOWNSCALE).max(1), (rows / SMOOTHING_DOWNSCALE).max(1));
    let (mut small, mut blurred_small, mut blurred) =
        (Mat::default(), Mat::default(), Mat::default());
    imgproc::resize(&disp, &mut small, small_size, 0.0, 0.0, imgproc::INTER_AREA)?;
    let sigma = s.sigma_px / f64::from(SMOOTHING_DOWNSCALE);
    imgproc::gaussian_blur(
        &small,
        &mut blurred_small,
        Size::new(0, 0),
        sigma,
        sigma,
        BORDER_REFLECT,
    )?;
    imgproc::resize(
        &blurred_small,
        &mut blurred,
        Size::new(cols, rows),
        0.0,
        0.0,
        imgproc::INTER_LINEAR,
    )?;
    let keep = soft_polygon(s.keep, Size::new(cols, rows), s.feather_px)?;
    let (keep, blurred, disp) =
        (keep.data_typed::<f32>()?, blurred.data_typed::<Vec2f>()?, disp.data_typed::<Vec2f>()?);
    for (i, m) in map.data_typed_mut::<Vec2f>()?.iter_mut().enumerate() {
        let k = keep[i];
        let (dx, dy) = (
            k * disp[i][0] + (1.0 - k) * blurred[i][0],
            k * disp[i][1] + (1.0 - k) * blurred[i][1],
        );
        *m = Vec2f::from([(i % w) as f32 + dx, (i / w) as f32 + dy]);
    }
    Ok(())
}

/// Returns a `CV_32FC1` image of `size`: 1 inside `polygon`, 0 outside, with a Gaussian
/// edge of `feather_px`.
fn soft_polygon(polygon: &[[f32; 2]], size: Size, feather_px: f64) -> opencv::Result<Mat> {
    let mut mask = Mat::new_size_with_default(size, CV_32FC1, Scalar::all(0.0))?;
    let points: Vector<Point> =
        polygon.iter().map(|p| Point::new(p[0].round() as i32, p[1].round() as i32)).collect();
    if points.len() >= 3 {
        let polys: Vector<Vector<Point>> = std::iter::once(points).collect();
        imgproc::fill_poly(
            &mut mask,
            &polys,
            Scalar::all(1.0),
            imgproc::LINE_8,
            0,
            Point::new(0, 0),
        )?;
    }
    if feather_px <= 0.0 {
        return Ok(mask);
    }
    let mut soft = Mat::default();
    imgproc::gaussian_blur(
        &mask,
        &mut soft,
        Size::new(0, 0),
        feather_px,
        feather_px,
        BORDER_REFLECT,
    )?;
    Ok(soft)
}

/// One target triangle with the affine map back to its source triangle.
struct TriangleRaster {
    /// Barycentric coordinates (l1, l2) of a pixel as `l = m · [x, y, 1]`.
    bary: [[f64; 3]; 2],
    /// The source triangle: its first vertex and its two edge vectors.
    from: [[f64; 2]; 3],
    /// Rows the triangle covers (inclusive, unclipped).
    y_range: [f64; 2],
}

impl TriangleRaster {
    /// Prepares the target triangle `to` (counter-clockwise), or `None` when it is degenerate
    /// or turned over.
    fn new(to: [[f64; 2]; 3], from: [[f64; 2]; 3]) -> Option<Self> {
        let area2 = 2.0 * signed_area(to);
        if area2 < 2.0 * MIN_TRIANGLE_AREA_PX2 {
            return None;
        }
        let (e1, e2) = (sub(to[1], to[0]), sub(to[2], to[0]));
        // Invert [e1 e2]: (l1, l2) = inv · (p − to[0]).
        let inv = [[e2[1] / area2, -e2[0] / area2], [-e1[1] / area2, e1[0] / area2]];
        let bary =
            [0, 1].map(|r| [inv[r][0], inv[r][1], -(inv[r][0] * to[0][0] + inv[r][1] * to[0][1])]);
        let from = [from[0], sub(from[1], from[0]), sub(from[2], from[0])];
        let ys = to.map(|p| p[1]);
        let y_range = [
            ys.iter().copied().fold(f64::MAX, f64::min),
            ys.iter().copied().fold(f64::MIN, f64::max),
        ];
        Some(Self { bary, from, y_range })
    }

    /// Writes the source position of every pixel of a `w`×`h` map inside the triangle.
    fn fill(&self, data: &mut [Vec2f], w: usize, h: usize) {
        let y0 = self.y_range[0].ceil().max(0.0) as usize;
        let y1 = self.y_range[1].floor().min(h as f64 - 1.0);
        if y1 < 0.0 {
            return;
        }
        for y in y0..=(y1 as usize) {
            let Some((x0, x1)) = self.span(y as f64, w) else { continue };
            let yf = y as f64;
            for x in x0..=x1 {
                let xf = x as f64;
                let l1 = self.bary[0][0] * xf + self.bary[0][1] * yf + self.bary[0][2];
                let l2 = self.bary[1][0] * xf + self.bary[1][1] * yf + self.bary[1][2];
                let [o, a, b] = self.from;
                let sx = o[0] + l1 * a[0] + l2 * b[0];
                let sy = o[1] + l1 * a[1] + l2 * b[1];
                data[y * w + x] = Vec2f::from([sx as f32, sy as f32]);
            }
        }
    }

    /// Returns the columns of row `y` inside the triangle (clipped to `0..w`), if any: each
    /// barycentric coordinate is linear in x, so each bounds x from one side.
    fn span(&self, y: f64, w: usize) -> Option<(usize, usize)> {
        let (mut lo, mut hi) = (0.0f64, w as f64 - 1.0);
        let rows = [
            self.bary[0],
            self.bary[1],
            [
                -self.bary[0][0] - self.bary[1][0],
                -self.bary[0][1] - self.bary[1][1],
                1.0 - self.bary[0][2] - self.bary[1][2],
            ],
        ];
        for [a, b, c] in rows {
            let rest = b * y + c + INSIDE_SLACK; // l = a·x + rest − slack ≥ −slack
            if a > 0.0 {
                lo = lo.max(-rest / a);
            } else if a < 0.0 {
                hi = hi.min(-rest / a);
            } else if rest < 0.0 {
                return None;
            }
        }
        let (lo, hi) = (lo.ceil(), hi.floor());
        (lo <= hi).then_some((lo as usize, hi as usize))
    }
}

/// Returns the eight fixed anchors of a `width`×`height` image: corners and edge midpoints.
pub fn border_anchors(width: usize, height: usize) -> [[f64; 2]; ANCHOR_COUNT] {
    let (r, b) = (width.saturating_sub(1) as f64, height.saturating_sub(1) as f64);
    let (cx, cy) = (r / 2.0, b / 2.0);
    [[0.0, 0.0], [cx, 0.0], [r, 0.0], [r, cy], [r, b], [cx, b], [0.0, b], [0.0, cy]]
}

/// Returns half the cross product of `t`'s edges: the area, with a sign for the winding
/// ([`delaunay`] orients its triangles positive; a turned-over triangle comes out negative).
pub fn signed_area(t: [[f64; 2]; 3]) -> f64 {
    let (a, b) = (sub(t[1], t[0]), sub(t[2], t[0]));
    0.5 * (a[0] * b[1] - a[1] * b[0])
}

pub(super) fn sub(a: [f64; 2], b: [f64; 2]) -> [f64; 2] {
    [a[0] - b[0], a[1] - b[1]]
}

#[cfg(test)]
mod tests {
    use super::*;
    use opencv::core::{CV_8UC1, Point};

    /// 68 points on a 9×8 grid (the first 68) in the middle of a 200×160 image.
    fn grid_points() -> Vec<[f32; 2]> {
        (0..68).map(|i| [60.0 + (i % 9) as f32 * 10.0, 40.0 + (i / 9) as f32 * 10.0]).collect()
    }

    #[test]
    fn the_mesh_covers_the_image_exactly_once() {
        let mut pts = grid_points();
        pts[5][0] += 3.3; // break the grid's cocircular squares a little
        let mesh = TriangleMesh::new(&pts, 200, 160);
        let v = mesh.vertices();
        let total: f64 = mesh.triangles().iter().map(|t| signed_area(t.map(|i| v[i]))).sum();
        assert!((total - 199.0 * 159.0).abs() < 1e-6, "area {total}");
        assert!(mesh.triangles().iter().all(|t| signed_area(t.map(|i| v[i])) > 0.0));
        assert_eq!(v.len(), 68 + ANCHOR_COUNT);
    }

    #[test]
    fn coincident_and_outside_points_are_handled() {
        let mut pts = grid_points();
        pts[1] = pts[0];
        pts[2] = [-50.0, 30.0]; // clamped onto the left border
        pts[3] = [500.0, 500.0]; // clamped onto the bottom-right anchor, so left out
        let mesh = TriangleMesh::new(&pts, 200, 160);
        assert_eq!(mesh.vertices().len(), 66 + ANCHOR_COUNT);
        assert_eq!(mesh.flipped(&pts), 0);
        let v = mesh.vertices();
        let total: f64 = mesh.triangles().iter().map(|t| signed_area(t.map(|i| v[i]))).sum();
        assert!((total - 199.0 * 159.0).abs() < 1e-6, "area {total}");
    }

    #[test]
    fn the_same_points_leave_the_image_unchanged() {
        let mut image =
            Mat::new_rows_cols_with_default(160, 200, CV_8UC1, Scalar::all(0.0)).expect("mat");
        for (i, px) in image.data_typed_mut::<u8>().expect("u8").iter_mut().enumerate() {
            *px = ((i * 37 + i / 200 * 11) % 251) as u8;
        }
        let pts = grid_points();
        let out = TriangleMesh::new(&pts, 200, 160).warp(&image, &pts).expect("warp");
        let (a, b) = (image.data_typed::<u8>().expect("u8"), out.data_typed::<u8>().expect("u8"));
        let worst = a.iter().zip(b).map(|(x, y)| x.abs_diff(*y)).max();
        assert!(worst <= Some(1), "largest difference {worst:?}");
    }

    /// Returns the intensity-weighted centroid of a one-channel image.
    fn centroid(image: &Mat) -> [f64; 2] {
        let w = image.cols() as usize;
        let (mut sx, mut sy, mut s) = (0.0, 0.0, 0.0);
        for (i, &v) in image.data_typed::<u8>().expect("u8").iter().enumerate() {
            let v = f64::from(v);
            sx += v * (i % w) as f64;
            sy += v * (i / w) as f64;
            s += v;
        }
        [sx / s, sy / s]
    }

    #[test]
    fn moving_every_point_moves_a_dot_inside_them() {
        let mut image =
            Mat::new_rows_cols_with_default(160, 200, CV_8UC1, Scalar::all(0.0)).expect("mat");
        imgproc::circle(
            &mut image,
            Point::new(100, 75),
            4,
            Scalar::all(255.0),
            -1,
            imgproc::LINE_8,
            0,
        )
        .expect("circle");
        let pts = grid_points();
        let (dx, dy) = (6.5f32, -4.0f32);
        let moved: Vec<[f32; 2]> = pts.iter().map(|p| [p[0] + dx, p[1] + dy]).collect();
        let mesh = TriangleMesh::new(&pts, 200, 160);
        assert_eq!(mesh.flipped(&moved), 0);
        let out = mesh.warp(&image, &moved).expect("warp");
        let (before, after) = (centroid(&image), centroid(&out));
        let shift = [after[0] - before[0], after[1] - before[1]];
        assert!((shift[0] - f64::from(dx)).abs() < 0.25, "{shift:?}");
        assert!((shift[1] - f64::from(dy)).abs() < 0.25, "{shift:?}");
        // The border stays put: the top-left corner region is unchanged.
        assert_eq!(*out.at_2d::<u8>(2, 2).expect("px"), 0);
    }

    #[test]
    fn a_turned_over_triangle_is_reported_and_skipped() {
        let pts = grid_points();
        let mut moved = pts.clone();
        moved[40] = [moved[40][0] + 25.0, moved[40][1]]; // jumps past its right neighbours
        let mesh = TriangleMesh::new(&pts, 200, 160);
        assert!(mesh.flipped(&moved) > 0);
        let image =
            Mat::new_rows_cols_with_default(160, 200, CV_8UC1, Scalar::all(9.0)).expect("mat");
        let out = mesh.warp(&image, &moved).expect("warp still runs");
        assert!(out.data_typed::<u8>().expect("u8").iter().all(|&v| v == 9));
    }
}
