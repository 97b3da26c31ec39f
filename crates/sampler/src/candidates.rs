//! The candidate list every stage works on: one entry per token still in the running, with its
//! logit and (once computed) its probability. Storage is allocated once, sized to the
//! vocabulary; stages shrink the live prefix and never allocate.

use crate::detmath;

/// A token still in the running.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// Token id.
    pub id: u32,
    /// Its logit after the stages so far.
    pub logit: f32,
    /// Its probability among the live candidates, valid after a stage that computes a softmax
    /// (top-p, typical, the final draw); 0 before.
    pub p: f32,
}

/// What is known about the order of the live candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Order {
    /// `data[i].id == i` for every live `i`: fresh from [`Candidates::load`], so a token's
    /// entry can be found by indexing.
    Identity,
    /// Sorted by [`desc_key`]: logit descending, ties by id ascending.
    Sorted,
    /// Some other (still deterministic) order.
    Unordered,
}

/// A candidate plus a score to sort by (typical sampling).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scored {
    pub score: f32,
    pub c: Candidate,
}

/// The live candidates and the buffers the stages need, allocated once.
#[derive(Debug, Clone)]
pub struct Candidates {
    /// `[capacity]`; `data[..len]` are live.
    pub(crate) data: Vec<Candidate>,
    pub(crate) len: usize,
    pub(crate) order: Order,
    /// `[capacity]` scratch for stages that reorder by something other than the logit.
    pub(crate) scratch: Vec<Scored>,
    /// `[capacity]` contiguous exponentials for the softmax.
    exps: Vec<f32>,
}

/// Sort key giving logit descending, then id ascending: a total order on sanitized candidates,
/// so every sort and selection has exactly one correct answer whatever the algorithm. `-0.0`
/// and `+0.0` count as equal, as float comparison has them.
#[inline]
pub(crate) fn desc_key(c: &Candidate) -> u64 {
    // Adding +0 turns -0 into +0 and changes nothing else.
    let b = (c.logit + 0.0).to_bits();
    // Map the float's bits to an unsigned integer with the same order...
    let asc = if b & 0x8000_0000 != 0 { !b } else { b | 0x8000_0000 };
    // ...then reverse it so that larger logits come first.
    (u64::from(!asc) << 32) | u64::from(c.id)
}

impl Candidates {
    /// Empty candidates with room for `n_vocab` tokens.
    pub fn with_capacity(n_vocab: usize) -> Self {
        let zero = Candidate { id: 0, logit: 0.0, p: 0.0 };
        Self {
            data: vec![zero; n_vocab],
            len: 0,
            order: Order::Identity,
            scratch: vec![Scored { score: 0.0, c: zero }; n_vocab],
            exps: vec![0.0; n_vocab],
        }
    }

    /// Candidates for one row of logits (allocates; a [`crate::Sampler`] reuses one instead).
    pub fn from_logits(logits: &[f32]) -> Self {
        let mut c = Self::with_capacity(logits.len());
        c.load(logits);
        c
    }

    /// Makes every token a candidate again, token `i` with logit `logits[i]`. Grows the
    /// buffers (the only allocation here) when `logits` is longer than any row seen before.
    /// Token ids are `u32`: a longer row is truncated to `u32::MAX` entries.
    pub fn load(&mut self, logits: &[f32]) {
        let logits = self.fit(logits);
        for ((i, c), &l) in self.data.iter_mut().enumerate().zip(logits) {
            *c = Candidate { id: i as u32, logit: l, p: 0.0 };
        }
        self.len = logits.len();
        self.order = Order::Identity;
    }

    /// [`Self::load`] and [`Self::sanitize`] in one pass: only tokens that can be sampled
    /// become candidates, in vocabulary order.
    pub fn load_sanitized(&mut self, logits: &[f32]) {
        let logits = self.fit(logits);
        let mut kept = 0;
        for (i, &l) in logits.iter().enumerate() {
            // Branch-free: `kept <= i`, so the slot is free. NaN fails the test.
            self.data[kept] = Candidate { id: i as u32, logit: l.min(f32::MAX), p: 0.0 };
            kept += usize::from(l > f32::NEG_INFINITY);
        }
        self.order = if kept == logits.len() { Order::Identity } else { Order::Unordered };
        self.len = kept;
    }

