//! `[last_cache]` of `hub.toml`.

use std::time::Duration;

use serde::Deserialize;

/// `[last_cache]`: limits, defaults, and caches declared in the file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LastCacheConfig {
    /// The API answers 403 when off, and no cache is kept.
    pub enabled: bool,
    /// Keys one cache holds at most; rows of further keys are not cached.
    pub max_keys: usize,
    /// Caches that may exist at most.
    pub max_caches: usize,
    /// The ttl of a cache created without one.
    #[serde(with = "humantime_serde")]
    pub default_ttl: Duration,
    /// Caches created at start when missing (by database, measurement and
    /// name), as the API would.
    pub caches: Vec<DeclaredCache>,
}

/// One `[[last_cache.caches]]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeclaredCache {
    pub database: String,
    pub measurement: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub key_columns: Option<Vec<String>>,
    #[serde(default)]
    pub value_columns: Option<Vec<String>>,
    #[serde(default)]
    pub count: Option<u8>,
    #[serde(default, with = "humantime_serde")]
    pub ttl: Option<Duration>,
}

impl Default for LastCacheConfig {
    fn default() -> Self {
        LastCacheConfig {
            enabled: true,
            max_keys: 100_000,
            max_caches: 100,
            default_ttl: Duration::from_secs(4 * 3600),
            caches: Vec::new(),
        }
    }
}

impl LastCacheConfig {
    pub fn validate(&self, errors: &mut Vec<String>) {
        if self.max_keys == 0 {
            errors.push("last_cache.max_keys: must be at least 1".to_owned());
        }
        if self.default_ttl.is_zero() {
            errors.push("last_cache.default_ttl: must be greater than 0".to_owned());
        }
        for (i, c) in self.caches.iter().enumerate() {
            if let Some(n) = c.count
                && !(1..=10).contains(&n)
            {
                errors.push(format!(
                    "last_cache.caches[{i}].count: {n} is not within 1-10"
                ));
            }
        }
    }
}
