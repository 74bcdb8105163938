//! The values of the trainer's flags that the loops read as well as the builder: how many batches
//! a loop runs, and when validation runs inside an epoch.

use crate::Error;

/// How many batches of a loop to run (Lightning's `limit_*_batches`): all, a count, or a
/// fraction of the dataloader. Built from `usize`/`i32` (a count) or `f64` (a fraction).
#[derive(Clone, Copy, PartialEq, Debug, Default)]
pub enum Limit {
    #[default]
    All,
    /// At most this many batches; 0 turns the loop off.
    Batches(usize),
    /// This fraction of the batches, in (0, 1]; 0.0 turns the loop off, and a whole number
    /// above 1 (`10.0`) is a count, as in Lightning.
    Fraction(f64),
    #[doc(hidden)]
    Negative(i64),
}

impl From<usize> for Limit {
    fn from(n: usize) -> Self {
        Limit::Batches(n)
    }
}

impl From<i32> for Limit {
    fn from(n: i32) -> Self {
        usize::try_from(n).map_or(Limit::Negative(n.into()), Limit::Batches)
    }
}

impl From<f64> for Limit {
    fn from(f: f64) -> Self {
        Limit::Fraction(f)
    }
}

impl Limit {
    /// Lightning's reading: a fraction of 0.0 turns the loop off and a whole float above 1 is a
    /// count of batches; other fractions must be in (0, 1].
    pub(crate) fn validate(self, flag: &'static str) -> Result<Self, Error> {
        match self {
            Limit::Fraction(0.0) => Ok(Limit::Batches(0)),
            Limit::Fraction(f) if f > 1.0 && f.is_finite() && f.fract() == 0.0 => Ok(Limit::Batches(f as usize)),
            Limit::Fraction(f) if !(f > 0.0 && f <= 1.0) => Err(Error::config(
                flag,
                format!(
                    "the fraction {f} is outside [0, 1]; use a fraction in [0, 1] (0 turns the loop off), or a whole number of batches"
                ),
            )),
            Limit::Negative(n) => Err(Error::config(
                flag,
                format!(
                    "{n} batches is negative; use a number of batches, 0 to turn the loop off, or a fraction in (0, 1]"
                ),
            )),
            ok => Ok(ok),
        }
    }

    /// Whether the loop runs at all.
    pub(crate) fn is_off(self) -> bool {
        self == Limit::Batches(0)
    }
}

/// When to validate inside an epoch (Lightning's `val_check_interval`): a fraction of the epoch,
/// or every N training batches.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum ValCheckInterval {
    Fraction(f64),
    Batches(usize),
    #[doc(hidden)]
    Negative(i64),
}

impl Default for ValCheckInterval {
    fn default() -> Self {
        ValCheckInterval::Fraction(1.0)
    }
}

impl From<f64> for ValCheckInterval {
    fn from(f: f64) -> Self {
        ValCheckInterval::Fraction(f)
    }
}

impl From<usize> for ValCheckInterval {
    fn from(n: usize) -> Self {
        ValCheckInterval::Batches(n)
    }
}

impl From<i32> for ValCheckInterval {
    fn from(n: i32) -> Self {
        usize::try_from(n).map_or(ValCheckInterval::Negative(n.into()), ValCheckInterval::Batches)
    }
}
