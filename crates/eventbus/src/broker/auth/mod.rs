//! Identities: who a connection is, what it may do, and its quotas.
//!
//! Without an auth file, every connection the socket admits (the broker's
//! own user, or a uid in `allowed_uids`) is the identity `uid:<n>` with
//! [`Permissions::owner`]: everything but cancelling other clients'
//! messages. With one (`BrokerConfig::auth_file`, TOML, see [`AuthConfig`]),
//! a client names a user and presents its secret in `Hello`, or is the user
//! whose `uid` its socket peer has; each user has its own client id
//! patterns, permissions and quota overrides, and anyone else is refused.
//! The rules of `router/` (only a publisher cancels, only a recipient
//! answers, `_sys` and `x-` are the broker's) hold for every identity.

mod permissions;
mod secret;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub(crate) use permissions::{NamePatterns, Permissions, TopicRules};
pub use secret::BadSecretHash;
pub(crate) use secret::{SecretHash, fresh_salt};

use super::config::{BrokerConfig, QuotaConfig};
use super::refusal::HandshakeRefusal;
use crate::topic::TopicFilter;

/// The auth file: the users who may connect.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct AuthConfig {
    /// One entry per user (`[[user]]`).
    #[serde(rename = "user")]
    pub users: Vec<UserConfig>,
}

/// One user of the auth file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct UserConfig {
    /// The name a client gives in `Hello` (with its secret).
    pub name: String,
    /// `<salt hex>:<sha-256 hex>` of the user's secret (`broker hash-secret`).
    pub secret_sha256: Option<String>,
    /// A peer with this uid that sends no credentials is this user.
    pub uid: Option<u32>,
    /// The client ids the user may connect as (patterns, `*` for any run of
    /// characters); empty means any.
    pub client_ids: Vec<String>,
    /// Topics the user may publish on.
    pub publish: TopicRulesConfig,
    /// Filters the user may subscribe with (plain and queue groups).
    pub subscribe: TopicRulesConfig,
    /// Queue groups the user may join (name patterns); empty means any.
    pub groups: Vec<String>,
    /// Client ids the user may send direct messages to (patterns); empty
    /// means any.
    pub direct: Vec<String>,
    /// Whether the user may read stats.
    pub stats: Option<bool>,
    /// Whether the user may cancel other clients' messages.
    pub admin: bool,
    /// Quotas that differ from the broker's `[quotas]`.
    pub quotas: QuotaOverrides,
}

/// Allow and deny topic filters; no allow list means everything is allowed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct TopicRulesConfig {
    /// Filters allowed; empty (or absent) allows every topic.
    pub allow: Vec<String>,
    /// Filters denied, even where an allow filter matches.
    pub deny: Vec<String>,
}

/// Per-user quotas; unset ones keep the broker's `[quotas]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct QuotaOverrides {
    /// See [`QuotaConfig::max_pending_requests`].
    pub max_pending_requests: Option<usize>,
    /// See [`QuotaConfig::max_direct_unsettled`].
    pub max_direct_unsettled: Option<usize>,
    /// See [`QuotaConfig::max_queued_messages`].
    pub max_queued_messages: Option<usize>,
    /// See [`QuotaConfig::max_queued_bytes`].
    pub max_queued_bytes: Option<usize>,
    /// Most subscriptions (see `max_subscriptions_per_client`).
    pub max_subscriptions: Option<usize>,
    /// See [`QuotaConfig::max_concurrent_gathers`].
    pub max_concurrent_gathers: Option<usize>,
}

/// Why an auth file is unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// It could not be read.
    #[error("cannot read auth file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It is not valid TOML of the expected shape.
    #[error("invalid auth file: {0}")]
    Parse(#[from] toml::de::Error),
    /// A user's entry is wrong.
    #[error("invalid auth file: user {user:?}: {reason}")]
    Invalid {
        /// The user.
        user: String,
        /// What is wrong.
        reason: String,
    },
}

impl AuthConfig {
    /// Parses and checks an auth file's text.
    pub fn from_toml(text: &str) -> Result<Self, AuthError> {
        let config: Self = toml::from_str(text)?;
        Authenticator::new(Some(&config), &BrokerConfig::default())?;
        Ok(config)
    }

    /// Reads and checks the auth file at `path`.
    pub fn load(path: &Path) -> Result<Self, AuthError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text)
    }
}

/// The `secret_sha256` value for `secret`, with a fresh salt (what `broker
/// hash-secret` prints).
pub fn hash_secret(secret: &[u8]) -> String {
    SecretHash::new(secret, fresh_salt()).to_string()
}

/// The resolved quotas of one identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Quotas {
    pub max_pending_requests: usize,
    pub max_direct_unsettled: usize,
    pub max_queued_messages: usize,
    pub max_queued_bytes: usize,
    pub max_subscriptions: usize,
    pub max_concurrent_gathers: usize,
}

impl Quotas {
    fn new(defaults: &QuotaConfig, max_subscriptions: usize, o: &QuotaOverrides) -> Self {
        Self {
            max_pending_requests: o
                .max_pending_requests
                .unwrap_or(defaults.max_pending_requests),
            max_direct_unsettled: o
                .max_direct_unsettled
                .unwrap_or(defaults.max_direct_unsettled),
            max_queued_messages: o
                .max_queued_messages
                .unwrap_or(defaults.max_queued_messages),
            max_queued_bytes: o.max_queued_bytes.unwrap_or(defaults.max_queued_bytes),
            max_subscriptions: o.max_subscriptions.unwrap_or(max_subscriptions),
            max_concurrent_gathers: o
                .max_concurrent_gathers
                .unwrap_or(defaults.max_concurrent_gathers),
        }
    }
}

