//! Where an axis puts its ticks and how it labels them: 1-2-5 steps on linear axes, powers of
//! ten on log axes, counts written short (1.2k, 35k). Pure functions, tested exactly.

use std::ops::Range;

/// A labelled value on an axis.
#[derive(Debug, Clone, PartialEq)]
pub struct Tick {
    /// Where the tick is, in axis units.
    pub value: f64,
    /// What is written beside it.
    pub label: String,
}

/// An axis: its bounds and its labelled ticks.
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    /// The lower bound.
    pub lo: f64,
    /// The upper bound.
    pub hi: f64,
    /// The ticks, ascending, inside `[lo, hi]`.
    pub ticks: Vec<Tick>,
}

/// Relative slack when comparing tick positions with bounds (floating-point noise).
const TICK_EPS: f64 = 1e-9;

/// `m · 10^e`, rounded once (so 0.3 is 3/10, not 3 · 0.1).
fn scaled(m: f64, e: i32) -> f64 {
    if e >= 0 { m * 10f64.powi(e) } else { m / 10f64.powi(-e) }
}

/// A 1-2-5 step `m · 10^e`.
#[derive(Debug, Clone, Copy)]
struct Step {
    m: f64,
    e: i32,
}

impl Step {
    fn value(self) -> f64 {
        scaled(self.m, self.e)
    }

    /// The `k`-th multiple, rounded once.
    fn at(self, k: i64) -> f64 {
        scaled(k as f64 * self.m, self.e)
    }

    /// The indices of the multiples within `[lo, hi]`.
    fn inside(self, lo: f64, hi: f64) -> Range<i64> {
        let s = self.value();
        let first = (lo / s - TICK_EPS).ceil() as i64;
        let last = (hi / s + TICK_EPS).floor() as i64;
        first..last + 1
    }

    /// The indices of the nearest multiples at or outside `[lo, hi]`.
    fn around(self, lo: f64, hi: f64) -> (i64, i64) {
        let s = self.value();
        ((lo / s + TICK_EPS).floor() as i64, (hi / s - TICK_EPS).ceil() as i64)
    }

    /// Decimals that write every multiple exactly.
    fn decimals(self) -> usize {
        usize::try_from(-self.e).unwrap_or(0)
    }
}

/// 1-2-5 steps, ascending, from well below `span / max_ticks` and never below `10^min_e`.
fn steps(span: f64, max_ticks: usize, min_e: i32) -> impl Iterator<Item = Step> {
    let rough = span.abs().max(f64::MIN_POSITIVE) / max_ticks.max(1) as f64;
    let e0 = (rough.log10().floor() as i32 - 1).max(min_e);
    (e0..).flat_map(|e| [1.0, 2.0, 5.0].map(|m| Step { m, e }))
}

/// A count axis (iterations, faces) over exactly `[lo, hi]`: ticks at the multiples of the
/// smallest 1-2-5 step of at least 1 that puts at most `max_ticks` of them inside, written by
/// [`format_count`]. `0..37_000` with 5 gives 0, 10k, 20k, 30k.
pub fn count_axis(lo: f64, hi: f64, max_ticks: usize) -> Axis {
    let max_ticks = max_ticks.max(2);
    let fits = |s: &Step| s.inside(lo, hi).count() <= max_ticks;
    let step = steps(hi - lo, max_ticks, 0).find(fits).expect("invariant: steps grow to fit");
    let ticks = step
        .inside(lo, hi)
        .map(|k| step.at(k))
        .map(|value| Tick { value, label: format_count(value) })
        .collect();
    Axis { lo, hi, ticks }
}

