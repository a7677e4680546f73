//! `best`: DFL's "final" sort. Keep the N faces that best cover the poses, sharpest first.
//!
//! DFL (`Sorter.py` `sort_best`): split yaw over [−1.2, 1.2] into 128 bins and give each bin
//! an equal share of N; in each bin keep the 10× share sharpest; split those by pitch into
//! `share` bins; order each pitch bin by histogram dissimilarity and take round-robin across
//! the pitch bins until the share is filled. Differences, on purpose:
//! - DFL's share is `round(N / 128)` plus a redistributed shortfall, which keeps nothing for
//!   N < 64 and rarely exactly N. Here the shares are water-filled: bins with fewer faces than
//!   their share keep all and pass the rest on, so exactly min(N, faces) are kept.
//! - Faces with a blur score of 0 (not one edge steep enough to count) are rejected first; DFL
//!   keeps them when their yaw bin has nothing else.
//! - Pitch bins span the candidates' own pitch range, not the fixed [−π/2, π/2] (where nearly
//!   every face falls in one or two bins).

use super::hist;

/// Yaw bins over [`YAW_RANGE`].
const YAW_BINS: usize = 128;
/// DFL: "maximum yaw for 2DFAN landmarks" (radians); faces beyond go to the end bins.
const YAW_RANGE: f64 = 1.2;
/// Candidates per slot, by sharpness, before the pitch spread (DFL: 10).
const CANDIDATES_PER_SLOT: usize = 10;

/// One face as `best` sees it.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    /// Radians, positive toward the image's left.
    pub yaw: f64,
    /// Radians, positive up.
    pub pitch: f64,
    /// Higher is sharper.
    pub sharpness: f64,
    /// The `hist-dissim` feature (gray hull histogram).
    pub histogram: &'a [f32],
}

/// What `best` keeps and rejects.
#[derive(Debug, Default)]
pub struct Selection {
    /// Kept faces in output order: yaw bins from the image-right turn to the image-left turn,
    /// inside a bin round-robin over pitch.
    pub kept: Vec<usize>,
    /// Rejected faces with the reason.
    pub rejected: Vec<(usize, String)>,
}

