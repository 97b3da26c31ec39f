//! Finding the shortest prefix of an order that holds a given probability mass, without
//! sorting the whole list: shared by top-p (order: logit) and typical (order: typicality).
//!
//! The candidates are binned by their distance from the head of the order (in nats) into
//! fixed-width buckets; summing bucket masses finds the bucket where the prefix ends. Every
//! candidate of an earlier bucket is kept unsorted, only the edge bucket is sorted and walked.
//! Over 50k tokens that is two passes plus a small sort, where a full sort takes milliseconds
//! (llama.cpp's `llama_token_data_array_partial_sort` buckets logits the same way).

/// Lists up to this long are simply sorted.
pub(crate) const SORT_ALL_BELOW: usize = 1024;
/// Buckets per nat of distance: within a bucket probabilities differ by at most 3%.
const BUCKETS_PER_NAT: f32 = 32.0;
/// 32 nats of buckets; anything further shares the last one.
const N_BUCKETS: usize = 1024;

/// The bucket of a candidate `distance >= 0` nats from the head of the order (`+inf` allowed):
/// `distance * 32` rounded to the nearest integer, at most 1023. Monotone, and cheap: adding
/// 2^23 leaves the rounded integer in the low mantissa bits, which avoids the range checks of
/// a saturating float-to-int `as` cast (this runs once or twice per vocabulary entry).
#[inline]
pub(crate) fn bucket(distance: f32) -> usize {
    const LAST: f32 = (N_BUCKETS - 1) as f32;
    let scaled = distance * BUCKETS_PER_NAT;
    let scaled = if scaled < LAST { scaled } else { LAST };
    ((scaled + 8_388_608.0).to_bits() & 0x007f_ffff) as usize
}

/// Whether a running mass has reached `p`: top-p stops at `>= p`, typical at `> p`. Masses
/// are summed in `f64` (llama.cpp uses `f32`), so that summing by bucket and summing in sorted
/// order agree except when `p` falls within ~1e-12 of a partial sum.
#[inline]
pub(crate) fn reached(cum: f64, p: f32, strict: bool) -> bool {
    if strict {
        cum > f64::from(p)
    } else {
        cum >= f64::from(p)
    }
}

/// Where the prefix ends: every candidate in a bucket before `bucket` is kept; the edge bucket
/// must be sorted and walked starting from `mass_before` and `count_before`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Edge {
    pub bucket: usize,
    pub mass_before: f64,
    pub count_before: usize,
}

/// The first bucket by which the mass reaches `p` and at least `min_keep` candidates are
/// covered, from `(bucket, probability)` of each candidate; `None` if no bucket does (keep
/// everything).
pub(crate) fn find_edge(
    items: impl Iterator<Item = (usize, f32)>,
    p: f32,
    min_keep: usize,
    strict: bool,
) -> Option<Edge> {
    let mut mass = [0f64; N_BUCKETS];
    let mut count = [0u32; N_BUCKETS];
    for (b, q) in items {
        mass[b] += f64::from(q);
        count[b] += 1;
    }
    let mut cum = 0f64;
    let mut before = 0usize;
    for b in 0..N_BUCKETS {
        let after = cum + mass[b];
        let n_after = before + count[b] as usize;
        if count[b] > 0 && reached(after, p, strict) && n_after >= min_keep {
            return Some(Edge { bucket: b, mass_before: cum, count_before: before });
        }
        cum = after;
        before = n_after;
    }
    None
}

/// How many of `probs` (in order) to take after `count_before` candidates of mass
/// `mass_before`: the first count at which the mass reaches `p` with at least `min_keep`
/// candidates in all; `None` if the end comes first.
pub(crate) fn walk(
    probs: impl Iterator<Item = f32>,
    mass_before: f64,
    count_before: usize,
    p: f32,
    min_keep: usize,
    strict: bool,
) -> Option<usize> {
    let mut cum = mass_before;
    for (j, q) in probs.enumerate() {
        cum += f64::from(q);
        if reached(cum, p, strict) && count_before + j + 1 >= min_keep {
            return Some(j + 1);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotone_and_saturate() {
        assert_eq!(bucket(0.0), 0);
        assert_eq!(bucket(1.0 / 32.0), 1);
        assert_eq!(bucket(1.4 / 32.0), 1);
        assert_eq!(bucket(1.6 / 32.0), 2);
        let mut last = 0;
        for i in 0..40_000 {
            let b = bucket(i as f32 * 1e-3);
            assert!(b >= last && b < N_BUCKETS);
            last = b;
        }
        assert_eq!(bucket(31.99), 1023);
        assert_eq!(bucket(1e30), N_BUCKETS - 1);
        assert_eq!(bucket(f32::INFINITY), N_BUCKETS - 1);
    }

    #[test]
    fn edge_is_the_first_bucket_reaching_p() {
        let items = [(0, 0.5f32), (3, 0.2), (3, 0.1), (9, 0.2)];
        let e = find_edge(items.into_iter(), 0.7, 0, false).unwrap();
        assert_eq!(e, Edge { bucket: 3, mass_before: 0.5, count_before: 1 });
        assert_eq!(find_edge(items.into_iter(), 0.7, 0, true).unwrap().bucket, 3);
        assert_eq!(find_edge(items.into_iter(), 0.5, 3, false).unwrap().bucket, 3);
        assert_eq!(find_edge(items.into_iter(), 0.5, 4, false).unwrap().bucket, 9);
        assert_eq!(find_edge(items.into_iter(), 0.5, 5, false), None);
        assert_eq!(find_edge(items.into_iter(), 0.5, 0, true).unwrap().bucket, 3);
    }

    #[test]
    fn walk_stops_at_p_and_min_keep() {
        assert_eq!(walk([0.25f32, 0.25, 0.25].into_iter(), 0.0, 0, 0.5, 0, false), Some(2));
        assert_eq!(walk([0.25f32, 0.25, 0.25].into_iter(), 0.0, 0, 0.5, 0, true), Some(3));
        assert_eq!(walk([0.25f32, 0.25, 0.25].into_iter(), 0.0, 0, 0.1, 3, false), Some(3));
        assert_eq!(walk([0.25f32].into_iter(), 0.0, 0, 0.9, 0, false), None);
    }
}
