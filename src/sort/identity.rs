//! `identity`: order and filter faces by who they are, from SFace embeddings.
//!
//! With reference images (`--keep-like`), a face's score is its best cosine similarity to any
//! reference. Without, faces are grouped: each joins the group whose mean it is most similar
//! to when that reaches the threshold, else starts a group; then every face is reassigned to
//! its nearest group mean once. The largest group is taken as the faceset's person and the
//! score is the similarity to its mean; groups are listed largest first.

pub use crate::face::identity::SAME_PERSON_COSINE as SAME_PERSON;

use crate::face::identity::{EMBEDDING_LEN, Embedding};

/// Each face's best similarity to any of `references`.
pub fn likeness(embeddings: &[Embedding], references: &[Embedding]) -> Vec<f64> {
    embeddings
        .iter()
        .map(|e| references.iter().map(|r| e.cosine(r)).fold(f64::MIN, f64::max))
        .collect()
}

/// Faces grouped by identity.
#[derive(Debug, Clone, PartialEq)]
pub struct Groups {
    /// Each face's group; group 0 is the largest.
    pub group: Vec<usize>,
    /// Each face's similarity to the mean of group 0.
    pub score: Vec<f64>,
    /// Each face's similarity to its own group's mean.
    pub own: Vec<f64>,
}

/// Groups `embeddings` with the cosine `threshold` (see the module doc).
pub fn group(embeddings: &[Embedding], threshold: f64) -> Groups {
    let mut sums: Vec<Vec<f64>> = Vec::new();
    let mut assign = Vec::with_capacity(embeddings.len());
    for e in embeddings {
        let best = nearest(&unit_means(&sums), e);
        let g = match best {
            Some((g, sim)) if sim >= threshold => g,
            _ => {
                sums.push(vec![0.0; EMBEDDING_LEN]);
                sums.len() - 1
            }
        };
        add(&mut sums[g], e);
        assign.push(g);
    }
    // One reassignment to the final means.
    let means = unit_means(&sums);
    for (a, e) in assign.iter_mut().zip(embeddings) {
        if let Some((g, _)) = nearest(&means, e) {
            *a = g;
        }
    }
    // Renumber by size, largest first (ties: first seen).
    let mut sizes: Vec<(usize, usize)> = (0..sums.len()).map(|g| (g, 0)).collect();
    for &g in &assign {
        sizes[g].1 += 1;
    }
    sizes.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut rank = vec![0; sums.len()];
    for (r, &(g, _)) in sizes.iter().enumerate() {
        rank[g] = r;
    }
    let group: Vec<usize> = assign.iter().map(|&g| rank[g]).collect();
    let mut sums = vec![vec![0.0; EMBEDDING_LEN]; sizes.len()];
    for (&g, e) in group.iter().zip(embeddings) {
        add(&mut sums[g], e);
    }
    let means = unit_means(&sums);
    let score =
        embeddings.iter().map(|e| means.first().map_or(0.0, |m| cosine_f64(m, e))).collect();
    let own = embeddings.iter().zip(&group).map(|(e, &g)| cosine_f64(&means[g], e)).collect();
    Groups { group, score, own }
}

fn add(sum: &mut [f64], e: &Embedding) {
    for (s, v) in sum.iter_mut().zip(e.as_slice()) {
        *s += f64::from(*v);
    }
}

fn unit_means(sums: &[Vec<f64>]) -> Vec<Vec<f64>> {
    sums.iter()
        .map(|s| {
            let norm = s.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
            s.iter().map(|v| v / norm).collect()
        })
        .collect()
}

fn cosine_f64(mean: &[f64], e: &Embedding) -> f64 {
    mean.iter().zip(e.as_slice()).map(|(m, v)| m * f64::from(*v)).sum()
}

fn nearest(means: &[Vec<f64>], e: &Embedding) -> Option<(usize, f64)> {
    means
        .iter()
        .enumerate()
        .map(|(g, m)| (g, cosine_f64(m, e)))
        .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A unit vector near axis `axis`, tilted by `t` toward the next axis.
    fn near(axis: usize, t: f32) -> Embedding {
        let mut v = vec![0.0; EMBEDDING_LEN];
        v[axis] = 1.0;
        v[(axis + 1) % 8] = t;
        Embedding::from_vec(v).expect("invariant: a finite non-zero vector")
    }

    #[test]
    fn the_largest_group_is_the_person() {
        let e = vec![near(3, 0.1), near(0, 0.0), near(0, 0.2), near(3, 0.0), near(0, 0.1)];
        let g = group(&e, SAME_PERSON);
        assert_eq!(g.group, [1, 0, 0, 1, 0]);
        assert!(g.score[1] > 0.9 && g.score[0] < 0.2, "{:?}", g.score);
    }

    #[test]
    fn likeness_is_the_best_match_to_any_reference() {
        let refs = vec![near(0, 0.0), near(5, 0.0)];
        let l = likeness(&[near(5, 0.1), near(2, 0.0)], &refs);
        assert!(l[0] > 0.99 && l[1].abs() < 1e-6, "{l:?}");
    }
}