/// A linear axis around `[min, max]`: bounds moved out to multiples of the smallest 1-2-5 step
/// that needs at most `max_ticks` ticks, a tick at every multiple, all labels with the step's
/// decimals. `-0.12..1` with 8 gives -0.2, 0.0, 0.2, … 1.0.
pub fn linear_axis(min: f64, max: f64, max_ticks: usize) -> Axis {
    let (min, max) = if max - min > TICK_EPS * max.abs().max(1.0) {
        (min, max)
    } else {
        let pad = if min == 0.0 { 1.0 } else { min.abs() / 10.0 };
        (min - pad, max + pad)
    };
    let max_ticks = max_ticks.max(2);
    let fits = |s: &Step| {
        let (a, b) = s.around(min, max);
        b - a < max_ticks as i64
    };
    let step = steps(max - min, max_ticks, i32::MIN).find(fits).expect("invariant: steps grow");
    let (a, b) = step.around(min, max);
    let decimals = step.decimals();
    let tick = |k| Tick { value: step.at(k), label: fixed(step.at(k), decimals) };
    Axis { lo: step.at(a), hi: step.at(b), ticks: (a..=b).map(tick).collect() }
}

/// The largest 1-2-5 value ≤ `v` (`v` > 0).
fn floor_125(v: f64) -> f64 {
    let e = v.log10().floor() as i32;
    [5.0, 2.0, 1.0]
        .into_iter()
        .map(|m| scaled(m, e))
        .find(|&c| c <= v * (1.0 + TICK_EPS))
        .unwrap_or_else(|| scaled(5.0, e - 1))
}

/// The smallest 1-2-5 value ≥ `v` (`v` > 0).
fn ceil_125(v: f64) -> f64 {
    let e = v.log10().floor() as i32;
    [1.0, 2.0, 5.0]
        .into_iter()
        .map(|m| scaled(m, e))
        .find(|&c| c >= v * (1.0 - TICK_EPS))
        .unwrap_or_else(|| scaled(1.0, e + 1))
}

/// The values `m · 10^e` for the given mantissas inside `[lo, hi]` (both > 0), ascending.
pub fn log_values(lo: f64, hi: f64, mantissas: &[f64]) -> Vec<f64> {
    let (e_lo, e_hi) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    let is_inside = |v: &f64| *v >= lo * (1.0 - TICK_EPS) && *v <= hi * (1.0 + TICK_EPS);
    (e_lo..=e_hi)
        .flat_map(|e| mantissas.iter().map(move |&m| scaled(m, e)))
        .filter(is_inside)
        .collect()
}

/// A log axis around `[min, max]` (both > 0): bounds at the nearest 1-2-5 values outside; ticks
/// at the powers of ten when the axis spans two decades or more (every k-th one past
/// `max_ticks`), else at its 1-2-5 values. `0.013..0.9` gives 0.01, 0.1, 1.
pub fn log_axis(min: f64, max: f64, max_ticks: usize) -> Axis {
    let (mut lo, mut hi) = (floor_125(min), ceil_125(max));
    if hi <= lo {
        (lo, hi) = (floor_125(lo * 0.99), ceil_125(hi * 1.01));
    }
    let max_ticks = max_ticks.max(2);
    let decades = log_values(lo, hi, &[1.0]);
    let values = if decades.len() >= 3 {
        let every = decades.len().div_ceil(max_ticks);
        decades.into_iter().step_by(every).collect()
    } else {
        let all = log_values(lo, hi, &[1.0, 2.0, 5.0]);
        if all.len() <= max_ticks {
            all
        } else {
            let inner = decades.into_iter().filter(|&d| d > lo && d < hi);
            std::iter::once(lo).chain(inner).chain(std::iter::once(hi)).collect()
        }
    };
    let ticks = values.into_iter().map(|value| Tick { value, label: format_log_value(value) });
    Axis { lo, hi, ticks: ticks.collect() }
}

/// `v` with at most `decimals` decimals (trailing zeros dropped), never "-0".
fn trimmed(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    let s = if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.') } else { &s };
    if s == "-0" { "0".to_owned() } else { s.to_owned() }
}

/// `v` with exactly `decimals` decimals, never "-0.0".
fn fixed(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    match s.strip_prefix('-') {
        Some(rest) if rest.chars().all(|c| c == '0' || c == '.') => rest.to_owned(),
        _ => s,
    }
}

/// Writes a count the short way: 950, 1.2k, 35k, 1.25M.
pub fn format_count(v: f64) -> String {
    let (value, suffix) = match v.abs() {
        a if a >= 1e6 => (v / 1e6, "M"),
        a if a >= 1e3 => (v / 1e3, "k"),
        _ => (v, ""),
    };
    format!("{}{suffix}", trimmed(value, 3))
}

