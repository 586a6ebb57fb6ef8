//! A small seeded random number generator, so that every random choice the
//! harness makes (which frame a proxy drops, which collector the nemesis
//! kills, how much jitter a frame gets) replays exactly from a printed seed.
//!
//! SplitMix64 (Steele, Lea, Flood 2014): one `u64` of state, full period, good
//! enough statistics for fault injection, and no dependency. Not for secrets.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The environment variable that fixes the seed of a chaos run
/// ([`seed_from_env`]), to replay a failing run exactly.
pub const SEED_ENV: &str = "EVENTBUS_CHAOS_SEED";

/// A deterministic pseudo-random sequence from a `u64` seed.
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// The sequence of `seed`: the same seed, the same sequence.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// An independent sequence derived from this seed and `stream`, e.g. one
    /// per connection or per direction, without drawing from `self`.
    pub fn fork(&self, stream: u64) -> Self {
        let mut mixer = Self::new(self.state ^ stream.wrapping_mul(0xA24B_AED4_963E_E407));
        Self::new(mixer.next_u64())
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform float in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        // The top 53 bits fill an f64's mantissa exactly.
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p` (clamped to `[0, 1]`).
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && (p >= 1.0 || self.next_f64() < p)
    }

    /// A uniform integer in `[0, n)`; `0` when `n` is `0`.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        // Lemire's multiply-shift: no modulo bias worth caring about here.
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// A uniform duration in `[0, max]`.
    pub fn duration_up_to(&mut self, max: Duration) -> Duration {
        let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(self.below(nanos.saturating_add(1)))
    }

    /// One element of `items`, or `None` when it is empty.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        let i = self.below(items.len() as u64);
        items.get(usize::try_from(i).ok()?)
    }
}

/// The seed of a chaos run: [`SEED_ENV`] if set (a decimal `u64`), else one
/// from the clock. Panics on a malformed [`SEED_ENV`]: a replay with the wrong
/// seed would be worse than none.
pub fn seed_from_env() -> u64 {
    match std::env::var(SEED_ENV) {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{SEED_ENV}={text:?} is not a u64: {e}")),
        Err(_) => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            Rng::new(now.as_nanos() as u64 ^ u64::from(std::process::id())).next_u64()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_sequence() {
        let a: Vec<u64> = (0..5)
            .scan(Rng::new(7), |r, _| Some(r.next_u64()))
            .collect();
        let b: Vec<u64> = (0..5)
            .scan(Rng::new(7), |r, _| Some(r.next_u64()))
            .collect();
        let c: Vec<u64> = (0..5)
            .scan(Rng::new(8), |r, _| Some(r.next_u64()))
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn forks_are_independent_and_reproducible() {
        let root = Rng::new(42);
        assert_eq!(root.fork(1).next_u64(), root.fork(1).next_u64());
        assert_ne!(root.fork(1).next_u64(), root.fork(2).next_u64());
    }

    #[test]
    fn values_stay_in_range() {
        let mut rng = Rng::new(1);
        for _ in 0..10_000 {
            assert!(rng.below(3) < 3);
            let f = rng.next_f64();
            assert!((0.0..1.0).contains(&f));
            assert!(rng.duration_up_to(Duration::from_millis(5)) <= Duration::from_millis(5));
        }
        assert_eq!(rng.below(0), 0);
        assert!(!rng.chance(0.0));
        assert!(rng.chance(1.0));
        assert_eq!(rng.pick::<u8>(&[]), None);
    }

    #[test]
    fn chance_is_roughly_its_probability() {
        let mut rng = Rng::new(3);
        let hits = (0..100_000).filter(|_| rng.chance(0.25)).count();
        assert!((23_000..27_000).contains(&hits), "{hits}");
    }
}
