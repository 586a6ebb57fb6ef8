//! A client's credentials for a broker with an auth file: a user name and
//! its secret, read from a file or the environment, never from a command
//! line (where every user of the machine could read it).

use std::path::{Path, PathBuf};

/// The environment variable that holds `user:secret`.
pub const CREDENTIALS_ENV: &str = "EVENTBUS_CREDENTIALS";

/// The environment variable that names a file holding `user:secret`.
pub const CREDENTIALS_FILE_ENV: &str = "EVENTBUS_CREDENTIALS_FILE";

/// A user of the broker's auth file and its secret; `Debug` does not show
/// the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    user: String,
    secret: Vec<u8>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// Why credentials could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialsError {
    /// The file could not be read.
    #[error("cannot read credentials file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The text is not `user:secret` with both parts non-empty.
    #[error("credentials must be \"user:secret\" ({0})")]
    Malformed(&'static str),
}

impl Credentials {
    /// `user` with `secret`.
    pub fn new(user: impl Into<String>, secret: impl Into<Vec<u8>>) -> Self {
        Self {
            user: user.into(),
            secret: secret.into(),
        }
    }

    /// The user.
    pub fn user(&self) -> &str {
        &self.user
    }

    pub(crate) fn secret(&self) -> &[u8] {
        &self.secret
    }

    /// Parses `user:secret` (one line; surrounding whitespace ignored).
    pub fn parse(text: &str) -> Result<Self, CredentialsError> {
        let (user, secret) = text
            .trim()
            .split_once(':')
            .ok_or(CredentialsError::Malformed("no ':'"))?;
        if user.is_empty() {
            return Err(CredentialsError::Malformed("the user is empty"));
        }
        if secret.is_empty() {
            return Err(CredentialsError::Malformed("the secret is empty"));
        }
        Ok(Self::new(user, secret.as_bytes()))
    }

    /// Reads `user:secret` from a file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, CredentialsError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| CredentialsError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text)
    }

    /// From `$EVENTBUS_CREDENTIALS` (`user:secret`), else the file named by
    /// `$EVENTBUS_CREDENTIALS_FILE`; `Ok(None)` when neither is set.
    pub fn from_env() -> Result<Option<Self>, CredentialsError> {
        if let Some(text) = std::env::var_os(CREDENTIALS_ENV).filter(|v| !v.is_empty()) {
            return Self::parse(&text.to_string_lossy()).map(Some);
        }
        match std::env::var_os(CREDENTIALS_FILE_ENV).filter(|v| !v.is_empty()) {
            Some(path) => Self::from_file(PathBuf::from(path)).map(Some),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_parse_and_keep_their_secret_out_of_debug() {
        let c = Credentials::parse(" procmond:s3cr:et\n").unwrap();
        assert_eq!((c.user(), c.secret()), ("procmond", &b"s3cr:et"[..]));
        assert!(!format!("{c:?}").contains("s3cr"));
        for bad in ["nouser", ":secret", "user:", ""] {
            assert!(Credentials::parse(bad).is_err(), "{bad:?}");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("creds");
        std::fs::write(&path, "agent:token\n").unwrap();
        assert_eq!(Credentials::from_file(&path).unwrap().user(), "agent");
        assert!(Credentials::from_file(dir.path().join("missing")).is_err());
    }
}