/// Writes `v` with `digits` significant digits: 0.0213, 0.812, 24.1, 4.50.
pub fn format_significant(v: f64, digits: usize) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let magnitude = v.abs().log10().floor() as i64;
    let decimals = (digits as i64 - 1 - magnitude).clamp(0, 12) as usize;
    fixed(v, decimals)
}

/// Writes a log axis value `m · 10^e`: 0.01, 0.5, 20, 1k; 1e-5 below 0.0001.
fn format_log_value(v: f64) -> String {
    if v >= 1e3 {
        return format_count(v);
    }
    let e = v.log10().floor() as i32;
    if e < -4 { format!("{v:e}") } else { trimmed(v, usize::try_from(-e).unwrap_or(0)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(axis: &Axis) -> Vec<&str> {
        axis.ticks.iter().map(|t| t.label.as_str()).collect()
    }

    #[test]
    fn count_ticks_fall_on_round_thousands() {
        let axis = count_axis(0.0, 37_000.0, 5);
        assert_eq!(labels(&axis), ["0", "10k", "20k", "30k"]);
        assert_eq!(axis.ticks[1].value, 10_000.0);
        assert_eq!((axis.lo, axis.hi), (0.0, 37_000.0), "a count axis keeps the data's range");
        assert_eq!(labels(&count_axis(0.0, 2072.0, 8)), ["0", "500", "1k", "1.5k", "2k"]);
        assert_eq!(labels(&count_axis(0.0, 1_250_000.0, 4)), ["0", "500k", "1M"]);
        // Counts never get fractional ticks, however short the range.
        assert_eq!(labels(&count_axis(0.0, 1.0, 8)), ["0", "1"]);
    }

    #[test]
    fn counts_are_written_short() {
        let cases = [
            (0.0, "0"),
            (950.0, "950"),
            (1000.0, "1k"),
            (1200.0, "1.2k"),
            (1250.0, "1.25k"),
            (35_000.0, "35k"),
            (1_200_000.0, "1.2M"),
        ];
        for (v, want) in cases {
            assert_eq!(format_count(v), want, "{v}");
        }
    }

    #[test]
    fn log_ticks_are_powers_of_ten_over_two_decades_or_more() {
        let axis = log_axis(0.013, 0.9, 6);
        assert_eq!((axis.lo, axis.hi), (0.01, 1.0));
        assert_eq!(labels(&axis), ["0.01", "0.1", "1"]);
        // Within about a decade the 1-2-5 values are ticks.
        let axis = log_axis(0.6, 4.5, 6);
        assert_eq!((axis.lo, axis.hi), (0.5, 5.0));
        assert_eq!(labels(&axis), ["0.5", "1", "2", "5"]);
        // Too many decades for the room: every second one.
        assert_eq!(labels(&log_axis(1.5e-6, 0.9, 4)), ["1e-6", "0.0001", "0.01", "1"]);
        // One value still gets an axis around it.
        let axis = log_axis(0.5, 0.5, 6);
        assert!(axis.lo < 0.5 && axis.hi > 0.5, "{axis:?}");
    }

    #[test]
    fn linear_ticks_share_their_decimals() {
        let axis = linear_axis(-0.123, 1.0, 8);
        assert_eq!((axis.lo, axis.hi), (-0.2, 1.0));
        assert_eq!(labels(&axis), ["-0.2", "0.0", "0.2", "0.4", "0.6", "0.8", "1.0"]);
        assert_eq!(labels(&linear_axis(12.0, 37.0, 6)), ["10", "20", "30", "40"]);
        // A flat series gets a range around its value.
        let axis = linear_axis(0.5, 0.5, 5);
        assert!(axis.lo < 0.5 && axis.hi > 0.5, "{axis:?}");
    }

    #[test]
    fn values_keep_three_significant_digits() {
        let cases = [
            (0.021_345, "0.0213"),
            (0.8123, "0.812"),
            (24.14, "24.1"),
            (4.5, "4.50"),
            (-0.1227, "-0.123"),
            (1234.0, "1234"),
        ];
        for (v, want) in cases {
            assert_eq!(format_significant(v, 3), want, "{v}");
        }
    }
}
