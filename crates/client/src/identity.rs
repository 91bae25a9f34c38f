//! This device's identity: an Ed25519 key that signs the server's challenges (see the server's
//! `accounts` module for what is signed), and the calls that register an account or sign in.
//!
//! The key lives in the OS keychain (the Secret Service on Linux, the Keychain on macOS, the
//! Credential Manager on Windows) under service `confab` and the profile's name. Where there is
//! no keychain (a headless machine, a locked or absent Secret Service) it lives in a file that
//! only its owner can read (0600). Once a profile has a key file it keeps using it, so a
//! keychain appearing later does not change the device's identity.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use confab_proto::{ApiError, Challenge, RegisterRequest, Session, SignInRequest};
use ed25519_dalek::{Signer, SigningKey};
use rand::RngExt as _;

/// The keychain service name.
pub const KEYRING_SERVICE: &str = "confab";

/// Where a device key is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyHome {
    /// The OS keychain, under [`KEYRING_SERVICE`] and this account name.
    Keychain(String),
    /// A file readable only by its owner.
    File(PathBuf),
}

/// Why the device key could not be loaded or kept.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("the device key in {0} is damaged (not 32 bytes); move it away to make a new one")]
    Damaged(String),
    #[error("the device key file {path} is readable by others (mode {mode:o}); make it 0600")]
    Exposed { path: PathBuf, mode: u32 },
    #[error("keeping the device key in {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// This device's signing key.
pub struct DeviceKey {
    key: SigningKey,
    home: KeyHome,
}

impl std::fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret half.
        f.debug_struct("DeviceKey")
            .field("public", &self.public_key())
            .field("home", &self.home)
            .finish()
    }
}

impl DeviceKey {
    /// The key of profile `profile`: from `fallback` if that file exists, else from the
    /// keychain, else a new one kept in the keychain or, failing that, in `fallback` (0600).
    pub fn load_or_create(profile: &str, fallback: &Path) -> Result<DeviceKey, IdentityError> {
        if fallback.exists() {
            return Self::from_file(fallback);
        }
        match keyring::Entry::new(KEYRING_SERVICE, profile) {
            Ok(entry) => match entry.get_secret() {
                Ok(secret) => {
                    let bytes: [u8; 32] = secret
                        .try_into()
                        .map_err(|_| IdentityError::Damaged(format!("the keychain ({profile})")))?;
                    return Ok(DeviceKey {
                        key: SigningKey::from_bytes(&bytes),
                        home: KeyHome::Keychain(profile.to_owned()),
                    });
                }
                Err(keyring::Error::NoEntry) => {
                    let key = fresh();
                    match entry.set_secret(&key.to_bytes()) {
                        Ok(()) => {
                            return Ok(DeviceKey {
                                key,
                                home: KeyHome::Keychain(profile.to_owned()),
                            });
                        }
                        Err(e) => {
                            tracing::info!(error = %e, "no keychain to keep the device key in; using a file")
                        }
                    }
                }
                Err(e) => {
                    tracing::info!(error = %e, "no keychain to read the device key from; using a file")
                }
            },
            Err(e) => tracing::info!(error = %e, "no keychain; using a file for the device key"),
        }
        Self::create_file(fallback)
    }

    fn from_file(path: &Path) -> Result<DeviceKey, IdentityError> {
        let io = |source| IdentityError::File {
            path: path.to_owned(),
            source,
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(IdentityError::Exposed {
                    path: path.to_owned(),
                    mode,
                });
            }
        }
        let bytes: [u8; 32] = std::fs::read(path)
            .map_err(io)?
            .try_into()
            .map_err(|_| IdentityError::Damaged(path.display().to_string()))?;
        Ok(DeviceKey {
            key: SigningKey::from_bytes(&bytes),
            home: KeyHome::File(path.to_owned()),
        })
    }

    fn create_file(path: &Path) -> Result<DeviceKey, IdentityError> {
        use std::io::Write as _;
        let io = |source| IdentityError::File {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let key = fresh();
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(io)?;
        file.write_all(&key.to_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(DeviceKey {
            key,
            home: KeyHome::File(path.to_owned()),
        })
    }

    /// Where the key is kept.
    pub fn home(&self) -> &KeyHome {
        &self.home
    }

    /// The public key as the server takes it (32 bytes, unpadded base64url).
    pub fn public_key(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.key.verifying_key().to_bytes())
    }

    /// A signature of `text` as the server takes it (64 bytes, unpadded base64url).
    pub fn sign(&self, text: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(self.key.sign(text).to_bytes())
    }

    /// Registers `handle` for this device on the server at `url`, signed in.
    pub async fn register(
        &self,
        http: &reqwest::Client,
        url: &str,
        handle: &str,
        display_name: &str,
    ) -> Result<Session, AccountCallError> {
        let challenge = self.challenge(http, url).await?;
        let handle_lower = handle.trim().to_ascii_lowercase();
        let text = format!("confab-auth-v1\nregister\n{challenge}\n{handle_lower}");
        let body = RegisterRequest {
            handle: handle_lower,
            display_name: display_name.to_owned(),
            signature: self.sign(text.as_bytes()),
            challenge,
        };
        answer(http.post(format!("{url}/api/accounts")).json(&body)).await
    }

    /// Signs this device in on the server at `url`.
    pub async fn sign_in(
        &self,
        http: &reqwest::Client,
        url: &str,
    ) -> Result<Session, AccountCallError> {
        let challenge = self.challenge(http, url).await?;
        let text = format!("confab-auth-v1\nsign-in\n{challenge}");
        let body = SignInRequest {
            signature: self.sign(text.as_bytes()),
            challenge,
        };
        answer(http.post(format!("{url}/api/auth/sign-in")).json(&body)).await
    }

    async fn challenge(
        &self,
        http: &reqwest::Client,
        url: &str,
    ) -> Result<String, AccountCallError> {
        let body = serde_json::json!({ "public_key": self.public_key() });
        let c: Challenge =
            answer(http.post(format!("{url}/api/auth/challenge")).json(&body)).await?;
        Ok(c.challenge)
    }
}

/// Why an account call failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountCallError {
    #[error("the server refused ({:?}): {}", .0.code, .0.message)]
    Refused(ApiError),
    #[error("could not reach the server: {0}")]
    Http(#[from] reqwest::Error),
}

async fn answer<T: serde::de::DeserializeOwned>(
    request: reqwest::RequestBuilder,
) -> Result<T, AccountCallError> {
    let response = request.send().await?;
    if response.status().is_success() {
        Ok(response.json().await?)
    } else {
        Err(AccountCallError::Refused(response.json().await?))
    }
}

fn fresh() -> SigningKey {
    let seed: [u8; 32] = rand::rng().random();
    SigningKey::from_bytes(&seed)
}

/// The default fallback file for a profile's key, inside its data directory.
pub fn key_file(profile_dir: &Path) -> PathBuf {
    profile_dir.join("device-key")
}
