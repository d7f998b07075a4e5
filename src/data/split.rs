use crate::rng::Rng;
use crate::{Error, Result};

fn by_class(y: &[usize], rng: &mut Rng) -> Vec<Vec<usize>> {
    let n_classes = y.iter().copied().max().map_or(0, |m| m + 1);
    let mut groups = vec![Vec::new(); n_classes];
    for (i, &c) in y.iter().enumerate() {
        groups[c].push(i);
    }
    for g in &mut groups {
        rng.shuffle(g);
    }
    groups
}

/// Stratified holdout split: about `fraction` of each class goes to validation (at least one example
/// of every class with two or more). Returns `(train, validation)` indices.
pub fn stratified_split(y: &[usize], fraction: f32, rng: &mut Rng) -> Result<(Vec<usize>, Vec<usize>)> {
    if !(fraction > 0.0 && fraction < 1.0) {
        return Err(Error::Invalid(format!("validation fraction {fraction} must be in (0, 1)")));
    }
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for g in by_class(y, rng) {
        let n_val = if g.len() >= 2 { ((g.len() as f32 * fraction).round() as usize).clamp(1, g.len() - 1) } else { 0 };
        val.extend_from_slice(&g[..n_val]);
        train.extend_from_slice(&g[n_val..]);
    }
    if val.is_empty() {
        return Err(Error::Invalid("too few examples for a validation split".into()));
    }
    train.sort_unstable();
    val.sort_unstable();
    Ok((train, val))
}

/// Stratified k-fold: each class is dealt round-robin over the folds. Returns `k` pairs of
/// `(train, validation)` indices; every example is in exactly one validation fold.
pub fn stratified_kfold(y: &[usize], k: usize, rng: &mut Rng) -> Result<Vec<(Vec<usize>, Vec<usize>)>> {
    if k < 2 {
        return Err(Error::Invalid(format!("k-fold needs at least 2 folds, got {k}")));
    }
    if y.len() < k {
        return Err(Error::Invalid(format!("{} rows are fewer than the {k} folds asked for", y.len())));
    }
    let mut fold_of = vec![0usize; y.len()];
    let mut next = 0;
    for g in by_class(y, rng) {
        for i in g {
            fold_of[i] = next % k;
            next += 1;
        }
    }
    Ok((0..k)
        .map(|f| {
            let (val, train): (Vec<usize>, Vec<usize>) = (0..y.len()).partition(|&i| fold_of[i] == f);
            (train, val)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_stratified_and_disjoint() {
        let y: Vec<usize> = (0..100).map(|i| if i < 80 { 0 } else { 1 }).collect();
        let (tr, va) = stratified_split(&y, 0.25, &mut Rng::new(1)).unwrap();
        assert_eq!(tr.len() + va.len(), 100);
        assert_eq!(va.iter().filter(|&&i| y[i] == 1).count(), 5);
        assert_eq!(va.iter().filter(|&&i| y[i] == 0).count(), 20);
        assert!(tr.iter().all(|i| !va.contains(i)));
    }

    #[test]
    fn kfold_covers_every_row_once() {
        let y: Vec<usize> = (0..23).map(|i| i % 3).collect();
        let folds = stratified_kfold(&y, 5, &mut Rng::new(2)).unwrap();
        let mut seen = [0; 23];
        for (tr, va) in &folds {
            assert_eq!(tr.len() + va.len(), 23);
            va.iter().for_each(|&i| seen[i] += 1);
        }
        assert!(seen.iter().all(|&s| s == 1));
        assert!(stratified_kfold(&y[..3], 5, &mut Rng::new(2)).is_err());
    }
}
