//! Percentages for rollouts, and the stable hash that decides who is in.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use xxhash_rust::{const_xxh64, xxh64};

/// How many buckets a [`Percent`] divides keys into: one per thousandth of a
/// percent.
const BUCKETS: u64 = 100_000;

/// A share of 0 to 100 percent, with three decimals (a thousandth of a percent).
///
/// A `Percent` read from a registry field of type `Percent` knows its
/// namespace and field, so [`Percent::includes`] puts a key in the same
/// bucket on every process, every platform and every language:
///
/// ```text
/// seed   = xxh64(namespace bytes, seed 0)
/// seed   = xxh64(field key bytes, seed)
/// bucket = xxh64(key bytes, seed) mod 100000
/// includes(key) = bucket < round(percent * 1000)
/// ```
///
/// (xxh64 is XXH64 from the xxHash family, with its digest read as an
/// unsigned 64-bit integer.) Raising the percentage only ever adds keys.
///
/// In the store a `Percent` is a JSON number, e.g. `12.5`.
///
/// ```
/// use lockstep::Percent;
///
/// let p = Percent::new(12.5).unwrap();
/// assert_eq!(p.as_f64(), 12.5);
/// assert!(Percent::new(100.5).is_none());
/// assert!(Percent::new(100.0).unwrap().includes("anyone"));
/// assert!(!Percent::ZERO.includes("anyone"));
/// ```
#[derive(Copy, Clone, Debug, Default)]
pub struct Percent {
    millis: u32,
    seed: u64,
}

impl Percent {
    /// Nobody.
    pub const ZERO: Percent = Percent { millis: 0, seed: 0 };
    /// Everybody.
    pub const ALL: Percent = Percent {
        millis: BUCKETS as u32,
        seed: 0,
    };

    /// `value` percent, rounded to three decimals; `None` unless
    /// `0 <= value <= 100`.
    pub fn new(value: f64) -> Option<Percent> {
        if !(0.0..=100.0).contains(&value) {
            return None;
        }
        Some(Percent {
            millis: (value * 1000.0).round() as u32,
            seed: 0,
        })
    }

    /// `percent` whole percent; usable in `const` (and so as a field default).
    ///
    /// ```
    /// assert_eq!(lockstep::Percent::whole(25).as_f64(), 25.0);
    /// ```
    ///
    /// # Panics
    ///
    /// When `percent` is over 100 (at compile time in a `const`).
    pub const fn whole(percent: u8) -> Percent {
        assert!(percent <= 100, "a percentage is at most 100");
        Percent {
            millis: percent as u32 * 1000,
            seed: 0,
        }
    }

    /// `thousandths` thousandths of a percent (`12_500` is 12.5 %), at most
    /// `100_000`.
    pub const fn from_thousandths(thousandths: u32) -> Option<Percent> {
        if thousandths as u64 > BUCKETS {
            return None;
        }
        Some(Percent {
            millis: thousandths,
            seed: 0,
        })
    }

    /// The share in thousandths of a percent.
    pub const fn thousandths(self) -> u32 {
        self.millis
    }

    /// The share in percent.
    pub fn as_f64(self) -> f64 {
        f64::from(self.millis) / 1000.0
    }

    /// Whether `key` falls within this share of its registry field (see the
    /// type's docs for the hash). A `Percent` that was not read from a
    /// registry hashes with seed 0.
    pub fn includes(self, key: impl AsRef<[u8]>) -> bool {
        xxh64::xxh64(key.as_ref(), self.seed) % BUCKETS < u64::from(self.millis)
    }

    /// The seed of the field `key` of `namespace`, computed at compile time by
    /// `#[lockstep]`.
    #[doc(hidden)]
    pub const fn __seed(namespace: &str, key: &str) -> u64 {
        let seed = const_xxh64::xxh64(namespace.as_bytes(), 0);
        const_xxh64::xxh64(key.as_bytes(), seed)
    }