/// Who a connection is: its identity's name, permissions, client ids and
/// quotas. Shared by every connection of the identity.
#[derive(Debug)]
pub(crate) struct Principal {
    /// `uid:<n>` without an auth file, else the user's name.
    pub name: String,
    pub perms: Permissions,
    pub client_ids: NamePatterns,
    pub quotas: Quotas,
}

/// A user of the auth file, resolved.
#[derive(Debug)]
struct User {
    secret: Option<SecretHash>,
    principal: Arc<Principal>,
}

/// Decides who a connection is, from its `Hello` and its socket peer.
#[derive(Debug)]
pub(crate) struct Authenticator {
    /// `None` without an auth file.
    users: Option<HashMap<String, User>>,
    by_uid: HashMap<u32, Arc<Principal>>,
    /// What a socket owner's client gets without an auth file.
    owner_quotas: Quotas,
}

impl Authenticator {
    pub(crate) fn new(auth: Option<&AuthConfig>, config: &BrokerConfig) -> Result<Self, AuthError> {
        let quotas = &config.quotas;
        let max_subscriptions = config.max_subscriptions_per_client;
        let owner_quotas = Quotas::new(quotas, max_subscriptions, &QuotaOverrides::default());
        let Some(auth) = auth else {
            return Ok(Self {
                users: None,
                by_uid: HashMap::new(),
                owner_quotas,
            });
        };
        let mut users = HashMap::new();
        let mut by_uid = HashMap::new();
        for u in &auth.users {
            let invalid = |reason: String| AuthError::Invalid {
                user: u.name.clone(),
                reason,
            };
            if u.name.is_empty() {
                return Err(invalid("the name is empty".into()));
            }
            if u.secret_sha256.is_none() && u.uid.is_none() {
                return Err(invalid("needs a secret_sha256, a uid, or both".into()));
            }
            let secret = u
                .secret_sha256
                .as_deref()
                .map(SecretHash::parse)
                .transpose()
                .map_err(|e| invalid(e.to_string()))?;
            let rules = |r: &TopicRulesConfig, what: &str| -> Result<TopicRules, AuthError> {
                let parse = |list: &[String]| -> Result<Vec<TopicFilter>, AuthError> {
                    list.iter()
                        .map(|f| {
                            TopicFilter::new(f)
                                .map_err(|e| invalid(format!("{what} filter {f:?}: {e}")))
                        })
                        .collect()
                };
                let allow = if r.allow.is_empty() {
                    vec![TopicFilter::new("#").expect("a valid filter")]
                } else {
                    parse(&r.allow)?
                };
                Ok(TopicRules::new(allow, parse(&r.deny)?))
            };
            let names = |list: &[String]| {
                if list.is_empty() {
                    NamePatterns::Any
                } else {
                    NamePatterns::new(list.to_vec())
                }
            };
            let principal = Arc::new(Principal {
                name: u.name.clone(),
                perms: Permissions {
                    publish: rules(&u.publish, "publish")?,
                    subscribe: rules(&u.subscribe, "subscribe")?,
                    groups: names(&u.groups),
                    direct: names(&u.direct),
                    stats: u.stats.unwrap_or(true),
                    admin: u.admin,
                },
                client_ids: names(&u.client_ids),
                quotas: Quotas::new(quotas, max_subscriptions, &u.quotas),
            });
            if let Some(uid) = u.uid
                && by_uid.insert(uid, principal.clone()).is_some()
            {
                return Err(invalid(format!("uid {uid} is another user's too")));
            }
            let user = User { secret, principal };
            if users.insert(u.name.clone(), user).is_some() {
                return Err(invalid("the name is used twice".into()));
            }
        }
        Ok(Self {
            users: Some(users),
            by_uid,
            owner_quotas,
        })
    }

    /// Who a peer with `credentials` (user, secret) and socket uid
    /// `peer_uid` is.
    pub(crate) fn authenticate(
        &self,
        credentials: Option<(&str, &[u8])>,
        peer_uid: Option<u32>,
    ) -> Result<Arc<Principal>, HandshakeRefusal> {
        let Some(users) = &self.users else {
            return Ok(Arc::new(Principal {
                name: peer_uid.map_or_else(|| "owner".to_owned(), |uid| format!("uid:{uid}")),
                perms: Permissions::owner(),
                client_ids: NamePatterns::Any,
                quotas: self.owner_quotas,
            }));
        };
        match credentials {
            Some((name, secret)) => {
                let user = users.get(name);
                // The same work whether the user exists or not.
                let verified = match user.and_then(|u| u.secret.as_ref()) {
                    Some(hash) => hash.verify(secret),
                    None => {
                        SecretHash::new(secret, [0; 16]).verify(b"\0");
                        false
                    }
                };
                match user {
                    Some(u) if verified => Ok(u.principal.clone()),
                    _ => Err(HandshakeRefusal::AuthenticationFailed),
                }
            }
            None => peer_uid
                .and_then(|uid| self.by_uid.get(&uid))
                .cloned()
                .ok_or(HandshakeRefusal::AuthenticationFailed),
        }
    }
}

#[cfg(test)]
mod tests;
