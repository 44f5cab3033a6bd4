//! A tiny deterministic PRNG (SplitMix64) and one independent stream per fault source.

/// SplitMix64: 64 bits of state, passes BigCrush, identical on every target.
#[derive(Debug, Clone)]
pub struct SimRng {
    state: u64,
}

impl SimRng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        SimRng { state: seed }
    }

    /// An independent stream derived from `seed` and a stream label (turmoil: one RNG per
    /// fault source, so adding draws to one source does not shift the others).
    pub fn stream(seed: u64, label: &str) -> Self {
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for b in label.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        let mut rng = SimRng::new(seed ^ h);
        rng.next_u64();
        rng
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `per_mille / 1000`.
    pub fn chance(&mut self, per_mille: u64) -> bool {
        per_mille > 0 && self.below(1000) < per_mille
    }

    /// A uniformly chosen element.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

#[test]
fn streams_are_deterministic_and_distinct() {
    let a: Vec<u64> = (0..4).map(|_| SimRng::stream(7, "faults").next_u64()).collect();
    assert!(a.windows(2).all(|w| w[0] == w[1]), "same seed and label, same numbers");
    assert_ne!(SimRng::stream(7, "faults").next_u64(), SimRng::stream(7, "latency").next_u64());
    let mut rng = SimRng::new(1);
    let mut seen = [0u32; 4];
    for _ in 0..4000 {
        seen[rng.below(4) as usize] += 1;
    }
    assert!(seen.iter().all(|&n| (800..1200).contains(&n)), "roughly uniform: {seen:?}");
}
