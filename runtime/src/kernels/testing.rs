//! Shared test support: a deterministic generator and the macro that holds every optimized
//! kernel variant to its scalar reference.

/// SplitMix64: a tiny deterministic generator so tests need no external crate.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

// Some helpers are only used by variant tests on targets with optimized kernels.
#[allow(dead_code)]
impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn i8(&mut self) -> i8 {
        self.next_u64() as i8
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next_u64() % ((hi - lo + 1) as u64)) as i64
    }

    pub fn f32(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32)
    }

    pub fn vec_i8(&mut self, n: usize) -> std::vec::Vec<i8> {
        (0..n).map(|_| self.i8()).collect()
    }
}

/// Runs `cases` random cases; in each, `$setup` builds arguments from an [`Rng`] and every
/// `$variant` must produce the same output as `$reference`.
///
/// ```ignore
/// kernel_variants_match_reference!(fc_variants, cases = 200,
///     setup = |rng| make_case(rng),
///     reference = |case| run_ref(case),
///     variants = [run_fast]);
/// ```
#[macro_export]
macro_rules! kernel_variants_match_reference {
    ($name:ident, cases = $cases:expr, setup = $setup:expr, reference = $reference:expr, variants = [$($variant:expr),* $(,)?]) => {
        #[test]
        fn $name() {
            let mut rng = $crate::kernels::testing::Rng(0x5EED_0000 + line!() as u64);
            for case_index in 0..$cases {
                let case = ($setup)(&mut rng);
                let expected = ($reference)(&case);
                $(
                    let actual = ($variant)(&case);
                    assert_eq!(
                        actual, expected,
                        "variant `{}` differs from the reference on case {case_index}: {case:?}",
                        stringify!($variant)
                    );
                )*
            }
        }
    };
}

extern crate std;
