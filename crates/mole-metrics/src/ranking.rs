//! Ranking helpers shared by Spearman and AUROC.

/// Returns the 1-based ranks of `values`, giving tied values the average of
/// the ranks they span (the "fractional" ranking used by
/// `scipy.stats.rankdata(method="average")`).
///
/// `values` must not contain `NaN` (callers filter them first); infinities
/// are ranked normally.
pub(crate) fn average_ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));

    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        // `total_cmp` puts -0.0 right before +0.0, so grouping adjacent
        // elements with `==` still merges them into one tie group.
        let mut end = start + 1;
        while end < order.len() && values[order[end]] == values[order[start]] {
            end += 1;
        }
        // Positions start..end hold 1-based ranks start+1 ..= end; their mean
        // is (start + 1 + end) / 2.
        let rank = (start + 1 + end) as f64 / 2.0;
        for &idx in &order[start..end] {
            ranks[idx] = rank;
        }
        start = end;
    }
    ranks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_without_ties() {
        assert_eq!(average_ranks(&[3.0, 1.0, 2.0]), vec![3.0, 1.0, 2.0]);
    }

    #[test]
    fn ranks_with_ties() {
        // Sorted: 1, 2, 2, 2, 5 -> the three 2s share ranks 2, 3, 4 -> 3.
        assert_eq!(
            average_ranks(&[2.0, 5.0, 2.0, 1.0, 2.0]),
            vec![3.0, 5.0, 3.0, 1.0, 3.0]
        );
    }

    #[test]
    fn signed_zeros_tie() {
        assert_eq!(average_ranks(&[0.0, -0.0, 1.0]), vec![1.5, 1.5, 3.0]);
    }

    #[test]
    fn empty() {
        assert!(average_ranks(&[]).is_empty());
    }
}
