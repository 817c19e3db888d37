//! Reconnect schedule: exponential back-off with seeded jitter.
//!
//! A receiver that loses its gateway connection must not hammer the gateway
//! (nor, when a gateway restarts, reconnect in lockstep with every other
//! receiver), yet should come back quickly after a blip. [`Backoff`] grows the
//! delay exponentially up to a cap, randomizes it, and starts over once a
//! connection has proved stable.
//!
//! Not every failure deserves a retry: a gateway that refuses the
//! receiver's identity (401, 403) or knows no receiver endpoint at the URL
//! (404) will refuse it again, however long the wait. [`Failure`] sorts what
//! went wrong, and [`Backoff::after`] turns it into the next step: wait and
//! retry, or stop with the cause.

use std::time::{Duration, Instant};

/// Settings of a [`Backoff`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffConfig {
    /// Ceiling of the first delay. Default 1 s.
    pub first_delay: Duration,
    /// Cap of every delay. Default 300 s.
    pub max_delay: Duration,
    /// Growth of the ceiling per attempt; 1 keeps it constant. Default 2.
    pub multiplier: f64,
    /// Consecutive attempts before giving up; `None` retries forever
    /// (the default).
    pub max_attempts: Option<u32>,
    /// A connection that stayed up at least this long resets the schedule.
    /// Default 60 s.
    pub reset_after: Duration,
    /// Retry even failures that retrying cannot fix
    /// ([`Failure::Permanent`]); default `false`, which stops at once.
    pub keep_retrying: bool,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(300),
            multiplier: 2.0,
            max_attempts: None,
            reset_after: Duration::from_secs(60),
            keep_retrying: false,
        }
    }
}

/// What kind of failure ended a connection attempt or a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Retrying cannot fix it: the gateway refused the receiver's identity
    /// or services (401, 403) or has no receiver endpoint there (404), the
    /// gateway URL is unusable, or the local identity cannot sign.
    Permanent,
    /// It may pass: the gateway is unreachable or overloaded, TLS or the
    /// connection broke, the connection was lost.
    Transient,
    /// The gateway closed with 1001 "going away": it is shutting down or
    /// restarting, so it (or its replacement) is worth trying again soon.
    GoingAway,
}

impl Failure {
    /// The failure a handshake answered with `status` instead of 101 is.
    pub fn of_handshake_status(status: u16) -> Failure {
        match status {
            401 | 403 | 404 => Failure::Permanent,
            _ => Failure::Transient,
        }
    }

    /// The failure a connection closed by the gateway with `code` is.
    pub fn of_close_code(code: u16) -> Failure {
        match code {
            1001 => Failure::GoingAway,
            _ => Failure::Transient,
        }
    }
}

/// What to do after a [`Failure`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Wait this long, then try again.
    Retry(Duration),
    /// Stop: the failure was permanent (and `keep_retrying` is off).
    StopPermanent,
    /// Stop: `max_attempts` attempts in a row failed.
    GiveUp {
        /// The attempts made.
        attempts: u32,
    },
}

/// Why a [`BackoffConfig`] is refused.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BackoffConfigError {
    /// A zero first delay would reconnect in a tight loop.
    #[error("backoff first_delay must be greater than zero")]
    ZeroFirstDelay,
    /// The cap is below the first delay.
    #[error(
        "backoff max_delay ({} ms) is shorter than first_delay ({} ms)",
        max.as_millis(),
        first.as_millis()
    )]
    MaxBelowFirst {
        /// `first_delay`.
        first: Duration,
        /// `max_delay`.
        max: Duration,
    },
    /// The multiplier is below 1 (delays would shrink) or not a number.
    #[error("backoff multiplier must be a finite number of at least 1, got {0}")]
    BadMultiplier(f64),
}