    /// This share, scoped to the field whose seed is `seed`.
    #[doc(hidden)]
    pub const fn __scoped(self, seed: u64) -> Percent {
        Percent {
            millis: self.millis,
            seed,
        }
    }
}

impl PartialEq for Percent {
    /// Two percentages are equal when their shares are, whatever their field.
    fn eq(&self, other: &Self) -> bool {
        self.millis == other.millis
    }
}

impl Eq for Percent {}

impl PartialOrd for Percent {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Percent {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.millis.cmp(&other.millis)
    }
}

impl std::fmt::Display for Percent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}%", self.as_f64())
    }
}

impl Serialize for Percent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.millis.is_multiple_of(1000) {
            serializer.serialize_u32(self.millis / 1000)
        } else {
            serializer.serialize_f64(self.as_f64())
        }
    }
}

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = f64::deserialize(deserializer)?;
        Percent::new(value).ok_or_else(|| {
            serde::de::Error::custom(format_args!(
                "{value} is not a percentage: expected a number from 0 to 100"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fixed_vectors_are_stable() {
        // These numbers are part of the contract: every process, platform and
        // language must compute the same buckets. Never change them. They were
        // cross-checked with Python's `xxhash` package:
        //   seed = xxh64_intdigest(b"foobar_percent", xxh64_intdigest(b"flags", 0))
        //   xxh64_intdigest(key, seed) % 100000
        let seed = Percent::__seed("flags", "foobar_percent");
        assert_eq!(seed, 0xa0f2_64bc_a1f3_aec6_u64, "seed {seed:#x}");
        let bucket = |key: &str| xxh64::xxh64(key.as_bytes(), seed) % BUCKETS;
        assert_eq!(bucket("user-1"), 71_345);
        assert_eq!(bucket("user-2"), 89_286);
        assert_eq!(bucket(""), 27_138);
        assert_eq!(bucket("user-42"), 50_338);
        let at = |pct: u32| Percent::from_thousandths(pct).unwrap().__scoped(seed);
        assert!(at(71_346).includes("user-1"));
        assert!(!at(71_345).includes("user-1"));
    }

    #[test]
    fn a_share_includes_about_that_share_of_keys() {
        let p = Percent::new(25.0)
            .unwrap()
            .__scoped(Percent::__seed("ns", "f"));
        let n = (0..100_000).filter(|i| p.includes(i.to_string())).count();
        assert!((24_000..26_000).contains(&n), "{n}");
    }

    #[test]
    fn serde_round_trip_and_range() {
        let p: Percent = serde_json::from_str("12.5").unwrap();
        assert_eq!(p.thousandths(), 12_500);
        assert_eq!(serde_json::to_string(&p).unwrap(), "12.5");
        assert_eq!(serde_json::to_string(&Percent::ALL).unwrap(), "100");
        let err = serde_json::from_str::<Percent>("300").unwrap_err();
        assert!(
            err.to_string().contains("expected a number from 0 to 100"),
            "{err}"
        );
        assert!(serde_json::from_str::<Percent>("-1").is_err());
        assert!(serde_json::from_str::<Percent>("\"50\"").is_err());
    }

    proptest! {
        #[test]
        fn raising_the_share_only_adds_keys(a in 0u32..=100_000, b in 0u32..=100_000, key in ".*", ns in "[a-z]{1,8}", field in "[a-z]{1,8}") {
            let seed = Percent::__seed(&ns, &field);
            let (lo, hi) = (a.min(b), a.max(b));
            let lo = Percent::from_thousandths(lo).unwrap().__scoped(seed);
            let hi = Percent::from_thousandths(hi).unwrap().__scoped(seed);
            prop_assert!(!lo.includes(&key) || hi.includes(&key));
        }

        #[test]
        fn const_and_runtime_hash_agree(ns in ".*", field in ".*") {
            let runtime = xxh64::xxh64(field.as_bytes(), xxh64::xxh64(ns.as_bytes(), 0));
            prop_assert_eq!(Percent::__seed(&ns, &field), runtime);
        }
    }
}
