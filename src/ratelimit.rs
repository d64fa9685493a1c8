//! A token-bucket rate limiter keyed by client address, with bounded memory.
//!
//! Each address has a bucket of `burst` tokens that refills continuously at the configured rate.
//! A request takes one token or is rejected. IPv6 addresses are keyed by their /64 prefix,
//! because one client usually controls a whole /64 and could otherwise rotate addresses freely.
//!
//! At most `max_tracked` buckets are kept. When the table is full, buckets that have refilled
//! completely are dropped (they carry no state), at most once per second. If the table is still
//! full, addresses without a bucket share one overflow bucket, so a flood from many addresses is
//! limited as a whole instead of growing the table.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use chrono::{DateTime, Utc};

/// Buckets kept by default. At an estimated 100 bytes per bucket the table stays under 10 MiB.
pub const DEFAULT_MAX_TRACKED: usize = 65_536;

/// A token-bucket limiter keyed by address.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    max_tracked: usize,
    table: Mutex<Table>,
}

#[derive(Debug)]
struct Table {
    buckets: HashMap<IpAddr, Bucket>,
    overflow: Option<Bucket>,
    last_prune: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: DateTime<Utc>,
}

impl Bucket {
    fn full(burst: f64, now: DateTime<Utc>) -> Bucket {
        Bucket {
            tokens: burst,
            updated: now,
        }
    }

    /// Adds the tokens earned since the last update. A clock that moved backwards adds none.
    fn refill(&mut self, per_second: f64, burst: f64, now: DateTime<Utc>) {
        let elapsed = (now - self.updated).to_std().unwrap_or_default();
        self.tokens = (self.tokens + elapsed.as_secs_f64() * per_second).min(burst);
        if now > self.updated {
            self.updated = now;
        }
    }

    /// Takes one token, or returns the whole seconds until one is available.
    fn take(&mut self, per_second: f64) -> Result<(), u64> {
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        let wait = ((1.0 - self.tokens) / per_second).ceil();
        Err((wait as u64).max(1))
    }
}

impl RateLimiter {
    /// Makes a limiter allowing `per_minute` requests a minute per address with bursts of up to
    /// `burst`, or `None` when `per_minute` or `burst` is 0 (no limit).
    pub fn new(per_minute: u32, burst: u32, max_tracked: usize) -> Option<RateLimiter> {
        if per_minute == 0 || burst == 0 {
            return None;
        }
        Some(RateLimiter {
            per_second: f64::from(per_minute) / 60.0,
            burst: f64::from(burst),
            max_tracked: max_tracked.max(1),
            table: Mutex::new(Table {
                buckets: HashMap::new(),
                overflow: None,
                last_prune: None,
            }),
        })
    }

    /// Takes one token for `addr` at `now`. Returns the seconds to wait (at least 1) when the
    /// address has none left.
    pub fn check(&self, addr: IpAddr, now: DateTime<Utc>) -> Result<(), u64> {
        let key = bucket_key(addr);
        let mut table = self.table.lock().expect("rate limiter lock poisoned");
        if !table.buckets.contains_key(&key) && table.buckets.len() >= self.max_tracked {
            self.prune(&mut table, now);
        }
        let bucket = if table.buckets.contains_key(&key) || table.buckets.len() < self.max_tracked {
            table
                .buckets
                .entry(key)
                .or_insert_with(|| Bucket::full(self.burst, now))
        } else {
            table
                .overflow
                .get_or_insert_with(|| Bucket::full(self.burst, now))
        };
        bucket.refill(self.per_second, self.burst, now);
        bucket.take(self.per_second)
    }

    /// Number of addresses with their own bucket.
    pub fn tracked(&self) -> usize {
        self.table
            .lock()
            .expect("rate limiter lock poisoned")
            .buckets
            .len()
    }

    /// Drops the buckets that have refilled completely, unless that was tried less than a
    /// second ago.
    fn prune(&self, table: &mut Table, now: DateTime<Utc>) {
        if table
            .last_prune
            .is_some_and(|last| now - last < chrono::Duration::seconds(1))
        {
            return;
        }
        table.last_prune = Some(now);
        let (per_second, burst) = (self.per_second, self.burst);
        table.buckets.retain(|_, bucket| {
            let mut refilled = *bucket;
            refilled.refill(per_second, burst, now);
            refilled.tokens < burst
        });
    }
}

/// Returns the key of an address's bucket: an IPv4 address (also when mapped into IPv6) as it
/// is, another IPv6 address as its /64 prefix.
fn bucket_key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(prefix.into())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
    }

    fn v4(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
    }

    #[test]
    fn burst_then_reject_with_wait() {
        let limiter = RateLimiter::new(60, 3, 10).unwrap();
        for attempt in 0..3 {
            assert_eq!(limiter.check(v4(1), at(0)), Ok(()), "attempt {attempt}");
        }
        assert_eq!(limiter.check(v4(1), at(0)), Err(1));
    }

    #[test]
    fn wait_reflects_slow_rate() {
        let limiter = RateLimiter::new(6, 1, 10).unwrap();
        assert_eq!(limiter.check(v4(1), at(0)), Ok(()));
        assert_eq!(limiter.check(v4(1), at(0)), Err(10));
        assert_eq!(limiter.check(v4(1), at(4)), Err(6));
    }

    #[test]
    fn tokens_refill_over_time() {
        let limiter = RateLimiter::new(60, 2, 10).unwrap();
        assert_eq!(limiter.check(v4(1), at(0)), Ok(()));
        assert_eq!(limiter.check(v4(1), at(0)), Ok(()));
        assert!(limiter.check(v4(1), at(0)).is_err());
        assert_eq!(limiter.check(v4(1), at(1)), Ok(()));
        assert!(limiter.check(v4(1), at(1)).is_err());
    }

    #[test]
    fn addresses_have_separate_buckets() {
        let limiter = RateLimiter::new(60, 1, 10).unwrap();
        assert_eq!(limiter.check(v4(1), at(0)), Ok(()));
        assert!(limiter.check(v4(1), at(0)).is_err());
        assert_eq!(limiter.check(v4(2), at(0)), Ok(()));
    }

    #[test]
    fn ipv6_shares_bucket_per_64() {
        let limiter = RateLimiter::new(60, 1, 10).unwrap();
        let first = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 1));
        let same_64 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0xffff, 0, 0, 2));
        let other_64 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 2, 0, 0, 0, 1));
        assert_eq!(limiter.check(first, at(0)), Ok(()));
        assert!(limiter.check(same_64, at(0)).is_err());
        assert_eq!(limiter.check(other_64, at(0)), Ok(()));
    }

    #[test]
    fn full_table_uses_overflow_bucket() {
        let limiter = RateLimiter::new(60, 1, 2).unwrap();
        assert_eq!(limiter.check(v4(1), at(0)), Ok(()));
        assert_eq!(limiter.check(v4(2), at(0)), Ok(()));
        assert_eq!(limiter.check(v4(3), at(0)), Ok(()));
        assert!(limiter.check(v4(4), at(0)).is_err());
        assert_eq!(limiter.tracked(), 2);
    }

    #[test]
    fn full_table_drops_refilled_buckets() {
        let limiter = RateLimiter::new(60, 1, 2).unwrap();
        assert_eq!(limiter.check(v4(1), at(0)), Ok(()));
        assert_eq!(limiter.check(v4(2), at(0)), Ok(()));
        assert_eq!(limiter.check(v4(3), at(5)), Ok(()));
        assert_eq!(limiter.tracked(), 1);
    }
}
