//! DFL's loss history (one `[src, dst]` pair per iteration) to ours (one mean per logging
//! interval) and back.

use std::path::Path;

use super::error::DflModelError;
use crate::dfl_format::pickle::Value;
use crate::model::folder::LossPoint;

/// Iterations per point of our loss history (`dfl train` logs its loss means every 10
/// iterations).
const CHECK_EVERY: u64 = 10;

/// Averages DFL's per-iteration losses over our logging interval. DFL appends one pair per
/// iteration, so the last pair belongs to iteration `iteration` and pair k of n to
/// `iteration - n + k + 1`; each of our points carries the last iteration it covers.
///
/// # Errors
/// `Format` naming `path` when the history is not a list of number pairs.
pub fn import_history(
    history: Option<&Value>,
    iteration: u64,
    path: &Path,
) -> Result<Vec<LossPoint>, DflModelError> {
    let Some(history) = history else { return Ok(Vec::new()) };
    let bad = || {
        DflModelError::format(
            path,
            "loss_history is not a list of [src, dst] losses; the file is damaged",
        )
    };
    let pairs = history.as_seq().ok_or_else(bad)?;
    let losses: Vec<(f64, f64)> = pairs
        .iter()
        .map(|pair| match pair.as_seq() {
            Some([src, dst, ..]) => Some((src.as_f64()?, dst.as_f64()?)),
            _ => None,
        })
        .collect::<Option<_>>()
        .ok_or_else(bad)?;
    let first = iteration.saturating_sub(losses.len() as u64) + 1;
    let bucket = CHECK_EVERY as usize;
    let points = losses
        .chunks(bucket)
        .enumerate()
        .map(|(i, chunk)| {
            let n = chunk.len() as f64;
            let (src, dst) = chunk.iter().fold((0.0, 0.0), |(s, d), (a, b)| (s + a, d + b));
            let last = first + (i * bucket + chunk.len()) as u64 - 1;
            LossPoint { iteration: last, src: src / n, dst: dst / n }
        })
        .collect();
    Ok(points)
}

/// Expands our loss points into DFL's one pair per iteration: each point stands for the
/// iterations since the previous one (at most one logging interval each, so a gap in the
/// history does not make a huge list).
pub fn export_history(points: &[LossPoint]) -> Value {
    let mut pairs = Vec::new();
    let mut previous: Option<u64> = None;
    for p in points {
        let span =
            previous.map_or(1, |prev| p.iteration.saturating_sub(prev)).clamp(1, CHECK_EVERY);
        for _ in 0..span {
            pairs.push(Value::List(vec![Value::Float(p.src), Value::Float(p.dst)]));
        }
        previous = Some(p.iteration);
    }
    Value::List(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_iteration_losses_become_interval_means_and_back() {
        let pairs: Vec<Value> = (0..25)
            .map(|i| Value::List(vec![Value::Float(f64::from(i)), Value::Float(1.0)]))
            .collect();
        let points = import_history(Some(&Value::List(pairs)), 100, Path::new("d")).unwrap();
        assert_eq!(points.len(), 3);
        assert_eq!(points[0], LossPoint { iteration: 85, src: 4.5, dst: 1.0 });
        assert_eq!(points[2], LossPoint { iteration: 100, src: 22.0, dst: 1.0 });
        let Value::List(back) = export_history(&points) else { panic!("a list") };
        assert_eq!(back.len(), 1 + 10 + 5);
        assert!(import_history(Some(&Value::Int(3)), 1, Path::new("d")).is_err());
    }
}