impl BackoffConfig {
    /// Checks the settings: the first delay must be non-zero, the cap at
    /// least the first delay, the multiplier finite and at least 1.
    pub fn validate(&self) -> Result<(), BackoffConfigError> {
        if self.first_delay.is_zero() {
            return Err(BackoffConfigError::ZeroFirstDelay);
        }
        if self.max_delay < self.first_delay {
            return Err(BackoffConfigError::MaxBelowFirst {
                first: self.first_delay,
                max: self.max_delay,
            });
        }
        if !self.multiplier.is_finite() || self.multiplier < 1.0 {
            return Err(BackoffConfigError::BadMultiplier(self.multiplier));
        }
        Ok(())
    }
}

/// A reconnect schedule.
///
/// Attempt `n` (from 0) has the ceiling `c = min(first_delay · multiplierⁿ,
/// max_delay)`, and its delay is drawn with "equal jitter": half of `c` plus
/// a random part of up to the other half, so every delay lies in
/// `[c/2, c]` (never above `max_delay`, never zero) and receivers that lost
/// the same gateway spread out. The random part comes from the seed alone,
/// so a schedule is reproducible.
///
/// ```
/// use std::time::{Duration, Instant};
/// use anpx_core::backoff::{Backoff, BackoffConfig};
///
/// let config = BackoffConfig { max_attempts: Some(3), ..BackoffConfig::default() };
/// let mut backoff = Backoff::new(config, 42).unwrap();
///
/// let first = backoff.next_delay().unwrap();
/// assert!(first >= Duration::from_millis(500) && first <= Duration::from_secs(1));
/// let second = backoff.next_delay().unwrap();
/// assert!(second >= Duration::from_secs(1) && second <= Duration::from_secs(2));
/// backoff.next_delay().unwrap();
/// assert_eq!(backoff.next_delay(), None); // three attempts were allowed
///
/// // A connection that stays up for `reset_after` starts the schedule over.
/// let t0 = Instant::now();
/// backoff.on_connected(t0);
/// backoff.on_disconnected(t0 + Duration::from_secs(60));
/// assert_eq!(backoff.attempts(), 0);
/// assert!(backoff.next_delay().unwrap() <= Duration::from_secs(1));
/// ```
#[derive(Debug, Clone)]
pub struct Backoff {
    config: BackoffConfig,
    rng: fastrand::Rng,
    attempts: u32,
    connected_at: Option<Instant>,
}

impl Backoff {
    /// A fresh schedule; `seed` drives the jitter. Fails if
    /// [`BackoffConfig::validate`] does.
    pub fn new(config: BackoffConfig, seed: u64) -> Result<Self, BackoffConfigError> {
        config.validate()?;
        Ok(Backoff {
            config,
            rng: fastrand::Rng::with_seed(seed),
            attempts: 0,
            connected_at: None,
        })
    }

    /// The settings in use.
    pub fn config(&self) -> &BackoffConfig {
        &self.config
    }

    /// How long to wait before the next connection attempt, counting it as
    /// made; `None` once `max_attempts` consecutive attempts were made.
    pub fn next_delay(&mut self) -> Option<Duration> {
        if self
            .config
            .max_attempts
            .is_some_and(|max| self.attempts >= max)
        {
            return None;
        }
        let ceiling = self.ceiling_nanos(self.attempts);
        // Rounding the fixed half up keeps a 1 ns ceiling from yielding 0.
        let fixed = ceiling - ceiling / 2;
        let delay = fixed + self.rng.u128(0..=ceiling / 2);
        self.attempts = self.attempts.saturating_add(1);
        Some(nanos_to_duration(delay))
    }

    /// The step after `failure`: a permanent one stops (unless
    /// `keep_retrying`), "going away" starts the schedule over so the
    /// next attempt comes within `first_delay`, and anything else takes the
    /// next delay of the schedule, or gives up after `max_attempts`.
    pub fn after(&mut self, failure: Failure) -> Next {
        match failure {
            Failure::Permanent if !self.config.keep_retrying => return Next::StopPermanent,
            Failure::GoingAway => self.reset(),
            Failure::Permanent | Failure::Transient => {}
        }
        match self.next_delay() {
            Some(delay) => Next::Retry(delay),
            None => Next::GiveUp {
                attempts: self.attempts,
            },
        }
    }