/// Selects at most `target` faces of `faces`.
pub fn select(faces: &[Candidate<'_>], target: usize) -> Selection {
    let mut sel = Selection::default();
    let mut bins: Vec<Vec<usize>> = vec![Vec::new(); YAW_BINS];
    for (i, f) in faces.iter().enumerate() {
        if f.sharpness > 0.0 {
            bins[yaw_bin(f.yaw)].push(i);
        } else {
            // DFL would keep it if its yaw bin had nothing better: a pose learnt from a face
            // without one sharp edge is learnt blurred.
            sel.rejected.push((i, format!("best {target}: no sharp edge (blur score 0)")));
        }
    }
    let counts: Vec<usize> = bins.iter().map(Vec::len).collect();
    let shares = water_fill(&counts, target);
    for (bin, (mut members, share)) in bins.into_iter().zip(shares).enumerate() {
        let reason = |why: &str| format!("best {target}: yaw bin {bin} keeps {share}; {why}");
        members.sort_by(|&a, &b| faces[b].sharpness.total_cmp(&faces[a].sharpness).then(a.cmp(&b)));
        let candidates = members.len().min(share * CANDIDATES_PER_SLOT);
        for &i in &members[candidates..] {
            sel.rejected.push((i, reason("not among its sharpest")));
        }
        let (kept, spare) = spread_over_pitch(faces, &members[..candidates], share);
        sel.kept.extend(kept);
        sel.rejected.extend(spare.into_iter().map(|i| (i, reason("its pitch range was covered"))));
    }
    sel
}

/// The yaw bin of a face: bin 0 holds the most negative yaw (turned to the image's right).
fn yaw_bin(yaw: f64) -> usize {
    let t = (yaw + YAW_RANGE) / (2.0 * YAW_RANGE);
    ((t * YAW_BINS as f64).floor().max(0.0) as usize).min(YAW_BINS - 1)
}

/// Splits `total` over bins holding `counts` items: equal shares, a bin never gets more than it
/// holds, and what a small bin cannot use goes to the others; a remainder smaller than the
/// open bins goes one each to bins spread evenly over them. Returns each bin's share; they
/// sum to min(total, Σ counts).
pub fn water_fill(counts: &[usize], total: usize) -> Vec<usize> {
    let mut shares = vec![0; counts.len()];
    let mut left = total.min(counts.iter().sum());
    while left > 0 {
        let open: Vec<usize> = (0..counts.len()).filter(|&b| shares[b] < counts[b]).collect();
        if left < open.len() {
            // Fewer faces than bins: one each to bins spread evenly, both ends included.
            for k in 0..left {
                let at = if left == 1 { open.len() / 2 } else { k * (open.len() - 1) / (left - 1) };
                shares[open[at]] += 1;
            }
            break;
        }
        let each = left / open.len();
        for b in open {
            let add = each.min(counts[b] - shares[b]).min(left);
            shares[b] += add;
            left -= add;
            if left == 0 {
                break;
            }
        }
    }
    shares
}

/// Takes `share` of `members` spread over `share` pitch bins: each pitch bin ordered by
/// histogram dissimilarity (most unlike first), then round-robin. Returns (taken, not taken).
fn spread_over_pitch(
    faces: &[Candidate],
    members: &[usize],
    share: usize,
) -> (Vec<usize>, Vec<usize>) {
    if share == 0 || members.is_empty() {
        return (Vec::new(), members.to_vec());
    }
    let (lo, hi) = members.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &i| {
        (lo.min(faces[i].pitch), hi.max(faces[i].pitch))
    });
    let mut pitch_bins: Vec<Vec<usize>> = vec![Vec::new(); share];
    for &i in members {
        let t = if hi > lo { (faces[i].pitch - lo) / (hi - lo) } else { 0.0 };
        pitch_bins[((t * share as f64) as usize).min(share - 1)].push(i);
    }
    for bin in &mut pitch_bins {
        let features: Vec<&[f32]> = bin.iter().map(|&i| faces[i].histogram).collect();
        let dissim = hist::dissimilarity(&features);
        let mut order: Vec<usize> = (0..bin.len()).collect();
        order.sort_by(|&a, &b| dissim[b].total_cmp(&dissim[a]).then(a.cmp(&b)));
        *bin = order.into_iter().rev().map(|k| bin[k]).collect(); // popped from the back
    }
    let mut taken = Vec::with_capacity(share);
    while taken.len() < share {
        let before = taken.len();
        for bin in &mut pitch_bins {
            if taken.len() < share {
                taken.extend(bin.pop());
            }
        }
        if taken.len() == before {
            break;
        }
    }
    (taken, pitch_bins.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(yaw: f64, pitch: f64, sharpness: f64) -> Candidate<'static> {
        Candidate { yaw, pitch, sharpness, histogram: &[1.0; 256] }
    }

    #[test]
    fn water_filling_gives_small_bins_all_and_the_rest_to_the_others() {
        assert_eq!(water_fill(&[1, 10, 10], 9), [1, 4, 4]);
        assert_eq!(water_fill(&[1, 10, 10], 10), [1, 4, 5]);
        assert_eq!(water_fill(&[3, 3, 3, 3, 3], 3), [1, 0, 1, 0, 1], "both ends and the middle");
        assert_eq!(water_fill(&[2, 0, 3], 100), [2, 0, 3]);
        assert_eq!(water_fill(&[5; 128], 30).iter().sum::<usize>(), 30);
    }

    #[test]
    fn keeps_exactly_n_and_covers_every_yaw() {
        // 200 frontal faces and 5 in profile to each side: 20 kept must include all 10 profiles.
        let mut faces: Vec<Candidate> = (1..=200).map(|i| face(0.0, 0.0, f64::from(i))).collect();
        faces.extend((1..=5).map(|i| face(1.0, 0.0, f64::from(i))));
        faces.extend((1..=5).map(|i| face(-1.0, 0.0, f64::from(i))));
        let sel = select(&faces, 20);
        assert_eq!(sel.kept.len(), 20);
        assert_eq!(sel.kept.len() + sel.rejected.len(), faces.len());
        assert!((200..210).all(|i| sel.kept.contains(&i)), "every profile face is kept");
        let frontal: Vec<usize> = sel.kept.iter().copied().filter(|&i| i < 200).collect();
        assert!(frontal.iter().all(|&i| i >= 190), "the sharpest frontal faces: {frontal:?}");
        // Output order runs from negative to positive yaw.
        let yaws: Vec<f64> = sel.kept.iter().map(|&i| faces[i].yaw).collect();
        assert!(yaws.windows(2).all(|w| w[0] <= w[1]), "{yaws:?}");
    }

    #[test]
    fn faces_without_a_sharp_edge_are_not_kept() {
        let faces = vec![face(0.0, 0.0, 0.3), face(1.0, 0.0, 0.0), face(-1.0, 0.0, 0.2)];
        let sel = select(&faces, 3);
        assert_eq!(sel.kept, [2, 0]);
        assert_eq!(sel.rejected[0].0, 1);
    }

    #[test]
    fn spreads_a_bin_over_pitch() {
        // One yaw bin: 10 faces looking down (sharper) and 10 looking up; 4 kept = 2 + 2.
        let mut faces: Vec<Candidate> =
            (0..10).map(|i| face(0.0, -0.4, 11.0 + f64::from(i))).collect();
        faces.extend((1..=10).map(|i| face(0.0, 0.4, f64::from(i))));
        let sel = select(&faces, 4);
        let up = sel.kept.iter().filter(|&&i| faces[i].pitch > 0.0).count();
        assert_eq!((sel.kept.len(), up), (4, 2), "{:?}", sel.kept);
    }
}
