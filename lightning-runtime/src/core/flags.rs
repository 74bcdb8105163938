//! The values of the trainer's flags that the loops read as well as the builder: how many batches
//! a loop runs, and when validation runs inside an epoch.

use crate::Error;
use std::time::Duration;

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
/// every N training batches, or every so much wall-clock time of training (`"DD:HH:MM:SS"`, a
/// [`Duration`] or a [`TimeSpan`], Lightning 2.6's time-based validation: the clock starts with
/// the fit and restarts after each validation, which runs at the first batch end past it).
#[derive(Clone, PartialEq, Debug)]
pub enum ValCheckInterval {
    Fraction(f64),
    Batches(usize),
    Time(MaxTime),
    #[doc(hidden)]
    Negative(i64),
}

impl From<Duration> for ValCheckInterval {
    fn from(duration: Duration) -> Self {
        ValCheckInterval::Time(MaxTime::Duration(duration))
    }
}

impl From<&str> for ValCheckInterval {
    fn from(text: &str) -> Self {
        ValCheckInterval::Time(MaxTime::from(text))
    }
}

impl From<TimeSpan> for ValCheckInterval {
    fn from(span: TimeSpan) -> Self {
        ValCheckInterval::Time(MaxTime::from(span))
    }
}

impl From<MaxTime> for ValCheckInterval {
    fn from(time: MaxTime) -> Self {
        ValCheckInterval::Time(time)
    }
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

/// An upper bound on epochs or optimizer steps (Lightning's `max_epochs` and `max_steps`): a
/// count, or [`Unlimited`](Self::Unlimited) (Lightning's `-1`). Built from `usize` or `i32` (`-1`
/// is unlimited; another negative number is an error of `build()`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MaxCount {
    /// At most this many.
    Count(usize),
    /// No bound (Lightning's `-1`).
    Unlimited,
    #[doc(hidden)]
    Negative(i64),
}

impl From<usize> for MaxCount {
    fn from(n: usize) -> Self {
        MaxCount::Count(n)
    }
}

impl From<i32> for MaxCount {
    fn from(n: i32) -> Self {
        match n {
            -1 => MaxCount::Unlimited,
            n => usize::try_from(n).map_or(MaxCount::Negative(n.into()), MaxCount::Count),
        }
    }
}

impl MaxCount {
    /// The bound as the loops read it (`None`: unlimited); an error naming `flag` for a negative
    /// number other than `-1`.
    pub(crate) fn validate(self, flag: &'static str) -> Result<Option<usize>, Error> {
        match self {
            MaxCount::Count(n) => Ok(Some(n)),
            MaxCount::Unlimited => Ok(None),
            MaxCount::Negative(n) => Err(Error::config(
                flag,
                format!("{n} is negative; use a count of at least 0, or -1 for no limit"),
            )),
        }
    }

    /// Lightning's YAML form: a count, or `-1`.
    pub(crate) fn to_i64(self) -> i64 {
        match self {
            MaxCount::Count(n) => n as i64,
            MaxCount::Unlimited => -1,
            MaxCount::Negative(n) => n,
        }
    }
}

/// A span of wall-clock time as Lightning takes it (`max_time`, a time-based
/// `val_check_interval`): `"DD:HH:MM:SS"`, a [`Duration`], or a [`TimeSpan`].
#[derive(Clone, Debug, PartialEq)]
pub enum MaxTime {
    Duration(Duration),
    /// `"DD:HH:MM:SS"`, checked by the trainer's builder.
    Text(String),
}

impl From<Duration> for MaxTime {
    fn from(duration: Duration) -> Self {
        MaxTime::Duration(duration)
    }
}

impl From<&str> for MaxTime {
    fn from(text: &str) -> Self {
        MaxTime::Text(text.to_string())
    }
}

impl From<String> for MaxTime {
    fn from(text: String) -> Self {
        MaxTime::Text(text)
    }
}

/// Lightning's `max_time={"days": 1, "hours": 5}`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimeSpan {
    pub days: u64,
    pub hours: u64,
    pub minutes: u64,
    pub seconds: u64,
}

impl From<TimeSpan> for MaxTime {
    fn from(span: TimeSpan) -> Self {
        let seconds = ((span.days * 24 + span.hours) * 60 + span.minutes) * 60 + span.seconds;
        MaxTime::Duration(Duration::from_secs(seconds))
    }
}

impl MaxTime {
    /// The duration, or an error naming `max_time` that says what to write.
    pub(crate) fn duration(&self) -> Result<Duration, Error> {
        self.duration_of("max_time")
    }

    /// The duration, or an error naming `flag` that says what to write.
    pub(crate) fn duration_of(&self, flag: &'static str) -> Result<Duration, Error> {
        match self {
            MaxTime::Duration(duration) => Ok(*duration),
            MaxTime::Text(text) => parse_dhms(text).ok_or_else(|| {
                Error::config(
                    flag,
                    format!(
                        "`{text}` is not \"DD:HH:MM:SS\" (days, hours, minutes and seconds, like \"00:12:00:00\"); \
                         or give a `Duration` or a `TimeSpan`"
                    ),
                )
            }),
        }
    }
}

/// `"DD:HH:MM:SS"`, as Lightning splits it: four whole numbers.
fn parse_dhms(text: &str) -> Option<Duration> {
    let parts: Vec<u64> = text
        .trim()
        .split(':')
        .map(|p| p.trim().parse::<u64>())
        .collect::<Result<_, _>>()
        .ok()?;
    let [days, hours, minutes, seconds] = parts[..] else {
        return None;
    };
    let span = TimeSpan {
        days,
        hours,
        minutes,
        seconds,
    };
    match MaxTime::from(span) {
        MaxTime::Duration(d) => Some(d),
        MaxTime::Text(_) => None,
    }
}
