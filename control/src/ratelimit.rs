//! The control plane's rate limits on unauthenticated, expensive calls:
//! logins and registrations, built on the workspace's one limiter
//! (`convene-ratelimit`), with time passed in by the caller.
//!
//! Logins are limited per client address, per account across all addresses
//! and per (account, address). The account-wide limit is what stops guessing
//! from many addresses, but a stranger could use it to lock the owner out
//! indefinitely; so an address the account has logged in from before (a
//! *known address*, remembered for `login_known_address_ttl_secs`) skips the
//! account-wide limit and only its own (account, address) allowance counts,
//! which nobody else's failures consume. The account is the user's id
//! whichever login (username or email) names it, so the two are one budget.
//!
//! Per process: behind several replicas the effective limits multiply, which
//! is acceptable for slowing down password guessing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use convene_ratelimit::{retry_after_secs, KeyedLimiter};
use parking_lot::Mutex;
use uuid::Uuid;

use crate::error::ApiError;

/// Who a login attempt is for: a real account, or a login that names none
/// (limited the same way, so probing for names costs as much as guessing).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Account {
    Id(Uuid),
    Unknown(String),
}

/// Known addresses kept at most; beyond it expired ones are swept and, if
/// still full, new ones are not remembered (the owner then just gets the
/// ordinary limits).
const MAX_KNOWN_ADDRESSES: usize = 100_000;

#[derive(Debug)]
pub(crate) struct LoginLimits {
    by_ip: KeyedLimiter<Option<IpAddr>>,
    by_account: KeyedLimiter<Account>,
    by_account_ip: KeyedLimiter<(Account, Option<IpAddr>)>,
    known: Mutex<HashMap<(Uuid, IpAddr), Instant>>,
    known_ttl: Duration,
}

fn limited(wait: Duration) -> ApiError {
    ApiError::RateLimited {
        retry_after: retry_after_secs(wait),
    }
}

impl LoginLimits {
    pub(crate) fn new(
        per_account: u32,
        per_ip: u32,
        window: Duration,
        known_ttl: Duration,
    ) -> Self {
        LoginLimits {
            by_ip: KeyedLimiter::new(per_ip, window),
            by_account: KeyedLimiter::new(per_account, window),
            by_account_ip: KeyedLimiter::new(per_account, window),
            known: Mutex::new(HashMap::new()),
            known_ttl,
        }
    }

    /// Counts an attempt from `ip` before anything else is looked at.
    pub(crate) fn check_ip(&self, ip: Option<IpAddr>, now: Instant) -> Result<(), ApiError> {
        self.by_ip.check(&ip, now).map_err(limited)
    }

    /// Counts an attempt at `account` from `ip`.
    pub(crate) fn check_account(
        &self,
        account: &Account,
        ip: Option<IpAddr>,
        now: Instant,
    ) -> Result<(), ApiError> {
        self.by_account_ip
            .check(&(account.clone(), ip), now)
            .map_err(limited)?;
        if self.is_known(account, ip, now) {
            return Ok(());
        }
        self.by_account.check(account, now).map_err(limited)
    }

    /// A successful login: the address becomes known and its allowance
    /// is restored. The account-wide budget is left as it is, so an attacker
    /// who also owns a valid account gains nothing against another one.
    pub(crate) fn succeeded(&self, user: Uuid, ip: Option<IpAddr>, now: Instant) {
        let account = Account::Id(user);
        self.by_account_ip.reset(&(account, ip));
        let Some(ip) = ip else { return };
        let mut known = self.known.lock();
        if known.len() >= MAX_KNOWN_ADDRESSES && !known.contains_key(&(user, ip)) {
            known.retain(|_, until| *until > now);
            if known.len() >= MAX_KNOWN_ADDRESSES {
                return;
            }
        }
        known.insert((user, ip), now + self.known_ttl);
    }

    fn is_known(&self, account: &Account, ip: Option<IpAddr>, now: Instant) -> bool {
        let (Account::Id(user), Some(ip)) = (account, ip) else {
            return false;
        };
        self.known
            .lock()
            .get(&(*user, ip))
            .is_some_and(|until| *until > now)
    }
}

/// Registrations per client address.
#[derive(Debug)]
pub(crate) struct RegisterLimits(KeyedLimiter<Option<IpAddr>>);

impl RegisterLimits {
    pub(crate) fn new(per_ip: u32, window: Duration) -> Self {
        RegisterLimits(KeyedLimiter::new(per_ip, window))
    }

    pub(crate) fn check(&self, ip: Option<IpAddr>, now: Instant) -> Result<(), ApiError> {
        self.0.check(&ip, now).map_err(limited)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(300);

    fn ip(n: u8) -> Option<IpAddr> {
        Some(IpAddr::from([10, 0, 0, n]))
    }

    fn limits() -> LoginLimits {
        LoginLimits::new(3, 100, WINDOW, Duration::from_secs(3600))
    }

    #[test]
    fn one_account_is_one_budget_across_addresses() {
        let l = limits();
        let t = Instant::now();
        let alice = Account::Id(Uuid::new_v4());
        for n in 1..=3 {
            l.check_account(&alice, ip(n), t).unwrap();
        }
        let err = l.check_account(&alice, ip(9), t).unwrap_err();
        assert!(
            matches!(err, ApiError::RateLimited { retry_after } if (1..=100).contains(&retry_after))
        );
        // Another account is not affected.
        l.check_account(&Account::Id(Uuid::new_v4()), ip(9), t)
            .unwrap();
    }

    #[test]
    fn a_strangers_failures_do_not_lock_the_owner_out_of_a_known_address() {
        let l = limits();
        let t = Instant::now();
        let id = Uuid::new_v4();
        let alice = Account::Id(id);
        l.check_account(&alice, ip(1), t).unwrap();
        l.succeeded(id, ip(1), t);
        // A stranger uses up the rest of the account-wide budget (the
        // owner's first login took one) from elsewhere.
        for n in 2..=3 {
            l.check_account(&alice, ip(n), t).unwrap();
        }
        assert!(l.check_account(&alice, ip(5), t).is_err());
        // The owner's known address still has its own allowance...
        for _ in 0..3 {
            l.check_account(&alice, ip(1), t).unwrap();
        }
        // ...which is bounded too.
        assert!(l.check_account(&alice, ip(1), t).is_err());
        // And a known address expires.
        let later = t + Duration::from_secs(3601);
        l.by_account.reset(&alice);
        l.by_account_ip.reset(&(alice.clone(), ip(1)));
        for _ in 0..3 {
            l.check_account(&alice, ip(6), later).unwrap();
        }
        assert!(l.check_account(&alice, ip(1), later).is_err());
    }

    #[test]
    fn an_unknown_login_is_limited_like_an_account() {
        let l = limits();
        let t = Instant::now();
        let ghost = Account::Unknown("nobody".into());
        for _ in 0..3 {
            l.check_account(&ghost, ip(1), t).unwrap();
        }
        assert!(l.check_account(&ghost, ip(2), t).is_err());
    }
}
