//! Where a secret (password, bearer token) comes from. The config file names the source,
//! never the secret itself, and the value is read only when it is used.

use std::fmt;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};

/// A reference to a secret, never its value.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// A file holding the secret (trailing newline ignored).
    File(PathBuf),
    /// An environment variable holding the secret.
    Env(String),
    /// A systemd credential (`LoadCredential=`), read from `$CREDENTIALS_DIRECTORY/<name>`.
    Credential(String),
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::File(p) => write!(f, "file:{}", p.display()),
            SecretSource::Env(v) => write!(f, "env:{v}"),
            SecretSource::Credential(c) => write!(f, "credential:{c}"),
        }
    }
}

/// A secret value whose `Debug` and `Display` never show it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret obtained at run time (an OAuth access token).
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl SecretSource {
    /// Reads the secret now.
    pub fn read(&self) -> Result<Secret> {
        let raw = match self {
            SecretSource::File(path) => {
                std::fs::read_to_string(path).with_context(|| format!("reading secret file {}", path.display()))?
            }
            SecretSource::Env(var) => std::env::var(var)
                .with_context(|| format!("environment variable {var} (named in the config) is not set"))?,
            SecretSource::Credential(name) => {
                let dir = std::env::var_os("CREDENTIALS_DIRECTORY").with_context(|| {
                    format!("credential `{name}` is configured but $CREDENTIALS_DIRECTORY is not set (use LoadCredential= in the unit)")
                })?;
                let path = PathBuf::from(dir).join(name);
                std::fs::read_to_string(&path).with_context(|| format!("reading credential {}", path.display()))?
            }
        };
        let value = raw.trim_end_matches(['\r', '\n']).to_owned();
        if value.is_empty() {
            bail!("secret from {self:?} is empty");
        }
        Ok(Secret(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret("hunter2".into());
        assert_eq!(format!("{s:?}"), "Secret(***)");
    }

    #[test]
    fn file_secret_drops_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pw");
        std::fs::write(&p, "s3cret\n").unwrap();
        assert_eq!(SecretSource::File(p).read().unwrap().expose(), "s3cret");
    }

    #[test]
    fn missing_env_names_the_variable() {
        let err = SecretSource::Env("RAPPORT_TEST_SURELY_UNSET".into())
            .read()
            .unwrap_err();
        assert!(format!("{err:#}").contains("RAPPORT_TEST_SURELY_UNSET"));
    }
}
