//! Reading dlib's `shape_predictor` file layout (`docs/face-models.md`, "dlib's shape predictor")
//! into the flat
//! arrays of [`ShapePredictor`], checking every size and index that prediction relies on.

use std::ops::Range;

use super::{Cascade, FORMAT_VERSION, FeaturePixel, FormatError, ShapePredictor, Split};
use crate::face::dlib_serialize::{DecodeError, Decoder};

/// Fewest bytes a serialized float takes (two integers of at least two bytes each); caps
/// allocations made from counts read in the file.
const MIN_FLOAT_BYTES: usize = 4;

/// Everything read from the forests section, before the feature pixels are known.
#[derive(Debug, Default)]
struct Forests {
    splits: Vec<Split>,
    leaf_values: Vec<f32>,
    splits_per_tree: Option<usize>,
    trees_per_cascade: Vec<usize>,
}

/// Parses and checks a whole file.
pub(super) fn parse(bytes: &[u8]) -> Result<ShapePredictor, FormatError> {
    let mut d = Decoder::new(bytes);
    let version = d.read_i64()?;
    if version != FORMAT_VERSION {
        return Err(FormatError::UnsupportedVersion { version });
    }
    let initial_shape = read_initial_shape(&mut d)?;
    let forests_at = d.offset();
    let forests = read_forests(&mut d, initial_shape.len())?;
    let anchors_at = d.offset();
    let anchors: Vec<Vec<u32>> = d.read_vec(|d| d.read_vec(read_u32))?;
    let deltas_at = d.offset();
    let deltas: Vec<Vec<[f32; 2]>> = d.read_vec(|d| d.read_vec(Decoder::read_vector2_f32))?;
    if d.remaining() != 0 {
        return Err(FormatError::TrailingBytes { offset: d.offset(), len: d.remaining() });
    }
    let num_parts = initial_shape.len() / 2;
    let cascades =
        build_cascades(&forests, anchors, deltas, num_parts, [forests_at, anchors_at, deltas_at])?;
    Ok(ShapePredictor {
        initial_shape,
        cascades,
        splits: forests.splits,
        leaf_values: forests.leaf_values,
        splits_per_tree: forests.splits_per_tree.unwrap_or(0),
    })
}

/// Reads the mean shape: a non-empty column of interleaved x, y.
fn read_initial_shape(d: &mut Decoder<'_>) -> Result<Vec<f32>, FormatError> {
    let offset = d.offset();
    let shape = d.read_column_f32()?;
    if shape.is_empty() || shape.len() % 2 != 0 {
        let detail =
            format!("the initial shape has {} values; expected 2 per landmark", shape.len());
        return Err(FormatError::Inconsistent { offset, detail });
    }
    Ok(shape)
}

/// Reads `vector<vector<regression_tree>>` into flat arrays.
fn read_forests(d: &mut Decoder<'_>, shape_len: usize) -> Result<Forests, FormatError> {
    let mut forests = Forests::default();
    let num_cascades = d.read_len()?;
    for cascade in 0..num_cascades {
        let num_trees = d.read_len()?;
        for tree in 0..num_trees {
            read_tree(d, shape_len, &mut forests)?;
            if tree == 0 {
                // Assume the later cascades look like this one, to allocate once.
                let later = (num_cascades - cascade - 1).saturating_mul(num_trees);
                let trees_left = (num_trees - 1).saturating_add(later);
                reserve_trees(&mut forests, trees_left, shape_len, d.remaining());
            }
        }
        forests.trees_per_cascade.push(num_trees);
    }
    Ok(forests)
}

/// Reserves room for `trees` more trees, never more than the bytes left could encode.
fn reserve_trees(forests: &mut Forests, trees: usize, shape_len: usize, remaining_bytes: usize) {
    let splits_per_tree = forests.splits_per_tree.unwrap_or(0);
    let floats = trees.saturating_mul(splits_per_tree + 1).saturating_mul(shape_len);
    let floats = floats.min(remaining_bytes / MIN_FLOAT_BYTES);
    forests.leaf_values.reserve_exact(floats);
    let splits = trees.saturating_mul(splits_per_tree).min(remaining_bytes / MIN_FLOAT_BYTES);
    forests.splits.reserve_exact(splits);
}

/// Reads one `regression_tree` (splits, then leaf vectors) and checks its sizes.
fn read_tree(d: &mut Decoder<'_>, shape_len: usize, out: &mut Forests) -> Result<(), FormatError> {
    let offset = d.offset();
    let num_splits = d.read_len()?;
    let expected = *out.splits_per_tree.get_or_insert(num_splits);
    if num_splits != expected {
        let detail = format!("a tree has {num_splits} splits; the first tree has {expected}");
        return Err(FormatError::Inconsistent { offset, detail });
    }
    for _ in 0..num_splits {
        out.splits.push(Split { idx1: read_u32(d)?, idx2: read_u32(d)?, thresh: d.read_f32()? });
    }
    let offset = d.offset();
    let num_leaves = d.read_len()?;
    if num_leaves != num_splits + 1 {
        let detail = format!("a tree has {num_leaves} leaves for {num_splits} splits");
        return Err(FormatError::Inconsistent { offset, detail });
    }
    for _ in 0..num_leaves {
        let offset = d.offset();
        let len = d.read_column_f32_into(&mut out.leaf_values)?;
        if len != shape_len {
            let detail = format!("a leaf has {len} values; the initial shape has {shape_len}");
            return Err(FormatError::Inconsistent { offset, detail });
        }
    }
    Ok(())
}

