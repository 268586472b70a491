//! The instruction sets gramfit's kernels may use: detected once, capped
//! by `GRAMFIT_ISA`, and handed to kernels as tokens.
//!
//! Levels, each a superset of the one before:
//!
//! | level | features | what runs |
//! |---|---|---|
//! | `portable` | none beyond the target's baseline | the reference kernels: plain Rust, eight `f64` lanes |
//! | `avx2` | AVX2, FMA, POPCNT, BMI1/2 | the compensated loop compiled for AVX2 + FMA |
//! | `avx512` | + AVX-512 F, DQ, BW, VL | the in-place fast path (first and second pass) |
//! | `avx512vbmi` | + AVX-512 VBMI, GFNI | + Parquet index unpacking by byte permutation, flag transposes by GFNI |
//!
//! AVX-512 without VBMI/GFNI (Skylake-X servers) is a path of its own:
//! the fast path runs, the two byte-permutation kernels take their
//! portable loops. `GRAMFIT_ISA=portable|avx2|avx512|avx512vbmi` caps the
//! level (as NumPy's `NPY_DISABLE_CPU_FEATURES` and simdutf's
//! `SIMDUTF_FORCE_IMPLEMENTATION` do): asking for a level the CPU lacks,
//! or for an unknown one, is an error, never a silent fallback. `gramfit
//! --version` says which level runs.
//!
//! A kernel compiled with `#[target_feature]` is called only through a
//! token ([`Avx2`], [`Avx512`], [`Avx512Vbmi`]): a value that exists only
//! when the active level has every feature the kernel enables.

use std::sync::OnceLock;

/// An instruction-set level (ordered: each includes the ones before).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Portable,
    Avx2,
    Avx512,
    Avx512Vbmi,
}

impl Level {
    pub const ALL: [Level; 4] = [Level::Portable, Level::Avx2, Level::Avx512, Level::Avx512Vbmi];

    pub fn name(self) -> &'static str {
        match self {
            Level::Portable => "portable",
            Level::Avx2 => "avx2",
            Level::Avx512 => "avx512",
            Level::Avx512Vbmi => "avx512vbmi",
        }
    }

    pub fn parse(s: &str) -> Option<Level> {
        Level::ALL.into_iter().find(|l| l.name() == s.trim().to_ascii_lowercase())
    }

    /// What the CPU supports (all its features, checked once).
    pub fn detected() -> Level {
        static DETECTED: OnceLock<Level> = OnceLock::new();
        *DETECTED.get_or_init(detect)
    }
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(gramfit_x86)]
fn detect() -> Level {
    use std::arch::is_x86_feature_detected as has;
    let avx2 = has!("avx2") && has!("fma") && has!("popcnt") && has!("bmi1") && has!("bmi2");
    let avx512 = avx2 && has!("avx512f") && has!("avx512dq") && has!("avx512bw") && has!("avx512vl");
    let vbmi = avx512 && has!("avx512vbmi") && has!("gfni");
    match (avx2, avx512, vbmi) {
        (_, _, true) => Level::Avx512Vbmi,
        (_, true, _) => Level::Avx512,
        (true, _, _) => Level::Avx2,
        _ => Level::Portable,
    }
}

#[cfg(not(gramfit_x86))]
fn detect() -> Level {
    Level::Portable
}

/// The level in force: the CPU's, capped by `GRAMFIT_ISA`; or why the cap
/// cannot be honoured.
fn resolve() -> Result<Level, String> {
    let cpu = Level::detected();
    match std::env::var("GRAMFIT_ISA") {
        Err(_) => Ok(cpu),
        Ok(v) if v.is_empty() || v.eq_ignore_ascii_case("native") => Ok(cpu),
        Ok(v) => {
            let Some(want) = Level::parse(&v) else {
                let names: Vec<&str> = Level::ALL.iter().map(|l| l.name()).collect();
                return Err(format!("GRAMFIT_ISA={v} is not a level ({}, or native)", names.join(", ")));
            };
            if want > cpu {
                return Err(format!("GRAMFIT_ISA={v}, but this CPU supports up to {cpu}"));
            }
            Ok(want)
        }
    }
}

fn resolved() -> &'static Result<Level, String> {
    static ACTIVE: OnceLock<Result<Level, String>> = OnceLock::new();
    ACTIVE.get_or_init(resolve)
}

/// The level the kernels use. (An invalid `GRAMFIT_ISA` is reported by
/// [`check`] at start-up; should it be asked for anyway, the portable
/// kernels run.)
pub fn active() -> Level {
    *resolved().as_ref().unwrap_or(&Level::Portable)
}

/// An invalid `GRAMFIT_ISA`, for the command line to refuse.
pub fn check() -> Result<Level, String> {
    resolved().clone()
}

/// One line for `--version`: the level in force and the CPU's.
pub fn describe() -> String {
    let cpu = Level::detected();
    match check() {
        Ok(l) if l == cpu => format!("kernels: {l} (the CPU's best)"),
        Ok(l) => format!("kernels: {l} (GRAMFIT_ISA; the CPU supports {cpu})"),
        Err(e) => format!("kernels: none ({e})"),
    }
}

macro_rules! token {
    ($(#[$doc:meta])* $name:ident, $level:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug)]
        pub struct $name(());

        impl $name {
            /// The token, when the active level includes this one.
            #[inline]
            pub fn get() -> Option<$name> {
                (active() >= $level).then_some($name(()))
            }

            /// The token for a level at or below the CPU's, whatever the
            /// cap (tests loop over every level the machine has).
            #[inline]
            pub fn for_level(level: Level) -> Option<$name> {
                (level >= $level && Level::detected() >= $level).then_some($name(()))
            }
        }
    };
}

token!(
    /// Proof that AVX2, FMA, POPCNT, BMI1 and BMI2 may be used.
    Avx2,
    Level::Avx2
);
token!(
    /// Proof that AVX-512 F, DQ, BW and VL (and everything [`Avx2`] proves)
    /// may be used.
    Avx512,
    Level::Avx512
);
token!(
    /// Proof that AVX-512 VBMI and GFNI (and everything [`Avx512`] proves)
    /// may be used.
    Avx512Vbmi,
    Level::Avx512Vbmi
);

impl Avx512Vbmi {
    pub fn avx512(self) -> Avx512 {
        Avx512(())
    }
}

impl Avx512 {
    pub fn avx2(self) -> Avx2 {
        Avx2(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_ordered_and_named() {
        for l in Level::ALL {
            assert_eq!(Level::parse(l.name()), Some(l));
        }
        assert!(Level::Portable < Level::Avx2 && Level::Avx2 < Level::Avx512 && Level::Avx512 < Level::Avx512Vbmi);
        assert_eq!(Level::parse("AVX2"), Some(Level::Avx2));
        assert_eq!(Level::parse("sse4"), None);
    }

    #[test]
    fn tokens_exist_only_at_or_below_the_cpu() {
        let cpu = Level::detected();
        assert!(Avx2::for_level(Level::Portable).is_none());
        assert_eq!(Avx2::for_level(Level::Avx512Vbmi).is_some(), cpu >= Level::Avx2);
        assert!(Avx512::for_level(Level::Avx2).is_none());
        assert_eq!(Avx512Vbmi::for_level(cpu).is_some(), cpu >= Level::Avx512Vbmi);
    }
}
