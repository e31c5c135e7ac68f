//! Arena memory planning: give every activation buffer an offset so that buffers alive at
//! the same time never overlap, using as little memory as possible.
//!
//! The core is TFLite Micro's greedy-by-size first-fit: place buffers largest first, each
//! at the lowest aligned offset that fits between the buffers already placed whose
//! lifetimes overlap it. A few other placement orders are tried as well and the smallest
//! arena wins, so the result is never worse than the size-ordered greedy plan alone.

/// One buffer to place: its size and the operator steps it is alive for (inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buffer {
    pub size: usize,
    pub first_use: usize,
    pub last_use: usize,
}

impl Buffer {
    fn overlaps_in_time(&self, other: &Buffer) -> bool {
        self.first_use <= other.last_use && other.first_use <= self.last_use
    }
}

/// Offsets (same order as the buffers) and the total arena size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub offsets: Vec<usize>,
    pub arena_size: usize,
}

fn align_up(value: usize, align: usize) -> usize {
    value.div_ceil(align) * align
}

/// Places buffers in `order` with first fit.
pub fn first_fit(buffers: &[Buffer], order: &[usize], align: usize) -> Plan {
    let mut offsets = vec![0usize; buffers.len()];
    let mut placed: Vec<usize> = Vec::with_capacity(buffers.len());
    let mut arena_size = 0usize;
    for &i in order {
        let buffer = &buffers[i];
        // Occupied ranges among buffers alive at the same time, by start.
        let mut busy: Vec<(usize, usize)> = placed
            .iter()
            .filter(|&&j| buffers[j].overlaps_in_time(buffer) && buffers[j].size > 0)
            .map(|&j| (offsets[j], offsets[j] + buffers[j].size))
            .collect();
        busy.sort_unstable();
        let mut candidate = 0usize;
        for (start, end) in busy {
            if candidate + buffer.size <= start {
                break;
            }
            candidate = candidate.max(align_up(end, align));
        }
        offsets[i] = candidate;
        arena_size = arena_size.max(candidate + buffer.size);
        placed.push(i);
    }
    Plan {
        offsets,
        arena_size: align_up(arena_size, align),
    }
}

/// TFLite Micro's order: size descending (ties: earlier first use first).
pub fn greedy_by_size(buffers: &[Buffer], align: usize) -> Plan {
    let mut order: Vec<usize> = (0..buffers.len()).collect();
    order.sort_by_key(|&i| (core::cmp::Reverse(buffers[i].size), buffers[i].first_use));
    first_fit(buffers, &order, align)
}

/// The best of several first-fit orders; never larger than [`greedy_by_size`].
pub fn plan(buffers: &[Buffer], align: usize) -> Plan {
    let mut best = greedy_by_size(buffers, align);
    type OrderKey = fn(&Buffer) -> (i64, i64);
    let orders: [OrderKey; 3] = [
        // Longest-lived first: long buffers pinned low leave contiguous room above.
        |b| (-((b.last_use - b.first_use) as i64), -(b.size as i64)),
        // Area (size x lifetime) descending.
        |b| (-((b.size * (b.last_use - b.first_use + 1)) as i64), 0),
        // Execution order.
        |b| (b.first_use as i64, -(b.size as i64)),
    ];
    for key in orders {
        let mut order: Vec<usize> = (0..buffers.len()).collect();
        order.sort_by_key(|&i| key(&buffers[i]));
        let candidate = first_fit(buffers, &order, align);
        if candidate.arena_size < best.arena_size {
            best = candidate;
        }
    }
    best
}

/// No plan can be smaller than the most bytes alive at any single step.
pub fn lower_bound(buffers: &[Buffer], align: usize) -> usize {
    let last = buffers.iter().map(|b| b.last_use).max().unwrap_or(0);
    (0..=last)
        .map(|step| {
            buffers
                .iter()
                .filter(|b| b.first_use <= step && step <= b.last_use)
                .map(|b| align_up(b.size, align))
                .sum::<usize>()
        })
        .max()
        .unwrap_or(0)
}

/// Checks that no two buffers alive together overlap in memory.
pub fn is_valid(buffers: &[Buffer], plan: &Plan) -> bool {
    for (i, a) in buffers.iter().enumerate() {
        if plan.offsets[i] + a.size > plan.arena_size {
            return false;
        }
        for (j, b) in buffers.iter().enumerate().skip(i + 1) {
            if a.size == 0 || b.size == 0 || !a.overlaps_in_time(b) {
                continue;
            }
            let (ao, bo) = (plan.offsets[i], plan.offsets[j]);
            if ao < bo + b.size && bo < ao + a.size {
                return false;
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buf(size: usize, first_use: usize, last_use: usize) -> Buffer {
        Buffer {
            size,
            first_use,
            last_use,
        }
    }

    /// Deterministic xorshift so the random cases are reproducible.
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    fn permutations(n: usize) -> Vec<Vec<usize>> {
        if n == 0 {
            return vec![vec![]];
        }
        let mut out = Vec::new();
        for p in permutations(n - 1) {
            for pos in 0..=p.len() {
                let mut q = p.clone();
                q.insert(pos, n - 1);
                out.push(q);
            }
        }
        out
    }

    #[test]
    fn chain_ping_pongs_two_buffers() {
        // input -> a -> b -> c -> output, like a plain CNN.
        let buffers = [
            buf(490, 0, 0),
            buf(8000, 0, 1),
            buf(8000, 1, 2),
            buf(8000, 2, 3),
            buf(48, 3, 4),
        ];
        let plan = plan(&buffers, 16);
        assert!(is_valid(&buffers, &plan));
        assert_eq!(plan.arena_size, 16000);
        assert_eq!(plan.arena_size, lower_bound(&buffers, 16));
    }

    #[test]
    fn offsets_are_aligned() {
        let buffers = [buf(3, 0, 2), buf(5, 1, 2), buf(7, 2, 3)];
        let plan = plan(&buffers, 16);
        assert!(is_valid(&buffers, &plan));
        assert!(plan.offsets.iter().all(|o| o % 16 == 0));
    }

    #[test]
    fn matches_brute_force_optimum_on_small_cases() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut optimal = 0;
        let cases = 300;
        for _ in 0..cases {
            let n = 2 + rng.below(5) as usize;
            let buffers: Vec<Buffer> = (0..n)
                .map(|_| {
                    let first = rng.below(6) as usize;
                    let len = rng.below(4) as usize;
                    buf(16 * (1 + rng.below(8) as usize), first, first + len)
                })
                .collect();
            let ours = plan(&buffers, 16);
            assert!(is_valid(&buffers, &ours), "invalid plan for {buffers:?}");
            let bound = lower_bound(&buffers, 16);
            assert!(ours.arena_size >= bound);
            assert!(ours.arena_size <= greedy_by_size(&buffers, 16).arena_size);
            let best = permutations(n)
                .iter()
                .map(|order| first_fit(&buffers, order, 16).arena_size)
                .min()
                .unwrap();
            assert!(best >= bound);
            if ours.arena_size == best {
                optimal += 1;
            }
        }
        // Heuristics are not exact, but must hit the brute-force optimum almost always.
        assert!(optimal * 100 >= cases * 95, "optimal in {optimal}/{cases}");
    }

    #[test]
    fn empty_and_zero_sized() {
        assert_eq!(plan(&[], 16).arena_size, 0);
        let buffers = [buf(0, 0, 1), buf(32, 0, 1)];
        let p = plan(&buffers, 16);
        assert!(is_valid(&buffers, &p));
        assert_eq!(p.arena_size, 32);
    }
}