    /// [`Self::load_sanitized`] then [`crate::stages::top_k`], in one pass over `logits` that
    /// only copies tokens that may be among the `k` best: the `k` best tokens that can be
    /// sampled, sorted. `k == 0` keeps every token. This is the first step of the default
    /// chain, and reading a contiguous row once is most of its cost.
    pub fn load_top_k(&mut self, logits: &[f32], k: usize) {
        if k == 0 || k >= logits.len() {
            self.load_sanitized(logits);
            if k > 0 && k < self.len {
                self.keep_top(k);
            }
            return;
        }
        let logits = self.fit(logits);
        let cap = 2 * k;
        let mut m = 0;
        // `-f32::MAX` turns away NaN and -inf; later the bar is the worst of the k kept, and
        // `>=` lets ties through for the selection to settle by id.
        let mut bar = -f32::MAX;
        const CHUNK: usize = 16;
        for (ci, chunk) in logits.chunks(CHUNK).enumerate() {
            // Once the bar is up, most chunks hold nothing that clears it: one vector
            // comparison skips them.
            if !chunk.iter().fold(false, |any, &l| any | (l >= bar)) {
                continue;
            }
            for (j, &l) in chunk.iter().enumerate() {
                if l >= bar {
                    let id = (ci * CHUNK + j) as u32;
                    self.data[m] = Candidate { id, logit: l.min(f32::MAX), p: 0.0 };
                    m += 1;
                    if m == cap {
                        self.data[..m].select_nth_unstable_by_key(k - 1, desc_key);
                        m = k;
                        bar = self.data[k - 1].logit;
                    }
                }
            }
        }
        self.len = m;
        self.order = Order::Unordered;
        if m > 0 {
            self.keep_top(k.min(m));
        }
    }

