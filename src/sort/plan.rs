//! From a ranking to file names: `aligned/<rank>_<frame>_<face>.jpg` for kept faces,
//! `aligned_trash/<frame>_<face>.jpg` for rejected ones.
//!
//! The order prefix is zero-padded (5 digits, more for bigger facesets) so file browsers and
//! the trainer list faces in the new order; the rest of the name is the one extraction gave,
//! so a person still sees which frame a face is from, and `origname` (no prefix) restores it.

use std::collections::HashSet;
use std::path::Path;

use super::method::Method;
use super::rank::Ranking;
use crate::faceset::Faceset;
use crate::faceset::journal::{Action, Batch, Move, new_id};

/// Where each face ends up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The face (index into the faceset).
    pub face: usize,
    /// Its path after the sort, relative to the side folder.
    pub to: String,
    /// Why it is rejected (`None` for kept faces).
    pub reason: Option<String>,
}

/// The placements of every ranked face (kept in order, then rejected) and the batch of moves
/// that realises them (faces already in place do not move).
pub fn plan(
    set: &Faceset,
    ranking: &Ranking,
    method: Method,
    trash_names: &HashSet<String>,
) -> (Vec<Placement>, Batch) {
    let ranked: HashSet<usize> =
        ranking.order.iter().chain(ranking.trash.iter().map(|t| &t.0)).copied().collect();
    // Names the batch must not take: files of the folder that stay where they are.
    let mut taken: HashSet<String> = (0..set.faces.len())
        .filter(|i| !ranked.contains(i))
        .map(|i| format!("aligned/{}", set.faces[i].name))
        .collect();
    let skipped_names = set.skipped.iter().filter_map(|s| s.path.file_name()?.to_str());
    taken.extend(skipped_names.map(|name| format!("aligned/{name}")));
    taken.extend(trash_names.iter().map(|n| format!("aligned_trash/{n}")));

    let width = digits(ranking.order.len().saturating_sub(1)).max(5);
    let origname = method == Method::Origname;
    let mut placements = Vec::with_capacity(ranked.len());
    for (rank, &i) in ranking.order.iter().enumerate() {
        let face = &set.faces[i];
        let name = match (ranking.rename, origname) {
            (false, _) => face.name.clone(),
            (true, true) => face.base_name(),
            (true, false) => format!("{rank:0width$}_{}", face.base_name()),
        };
        let to = unique(&mut taken, "aligned", &name);
        placements.push(Placement { face: i, to, reason: None });
    }
    for (i, reason) in &ranking.trash {
        let to = unique(&mut taken, "aligned_trash", &set.faces[*i].base_name());
        placements.push(Placement { face: *i, to, reason: Some(reason.clone()) });
    }
    let moves = placements
        .iter()
        .map(|p| Move {
            from: format!("aligned/{}", set.faces[p.face].name),
            to: p.to.clone(),
            reason: p.reason.clone(),
        })
        .filter(|m| m.from != m.to)
        .collect();
    let batch = Batch { id: new_id(), action: Action::Sort { method: method.name() }, moves };
    (placements, batch)
}

/// `dir/name`, or `dir/<stem>~2.<ext>`, `~3`… when taken; marks the result taken.
fn unique(taken: &mut HashSet<String>, dir: &str, name: &str) -> String {
    let path = Path::new(name);
    let stem = path.file_stem().map_or_else(String::new, |s| s.to_string_lossy().into_owned());
    let ext = path.extension().map(|e| format!(".{}", e.to_string_lossy())).unwrap_or_default();
    let mut candidate = format!("{dir}/{name}");
    let mut k = 2;
    while !taken.insert(candidate.clone()) {
        candidate = format!("{dir}/{stem}~{k}{ext}");
        k += 1;
    }
    candidate
}

fn digits(n: usize) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_made_unique_with_a_counter() {
        let mut taken = HashSet::from(["aligned/a.jpg".to_owned()]);
        assert_eq!(unique(&mut taken, "aligned", "a.jpg"), "aligned/a~2.jpg");
        assert_eq!(unique(&mut taken, "aligned", "a.jpg"), "aligned/a~3.jpg");
        assert_eq!(unique(&mut taken, "aligned_trash", "a.jpg"), "aligned_trash/a.jpg");
    }

    #[test]
    fn the_prefix_has_at_least_five_digits() {
        assert_eq!(digits(0), 1);
        assert_eq!(digits(99_999), 5);
        assert_eq!(digits(100_000), 6);
    }
}