/// Reads an `unsigned long` used as an index.
fn read_u32(d: &mut Decoder<'_>) -> Result<u32, DecodeError> {
    let offset = d.offset();
    u32::try_from(d.read_u64()?)
        .map_err(|_| DecodeError::IntegerOutOfRange { offset, target: "u32" })
}

/// Joins the forests with their feature pixels, checking every index `predict` will use.
fn build_cascades(
    forests: &Forests,
    anchors: Vec<Vec<u32>>,
    deltas: Vec<Vec<[f32; 2]>>,
    num_parts: usize,
    [forests_at, anchors_at, deltas_at]: [usize; 3],
) -> Result<Vec<Cascade>, FormatError> {
    let inconsistent = |offset, detail| Err(FormatError::Inconsistent { offset, detail });
    let num_cascades = forests.trees_per_cascade.len();
    if anchors.len() != num_cascades || deltas.len() != num_cascades {
        let (a, d) = (anchors.len(), deltas.len());
        return inconsistent(
            anchors_at,
            format!("{num_cascades} cascades, {a} anchor lists and {d} delta lists"),
        );
    }
    let mut cascades = Vec::with_capacity(num_cascades);
    let mut first_tree = 0;
    for (c, (anchors, deltas)) in anchors.into_iter().zip(deltas).enumerate() {
        if anchors.len() != deltas.len() {
            let detail =
                format!("cascade {c} has {} anchors but {} deltas", anchors.len(), deltas.len());
            return inconsistent(deltas_at, detail);
        }
        if let Some(bad) = anchors.iter().find(|&&a| a as usize >= num_parts) {
            return inconsistent(
                anchors_at,
                format!("cascade {c} anchors landmark {bad} of {num_parts}"),
            );
        }
        let trees = first_tree..first_tree + forests.trees_per_cascade[c];
        first_tree = trees.end;
        check_split_indices(forests, trees.clone(), anchors.len(), c)
            .map_err(|detail| FormatError::Inconsistent { offset: forests_at, detail })?;
        let features =
            anchors.into_iter().zip(deltas).map(|(anchor, delta)| FeaturePixel { anchor, delta });
        cascades.push(Cascade { trees, features: features.collect() });
    }
    Ok(cascades)
}

/// Checks that every split of `trees` reads features of a pool of `pool` pixels; the error
/// says which split does not.
fn check_split_indices(
    forests: &Forests,
    trees: Range<usize>,
    pool: usize,
    cascade: usize,
) -> Result<(), String> {
    let per_tree = forests.splits_per_tree.unwrap_or(0);
    let splits = &forests.splits[trees.start * per_tree..trees.end * per_tree];
    match splits.iter().find(|s| s.idx1.max(s.idx2) as usize >= pool) {
        None => Ok(()),
        Some(s) => Err(format!(
            "a split of cascade {cascade} reads feature pixels {} and {}; the pool has {pool}",
            s.idx1, s.idx2
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::face::dlib_serialize::encode;

    #[test]
    fn absurd_counts_fail_before_allocating() {
        let mut bytes = Vec::new();
        encode::int(&mut bytes, 1);
        encode::column(&mut bytes, &[0.25, 0.5]);
        let forests_at = bytes.len();
        encode::int(&mut bytes, 0x7fff_ffff);
        let err = parse(&bytes).unwrap_err();
        let expected = DecodeError::TooLong { offset: forests_at, len: 0x7fff_ffff, remaining: 0 };
        assert!(matches!(err, FormatError::Decode(e) if e == expected));
    }

    #[test]
    fn odd_initial_shapes_are_rejected() {
        let mut bytes = Vec::new();
        encode::int(&mut bytes, 1);
        encode::column(&mut bytes, &[0.25, 0.5, 0.75]);
        let err = parse(&bytes).unwrap_err();
        assert!(matches!(err, FormatError::Inconsistent { offset: 2, .. }), "{err:?}");
    }

    #[test]
    fn split_indices_are_checked_per_cascade() {
        let split = |idx1, idx2| Split { idx1, idx2, thresh: 0.0 };
        let forests = Forests {
            splits: vec![split(0, 1), split(1, 0), split(2, 0)],
            leaf_values: Vec::new(),
            splits_per_tree: Some(1),
            trees_per_cascade: vec![2, 1],
        };
        assert_eq!(check_split_indices(&forests, 0..2, 2, 0), Ok(()));
        let err = check_split_indices(&forests, 2..3, 2, 1).unwrap_err();
        assert!(err.contains("cascade 1 reads feature pixels 2 and 0"), "{err}");
    }
}