    /// Consecutive attempts made since the schedule was last reset.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Records that a connection came up at `now`. This alone does not reset
    /// the schedule: a connection that drops at once (a gateway accepting and
    /// closing) must keep backing off.
    pub fn on_connected(&mut self, now: Instant) {
        self.connected_at = Some(now);
    }

    /// Records that the connection went down at `now`; resets the schedule if
    /// it had been up for at least `reset_after`.
    pub fn on_disconnected(&mut self, now: Instant) {
        if let Some(up_since) = self.connected_at.take() {
            if now.saturating_duration_since(up_since) >= self.config.reset_after {
                self.reset();
            }
        }
    }

    /// Starts the schedule over from the first delay.
    pub fn reset(&mut self) {
        self.attempts = 0;
    }

    /// `min(first · multiplier^attempt, max)` in nanoseconds, at least 1.
    fn ceiling_nanos(&self, attempt: u32) -> u128 {
        let first = self.config.first_delay.as_nanos();
        let max = self.config.max_delay.as_nanos();
        // Float growth may overflow to infinity, which `as` saturates; the
        // clamp then also absorbs rounding of huge durations.
        let grown = first as f64 * self.config.multiplier.powf(f64::from(attempt));
        (grown as u128).max(first).min(max).max(1)
    }
}