    /// Makes room for `logits` (growing the buffers, the only allocation here, when it is
    /// longer than any row seen before) and cuts it to the ids a `u32` can name.
    fn fit<'a>(&mut self, logits: &'a [f32]) -> &'a [f32] {
        let logits = &logits[..logits.len().min(u32::MAX as usize)];
        if logits.len() > self.data.len() {
            *self = Self::with_capacity(logits.len());
        }
        logits
    }

    /// Leaves one candidate, `id` with `logit`, with probability 1.
    pub(crate) fn set_single(&mut self, id: u32, logit: f32) {
        if self.data.is_empty() {
            *self = Self::with_capacity(1);
        }
        self.data[0] = Candidate { id, logit, p: 1.0 };
        self.len = 1;
        self.order = Order::Sorted;
    }

    /// The live candidates.
    pub fn as_slice(&self) -> &[Candidate] {
        &self.data[..self.len]
    }

    /// Number of live candidates.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no candidate is left.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the live candidates are sorted by logit, highest first (ties: lower id first).
    pub fn is_sorted(&self) -> bool {
        self.order == Order::Sorted
    }

    /// Drops candidates that can never be sampled (logit NaN or `-inf`) and clamps `+inf` to
    /// `f32::MAX`, keeping the order. Every later stage assumes this has run: it is what makes
    /// all logits finite and comparisons total. A `+inf` logit (say from a `+inf` logit bias)
    /// thus means "as likely as the likeliest", not a NaN in the softmax.
    pub fn sanitize(&mut self) {
        // Usually every logit is finite: one branch-free pass proves it.
        let live = &self.data[..self.len];
        if live.iter().fold(true, |ok, c| ok & c.logit.is_finite()) {
            return;
        }
        let mut kept = 0;
        for i in 0..self.len {
            let mut c = self.data[i];
            // NaN fails this test (and must be tested before `min`, which would drop it).
            let keep = c.logit > f32::NEG_INFINITY;
            c.logit = c.logit.min(f32::MAX);
            // Branch-free: `kept <= i`, so the slot written has been read.
            self.data[kept] = c;
            kept += usize::from(keep);
        }
        if kept != self.len && self.order == Order::Identity {
            self.order = Order::Unordered;
        }
        self.len = kept;
    }

    /// Keeps the first `n` live candidates.
    pub(crate) fn truncate(&mut self, n: usize) {
        if n < self.len {
            self.len = n;
            if self.order == Order::Identity {
                self.order = Order::Unordered;
            }
        }
    }

    /// The live candidates, for stages that keep their order.
    pub(crate) fn live_mut(&mut self) -> &mut [Candidate] {
        &mut self.data[..self.len]
    }

    /// Sorts the live candidates by logit, highest first (ties: lower id first), unless they
    /// already are.
    pub fn sort(&mut self) {
        if self.order != Order::Sorted {
            self.data[..self.len].sort_unstable_by_key(desc_key);
            self.order = Order::Sorted;
        }
    }

    /// Keeps the `k` best candidates (`1 <= k <= len`), sorted; only those `k` are sorted.
    pub(crate) fn keep_top(&mut self, k: usize) {
        debug_assert!(k >= 1 && k <= self.len);
        if self.order != Order::Sorted {
            let n = self.len;
            let live = &mut self.data[..n];
            if k < n {
                let pool = if k <= n / 8 { Self::stream_top(live, k) } else { n };
                live[..pool].select_nth_unstable_by_key(k - 1, desc_key);
            }
            live[..k].sort_unstable_by_key(desc_key);
            self.order = Order::Sorted;
        }
        self.len = k;
    }

    /// One pass that moves to the front every candidate that may be among the `k` best, and
    /// returns how many it moved (the `k` best of those are the `k` best of `live`). A pool of up to `2k`
    /// is kept at the front; when it fills, a selection cuts it back to `k` and raises the bar
    /// to the worst of those. Costs O(n) with one float comparison per candidate, against
    /// several for a selection over all of `live`.
    fn stream_top(live: &mut [Candidate], k: usize) -> usize {
        let cap = 2 * k;
        let mut m = 0;
        // Anything below the bar cannot displace the k kept; `>=` lets ties through and the
        // selection settles them by id.
        let mut bar = f32::NEG_INFINITY;
        for i in 0..live.len() {
            let c = live[i];
            if c.logit >= bar {
                live[m] = c;
                m += 1;
                if m == cap {
                    live[..m].select_nth_unstable_by_key(k - 1, desc_key);
                    m = k;
                    bar = live[k - 1].logit;
                }
            }
        }
        m
    }

    /// Index of the best live candidate (highest logit, ties: lowest id); `None` if empty.
    pub(crate) fn best(&self) -> Option<usize> {
        if self.len == 0 {
            return None;
        }
        if self.order == Order::Sorted {
            return Some(0);
        }
        let live = &self.data[..self.len];
        let max = self.max_logit();
        let mut best = 0;
        let mut best_id = None;
        for (i, c) in live.iter().enumerate() {
            if c.logit == max && best_id.is_none_or(|id| c.id < id) {
                best = i;
                best_id = Some(c.id);
            }
        }
        Some(best)
    }

    /// Highest live logit (`-inf` when empty).
    pub(crate) fn max_logit(&self) -> f32 {
        if self.order == Order::Sorted && self.len > 0 {
            return self.data[0].logit;
        }
        self.data[..self.len].iter().fold(f32::NEG_INFINITY, |m, c| m.max(c.logit))
    }

    /// Sets `p` to `e^(logit - max)` for every live candidate and returns `(max, sum of p)`
    /// without normalising. Deterministic: [`detmath::exp`] and a fixed summation order (eight
    /// interleaved partial sums in `f64`). The sum is >= 1 on sanitized candidates, since the
    /// best one contributes exactly 1.
    pub(crate) fn exp_shifted(&mut self) -> (f32, f64) {
        let max = self.max_logit();
        let live = &mut self.data[..self.len];
        // Through a contiguous buffer: `exp` over a plain `f32` slice runs on vector
        // registers, over a strided field it does not.
        let x = &mut self.exps[..live.len()];
        for (x, c) in x.iter_mut().zip(live.iter()) {
            *x = c.logit - max;
        }
        for x in x.iter_mut() {
            *x = detmath::exp(*x);
        }
        for (c, &x) in live.iter_mut().zip(x.iter()) {
            c.p = x;
        }
        let mut lanes = [0f64; 8];
        let mut chunks = x.chunks_exact(8);
        for chunk in &mut chunks {
            for (lane, &x) in lanes.iter_mut().zip(chunk) {
                *lane += f64::from(x);
            }
        }
        let mut sum = ((lanes[0] + lanes[4]) + (lanes[2] + lanes[6])) + ((lanes[1] + lanes[5]) + (lanes[3] + lanes[7]));
        for &x in chunks.remainder() {
            sum += f64::from(x);
        }
        (max, sum)
    }

    /// Scales the `p` fields so that they sum to one, given their current sum.
    pub(crate) fn normalize(&mut self, sum: f64) {
        let inv = (1.0 / sum) as f32;
        for c in &mut self.data[..self.len] {
            c.p *= inv;
        }
    }

    /// Softmax of the live logits into `p` (max subtracted first); returns `(max, unnormalised
    /// sum)`, from which `ln p_i = (logit_i - max) - ln(sum)`.
    pub(crate) fn softmax(&mut self) -> (f32, f64) {
        let (max, sum) = self.exp_shifted();
        self.normalize(sum);
        (max, sum)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(c: &Candidates) -> Vec<u32> {
        c.as_slice().iter().map(|c| c.id).collect()
    }

    #[test]
    fn load_gives_identity_order() {
        let c = Candidates::from_logits(&[0.5, -1.0, 2.0]);
        assert_eq!(ids(&c), [0, 1, 2]);
        assert_eq!(c.order, Order::Identity);
        assert_eq!(c.as_slice()[2].logit, 2.0);
    }

    #[test]
    fn load_grows_and_shrinks() {
        let mut c = Candidates::with_capacity(2);
        c.load(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(c.len(), 4);
        c.load(&[1.0]);
        assert_eq!(c.len(), 1);
        assert!(c.data.len() >= 4);
    }

    #[test]
    fn sanitize_drops_nan_and_neg_inf_and_clamps_pos_inf() {
        let mut c = Candidates::from_logits(&[f32::NAN, 1.0, f32::NEG_INFINITY, f32::INFINITY, -3.0]);
        c.sanitize();
        assert_eq!(ids(&c), [1, 3, 4]);
        assert_eq!(c.as_slice()[1].logit, f32::MAX);
        assert_eq!(c.order, Order::Unordered);
        let mut all_fine = Candidates::from_logits(&[1.0, 2.0]);
        all_fine.sanitize();
        assert_eq!(all_fine.order, Order::Identity);
    }

    #[test]
    fn key_orders_by_logit_then_id() {
        let mut c = Candidates::from_logits(&[1.0, 3.0, -2.0, 3.0, 0.0, -0.5, -2.0]);
        c.sort();
        assert_eq!(ids(&c), [1, 3, 0, 4, 5, 2, 6]);
        let k = |l: f32| desc_key(&Candidate { id: 0, logit: l, p: 0.0 });
        assert!(k(f32::MAX) < k(1.0) && k(1.0) < k(0.0) && k(0.0) < k(-1.0) && k(-1.0) < k(-f32::MAX));
    }

    #[test]
    fn keep_top_selects_and_sorts_only_k() {
        let logits: Vec<f32> = (0..1000).map(|i| ((i * 7919) % 1000) as f32).collect();
        let mut c = Candidates::from_logits(&logits);
        c.keep_top(3);
        let got: Vec<f32> = c.as_slice().iter().map(|c| c.logit).collect();
        assert_eq!(got, [999.0, 998.0, 997.0]);
        assert!(c.is_sorted());
    }

    #[test]
    fn fused_loaders_match_the_stages() {
        let mut rng = crate::Xoshiro256StarStar::seed_from_u64(3);
        let specials = [f32::NAN, f32::NEG_INFINITY, f32::INFINITY, -0.0, 0.0, f32::MAX, -f32::MAX];
        for n in [1, 2, 7, 100, 5000] {
            let logits: Vec<f32> = (0..n)
                .map(|_| {
                    let u = rng.next_f64();
                    if u < 0.1 {
                        specials[(rng.next_u64() % specials.len() as u64) as usize]
                    } else {
                        ((u * 8.0).floor() - 4.0) as f32 // many ties
                    }
                })
                .collect();
            let mut want = Candidates::from_logits(&logits);
            want.sanitize();
            let mut got = Candidates::with_capacity(0);
            got.load_sanitized(&logits);
            assert_eq!(got.as_slice(), want.as_slice());
            for k in [0, 1, 2, 3, 40, n - 1, n, n + 1] {
                let mut want = Candidates::from_logits(&logits);
                want.sanitize();
                crate::stages::top_k(&mut want, k);
                want.sort();
                let mut got = Candidates::with_capacity(n);
                got.load_top_k(&logits, k);
                got.sort();
                assert_eq!(got.as_slice(), want.as_slice(), "n {n} k {k}");
            }
        }
        let mut none = Candidates::with_capacity(3);
        none.load_top_k(&[f32::NAN, f32::NEG_INFINITY, f32::NAN], 1);
        assert!(none.is_empty());
    }

    #[test]
    fn best_breaks_ties_by_lowest_id() {
        let c = Candidates::from_logits(&[1.0, 5.0, 5.0, 2.0]);
        assert_eq!(c.best(), Some(1));
        assert_eq!(Candidates::from_logits(&[]).best(), None);
    }

    #[test]
    fn softmax_sums_to_one_and_is_stable_for_huge_logits() {
        let mut c = Candidates::from_logits(&[1000.0, 1000.0, 999.0, -f32::MAX, f32::MAX]);
        let (max, sum) = c.softmax();
        assert_eq!(max, f32::MAX);
        assert_eq!(sum, 1.0);
        let p: Vec<f32> = c.as_slice().iter().map(|c| c.p).collect();
        assert_eq!(p, [0.0, 0.0, 0.0, 0.0, 1.0]);

        let mut c = Candidates::from_logits(&[0.0, 0.0, 0.0, 0.0]);
        c.softmax();
        assert!(c.as_slice().iter().all(|c| c.p == 0.25));

        let mut c = Candidates::from_logits(&[2.0f32.ln(), 0.0, 1.0f32.ln()]);
        c.softmax();
        let p: Vec<f32> = c.as_slice().iter().map(|c| c.p).collect();
        assert!((p[0] - 0.5).abs() < 1e-6 && (p[1] - 0.25).abs() < 1e-6 && (p[2] - 0.25).abs() < 1e-6);
    }

    #[test]
    fn sum_over_many_candidates_uses_all_lanes() {
        let logits = vec![0.0f32; 50_257];
        let mut c = Candidates::from_logits(&logits);
        let (_, sum) = c.exp_shifted();
        assert_eq!(sum, 50_257.0);
    }
}
