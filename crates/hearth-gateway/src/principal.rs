//! Who a request runs as, and the configured keys that say so.
//!
//! A key is compared by the SHA-256 of its secret, in constant time, against every
//! configured key; only its name (the principal's id) ever reaches logs, metrics
//! and stored rows.

use std::sync::Arc;

use hearth_config::{Budget, ResolvedKey};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The owner of every request and stored row made without a key (a server on
/// loopback with no keys configured).
pub const ANONYMOUS: &str = "anonymous";

/// Who a request runs as: a configured key (by its name), or the anonymous caller of
/// a server that needs no key. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The key's name (`[[keys]] name`, `env-1`...), or [`ANONYMOUS`]: what logs,
    /// metrics and stored rows carry, never the secret.
    pub id: Arc<str>,
    /// Requests per minute; 0 = unlimited.
    pub rpm: u32,
    /// Tokens per minute; 0 = unlimited.
    pub tpm: u64,
    /// Sees every owner's conversations (and jobs), not only its own.
    pub admin: bool,
    /// Tokens per calendar period, counted across restarts (`crate::Budgets`).
    pub budget: Option<Budget>,
    pub(crate) counters: Arc<Counters>,
}

impl Principal {
    /// A principal not from the key ring (tests, embedders, a worker acting as a
    /// job's owner).
    pub fn new(id: &str, rpm: u32, tpm: u64, admin: bool) -> Self {
        Principal {
            id: Arc::from(id),
            rpm,
            tpm,
            admin,
            budget: None,
            counters: Arc::new(Counters::new(id)),
        }
    }

    /// The same principal with a token budget (and the gauge of its count, made
    /// once here rather than looked up by name on every request).
    pub fn with_budget(mut self, budget: Option<Budget>) -> Self {
        self.budget = budget;
        if budget.is_some() {
            let mut counters = (*self.counters).clone();
            counters.budget_used = Some(metrics::gauge!(
                "hearth_key_budget_used_tokens",
                "key" => self.id.to_string()
            ));
            self.counters = Arc::new(counters);
        }
        self
    }

    /// Whether requests and tokens are limited at all (an unlimited principal skips
    /// the limiter).
    pub fn is_limited(&self) -> bool {
        self.rpm > 0 || self.tpm > 0
    }
}

/// The per-key metrics, registered once per key rather than looked up per request.
#[derive(Debug, Clone)]
pub(crate) struct Counters {
    pub requests: metrics::Counter,
    pub prompt_tokens: metrics::Counter,
    pub completion_tokens: metrics::Counter,
    /// This period's count of a key with a token budget.
    pub budget_used: Option<metrics::Gauge>,
}

impl Counters {
    fn new(key: &str) -> Self {
        let key = key.to_owned();
        Counters {
            requests: metrics::counter!("hearth_key_requests_total", "key" => key.clone()),
            prompt_tokens: metrics::counter!("hearth_key_tokens_total", "key" => key.clone(), "kind" => "prompt"),
            completion_tokens: metrics::counter!("hearth_key_tokens_total", "key" => key, "kind" => "completion"),
            budget_used: None,
        }
    }
}

/// The configured client keys, and the principal each stands for.
#[derive(Debug)]
pub struct KeyRing {
    // Digests, so comparison time does not depend on the key's length.
    keys: Vec<([u8; 32], Principal)>,
    anonymous: Principal,
}

impl KeyRing {
    /// `keys` as resolved from the config; the anonymous principal (used when there
    /// are none) gets the default limits.
    pub fn new(keys: &[ResolvedKey], default_rpm: u32, default_tpm: u64) -> Self {
        KeyRing {
            keys: keys
                .iter()
                .map(|k| {
                    (
                        digest(&k.secret),
                        Principal::new(&k.id, k.rpm, k.tpm, k.admin).with_budget(k.budget),
                    )
                })
                .collect(),
            anonymous: Principal::new(ANONYMOUS, default_rpm, default_tpm, false),
        }
    }

    /// Whether requests must present a key.
    pub fn required(&self) -> bool {
        !self.keys.is_empty()
    }

    /// The principal owning `presented`, compared against every key.
    pub fn find(&self, presented: &str) -> Option<Principal> {
        let d = digest(presented);
        let mut found = None;
        for (k, principal) in &self.keys {
            if bool::from(k.ct_eq(&d)) && found.is_none() {
                found = Some(principal.clone());
            }
        }
        found
    }

    /// The principal named `id` (a key's name, or `anonymous`), for work done later
    /// on its behalf (a queued job). `None` for a key no longer configured.
    pub fn by_id(&self, id: &str) -> Option<&Principal> {
        self.principals()
            .chain(std::iter::once(&self.anonymous))
            .find(|p| &*p.id == id)
    }

    /// The configured keys' principals, in the config's order (never the
    /// anonymous one): for an admin's listing.
    pub fn principals(&self) -> impl Iterator<Item = &Principal> {
        self.keys.iter().map(|(_, p)| p)
    }

    /// The caller of a server that needs no key.
    pub fn anonymous(&self) -> &Principal {
        &self.anonymous
    }
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, secret: &str, admin: bool) -> ResolvedKey {
        ResolvedKey {
            id: id.into(),
            secret: secret.into(),
            rpm: 1,
            tpm: 2,
            admin,
            budget: None,
        }
    }

    #[test]
    fn finds_keys_by_secret_and_never_by_a_prefix() {
        let ring = KeyRing::new(
            &[
                key("a", "sk-aaaaaaaa", false),
                key("b", "sk-bbbbbbbb", true),
            ],
            0,
            0,
        );
        assert!(ring.required());
        let b = ring.find("sk-bbbbbbbb").unwrap();
        assert_eq!((&*b.id, b.rpm, b.tpm, b.admin), ("b", 1, 2, true));
        assert!(ring.find("sk-bbbbbbb").is_none());
        assert!(ring.find("").is_none());
        let open = KeyRing::new(&[], 5, 6);
        assert!(!open.required());
        assert_eq!(&*open.anonymous().id, ANONYMOUS);
        assert_eq!((open.anonymous().rpm, open.anonymous().tpm), (5, 6));
    }

    #[test]
    fn finds_the_owner_of_queued_work_by_name() {
        let ring = KeyRing::new(&[key("a", "sk-aaaaaaaa", false)], 5, 6);
        assert_eq!(ring.by_id("a").map(|p| p.rpm), Some(1));
        assert_eq!(ring.by_id(ANONYMOUS).map(|p| p.rpm), Some(5));
        assert!(ring.by_id("removed-since").is_none());
    }
}