fn nanos_to_duration(nanos: u128) -> Duration {
    const PER_SEC: u128 = 1_000_000_000;
    let secs = u64::try_from(nanos / PER_SEC).unwrap_or(u64::MAX);
    // The remainder is below 10⁹, so it fits.
    Duration::new(secs, (nanos % PER_SEC) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    fn backoff(config: BackoffConfig, seed: u64) -> Backoff {
        Backoff::new(config, seed).unwrap()
    }

    #[test]
    fn ceiling_grows_then_caps() {
        let b = backoff(BackoffConfig::default(), 0);
        let ceilings: Vec<u128> = (0..12)
            .map(|n| b.ceiling_nanos(n) / 1_000_000_000)
            .collect();
        assert_eq!(ceilings, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(b.ceiling_nanos(u32::MAX), 300_000_000_000);

        let config = BackoffConfig {
            multiplier: 1.5,
            ..BackoffConfig::default()
        };
        let b = backoff(config, 0);
        assert_eq!(b.ceiling_nanos(2), 2_250_000_000);

        let config = BackoffConfig {
            multiplier: 1.0,
            ..BackoffConfig::default()
        };
        let b = backoff(config, 0);
        assert_eq!(b.ceiling_nanos(1000), 1_000_000_000);
    }

    #[test]
    fn delays_stay_within_equal_jitter_bounds() {
        let config = BackoffConfig::default();
        let mut lowest = [Duration::MAX; 12];
        let mut highest = [Duration::ZERO; 12];
        for seed in 0..2000 {
            let mut b = backoff(config, seed);
            for n in 0..12 {
                let ceiling = secs(f64::min(2f64.powi(n as i32), 300.0));
                let d = b.next_delay().unwrap();
                assert!(
                    d >= ceiling / 2 && d <= ceiling,
                    "seed {seed} attempt {n}: {d:?} vs {ceiling:?}"
                );
                lowest[n] = lowest[n].min(d);
                highest[n] = highest[n].max(d);
            }
        }
        // The random half is actually used, across its whole range.
        for n in 0..12 {
            let ceiling = secs(f64::min(2f64.powi(n as i32), 300.0));
            assert!(
                lowest[n] < ceiling.mul_f64(0.51),
                "attempt {n}: lowest {:?}",
                lowest[n]
            );
            assert!(
                highest[n] > ceiling.mul_f64(0.99),
                "attempt {n}: highest {:?}",
                highest[n]
            );
        }
    }

    #[test]
    fn never_zero_with_a_tiny_first_delay() {
        let config = BackoffConfig {
            first_delay: Duration::from_nanos(1),
            max_delay: Duration::from_nanos(1),
            ..BackoffConfig::default()
        };
        for seed in 0..100 {
            assert_eq!(
                backoff(config, seed).next_delay(),
                Some(Duration::from_nanos(1))
            );
        }
    }

    #[test]
    fn extreme_settings_do_not_panic() {
        let config = BackoffConfig {
            first_delay: Duration::from_secs(u64::MAX / 2),
            max_delay: Duration::MAX,
            multiplier: 1e300,
            ..BackoffConfig::default()
        };
        let mut b = backoff(config, 7);
        for _ in 0..5 {
            let d = b.next_delay().unwrap();
            assert!(d >= Duration::from_secs(u64::MAX / 4));
        }
        b.attempts = u32::MAX;
        assert!(b.next_delay().is_some());
        assert_eq!(b.attempts(), u32::MAX);
    }

    #[test]
    fn same_seed_same_schedule() {
        let run = |seed| {
            let mut b = backoff(BackoffConfig::default(), seed);
            (0..20).map(|_| b.next_delay().unwrap()).collect::<Vec<_>>()
        };
        assert_eq!(run(99), run(99));
        assert_ne!(run(99), run(100));
    }

    #[test]
    fn max_attempts_stops_until_reset() {
        let config = BackoffConfig {
            max_attempts: Some(3),
            ..BackoffConfig::default()
        };
        let mut b = backoff(config, 1);
        for n in 1..=3 {
            assert!(b.next_delay().is_some());
            assert_eq!(b.attempts(), n);
        }
        assert_eq!(b.next_delay(), None);
        assert_eq!(b.next_delay(), None);
        assert_eq!(b.attempts(), 3);
        b.reset();
        assert!(b.next_delay().is_some());

        let config = BackoffConfig {
            max_attempts: Some(0),
            ..BackoffConfig::default()
        };
        assert_eq!(backoff(config, 1).next_delay(), None);
    }

    #[test]
    fn long_connection_resets_short_one_does_not() {
        let t0 = Instant::now();
        let mut b = backoff(BackoffConfig::default(), 5);
        for _ in 0..6 {
            b.next_delay();
        }

        b.on_connected(t0);
        b.on_disconnected(t0 + secs(59.9));
        assert_eq!(b.attempts(), 6, "flapping connection keeps backing off");
        assert!(b.next_delay().unwrap() >= secs(32.0));

        b.on_connected(t0);
        b.on_disconnected(t0 + secs(60.0));
        assert_eq!(b.attempts(), 0);
        assert!(b.next_delay().unwrap() <= secs(1.0));

        // A disconnect without a recorded connect, or one timed before it,
        // changes nothing.
        b.next_delay();
        b.on_disconnected(t0 + secs(1000.0));
        assert_eq!(b.attempts(), 2);
        b.on_connected(t0 + secs(10.0));
        b.on_disconnected(t0);
        assert_eq!(b.attempts(), 2);
    }

    #[test]
    fn failures_are_sorted_by_whether_retrying_can_fix_them() {
        for status in [401, 403, 404] {
            assert_eq!(Failure::of_handshake_status(status), Failure::Permanent);
        }
        for status in [400, 408, 429, 500, 502, 503, 504, 200] {
            assert_eq!(Failure::of_handshake_status(status), Failure::Transient);
        }
        assert_eq!(Failure::of_close_code(1001), Failure::GoingAway);
        for code in [1000, 1006, 1008, 1011, 4000] {
            assert_eq!(Failure::of_close_code(code), Failure::Transient);
        }
    }

    #[test]
    fn a_permanent_failure_stops_unless_asked_to_keep_retrying() {
        let mut b = backoff(BackoffConfig::default(), 3);
        assert_eq!(b.after(Failure::Permanent), Next::StopPermanent);
        assert_eq!(b.attempts(), 0, "stopping is not an attempt");

        let config = BackoffConfig {
            keep_retrying: true,
            ..BackoffConfig::default()
        };
        let mut b = backoff(config, 3);
        let Next::Retry(first) = b.after(Failure::Permanent) else {
            panic!("keep_retrying retries");
        };
        assert!(first <= secs(1.0));
        let Next::Retry(second) = b.after(Failure::Permanent) else {
            panic!("keep_retrying retries");
        };
        assert!(second >= secs(1.0), "and still backs off: {second:?}");
    }

    #[test]
    fn transient_failures_back_off_then_give_up_after_max_attempts() {
        let config = BackoffConfig {
            max_attempts: Some(2),
            ..BackoffConfig::default()
        };
        let mut b = backoff(config, 8);
        assert!(matches!(b.after(Failure::Transient), Next::Retry(d) if d <= secs(1.0)));
        assert!(matches!(b.after(Failure::Transient), Next::Retry(d) if d >= secs(1.0)));
        assert_eq!(b.after(Failure::Transient), Next::GiveUp { attempts: 2 });
    }

    #[test]
    fn going_away_reconnects_within_the_first_delay() {
        let config = BackoffConfig {
            max_attempts: Some(5),
            ..BackoffConfig::default()
        };
        let mut b = backoff(config, 11);
        for _ in 0..5 {
            b.after(Failure::Transient);
        }
        assert_eq!(b.after(Failure::Transient), Next::GiveUp { attempts: 5 });
        let Next::Retry(d) = b.after(Failure::GoingAway) else {
            panic!("going away is retried even after the attempts ran out");
        };
        assert!(d <= secs(1.0), "{d:?}");
        assert_eq!(b.attempts(), 1);
    }

    #[test]
    fn reset_after_is_configurable() {
        let config = BackoffConfig {
            reset_after: secs(5.0),
            ..BackoffConfig::default()
        };
        let t0 = Instant::now();
        let mut b = backoff(config, 2);
        for _ in 0..4 {
            b.after(Failure::Transient);
        }
        b.on_connected(t0);
        b.on_disconnected(t0 + secs(4.9));
        assert_eq!(b.attempts(), 4);
        b.on_connected(t0);
        b.on_disconnected(t0 + secs(5.0));
        assert_eq!(b.attempts(), 0);
    }

    #[test]
    fn validate_refuses_bad_settings() {
        let ok = BackoffConfig::default();
        assert_eq!(ok.validate(), Ok(()));
        let zero = BackoffConfig {
            first_delay: Duration::ZERO,
            ..ok
        };
        assert_eq!(zero.validate(), Err(BackoffConfigError::ZeroFirstDelay));
        let inverted = BackoffConfig {
            max_delay: secs(0.5),
            ..ok
        };
        assert_eq!(
            inverted.validate(),
            Err(BackoffConfigError::MaxBelowFirst {
                first: secs(1.0),
                max: secs(0.5)
            })
        );
        for m in [0.99, 0.0, -2.0, f64::INFINITY] {
            let bad = BackoffConfig {
                multiplier: m,
                ..ok
            };
            assert_eq!(bad.validate(), Err(BackoffConfigError::BadMultiplier(m)));
        }
        let nan = BackoffConfig {
            multiplier: f64::NAN,
            ..ok
        };
        assert!(matches!(
            nan.validate(),
            Err(BackoffConfigError::BadMultiplier(_))
        ));
        assert!(Backoff::new(nan, 0).is_err());
        let equal = BackoffConfig {
            max_delay: secs(1.0),
            multiplier: 1.0,
            ..ok
        };
        assert_eq!(equal.validate(), Ok(()));
        assert!(BackoffConfigError::ZeroFirstDelay
            .to_string()
            .contains("first_delay"));
    }
}
