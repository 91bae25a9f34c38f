//! A connection's outgoing SRTP keys, for the mux's forwarding fast path.
//!
//! Issue 6's profile put about half of the server's time per forwarded copy in the `rtc`
//! crate's per-connection write pipeline (sender parameters, every handler and interceptor,
//! queue moves), against under 4 % for the SRTP protection itself. The mux skips that
//! pipeline for forwarded copies: it protects them with its own SRTP context per connection
//! and sends them on its socket. `rtc` 0.21 exposes neither a connection's SRTP context nor
//! its DTLS keying material, but it lets an application supply the crypto provider that
//! builds those contexts. [`KeyTap`] is that provider: it hands every operation to the
//! built-in one and notes the master key and salt that the local context's key derivation
//! passes through it.
//!
//! What it relies on (checked by the unit test below against `rtc`'s own SRTP code, and by
//! the mux's end-to-end tests, whose listeners hear nothing if a key is wrong):
//! - block encryption (AES-128) is used by nothing but SRTP key derivation (RFC 3711 §4.3.1);
//! - a connection derives its local (outgoing) context before its remote one, and for
//!   AES-128-GCM (RFC 7714, the first profile offered) the first derivation is the SRTP
//!   encryption key (label 0), whose input block is the master salt, and the second the SRTCP
//!   encryption key (label 3), with the same master key.
//!
//! When anything else is seen (another profile, an unexpected order), no keys are reported
//! and the connection keeps the pipeline: slower, never wrong.

use std::sync::{Arc, Mutex};

use rtc::crypto::{
    ActiveKeyExchange, AeadAlgorithm, AeadCipher, BlockCipherAlgorithm, CbcAlgorithm, CbcCipher,
    CryptoAlgorithm, CryptoError, HashAlgorithm, HmacAlgorithm, KeyExchangeAlgorithm, Mac,
    PublicKey, RTCCrypto, RTCCryptoProvider, RTCRandom, SignatureScheme, SigningKey, StreamCipher,
    StreamCipherAlgorithm,
};
use rtc::srtp::context::Context;
use rtc::srtp::protection_profile::ProtectionProfile;

/// AES-128: key and block length.
const AES_128: usize = 16;
/// The master salt of the AES-GCM profiles (RFC 7714 §12).
const GCM_SALT: usize = 12;
/// The key-derivation label of the SRTCP encryption key (RFC 3711 §4.3.2).
const LABEL_SRTCP_ENCRYPTION: u8 = 0x03;

/// A crypto provider that delegates everything and remembers the first two key derivations.
pub(crate) struct KeyTap {
    inner: Arc<dyn RTCCryptoProvider>,
    /// (master key, input block) of the first two AES-128 block encryptions.
    seen: Mutex<Vec<([u8; AES_128], [u8; AES_128])>>,
}

impl KeyTap {
    pub(crate) fn new(inner: Arc<dyn RTCCryptoProvider>) -> Arc<KeyTap> {
        Arc::new(KeyTap {
            inner,
            seen: Mutex::new(Vec::with_capacity(2)),
        })
    }

    /// A context that protects packets exactly as the connection's own outgoing one would,
    /// once the DTLS handshake has produced the keys and if they are of a profile this
    /// understands (AES-128-GCM); `None` otherwise.
    pub(crate) fn local_context(&self) -> Option<Context> {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let [(key, first), (key2, second)] = seen.as_slice() else {
            return None;
        };
        // The first block is the salt XOR label 0 (so the salt itself) padded with zeros to
        // 14 bytes, then the two index bytes, 0 here: past the GCM salt's 12, all zero.
        let gcm_srtp_key = first[GCM_SALT..] == [0; AES_128 - GCM_SALT]
            && key == key2
            && second[7] ^ first[7] == LABEL_SRTCP_ENCRYPTION
            && (0..AES_128).all(|i| i == 7 || first[i] == second[i]);
        if !gcm_srtp_key {
            return None;
        }
        Context::new(
            key,
            &first[..GCM_SALT],
            ProtectionProfile::AeadAes128Gcm,
            None,
            None,
            self.inner.crypto(),
        )
        .ok()
    }
}

impl RTCCryptoProvider for KeyTap {
    fn name(&self) -> &'static str {
        "confab-key-tap"
    }

    fn crypto(&self) -> &dyn RTCCrypto {
        self
    }

    fn random(&self) -> &dyn RTCRandom {
        self.inner.random()
    }
}

impl RTCCrypto for KeyTap {
    fn supports(&self, algorithm: CryptoAlgorithm) -> bool {
        self.inner.crypto().supports(algorithm)
    }

    fn hash(&self, algorithm: HashAlgorithm, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.inner.crypto().hash(algorithm, data)
    }

    fn block_encrypt(
        &self,
        algorithm: BlockCipherAlgorithm,
        key: &[u8],
        block: &mut [u8],
    ) -> Result<(), CryptoError> {
        if algorithm == BlockCipherAlgorithm::Aes128
            && let (Ok(k), Ok(b)) = (
                <[u8; AES_128]>::try_from(key),
                <[u8; AES_128]>::try_from(&*block),
            )
        {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            if seen.len() < 2 {
                seen.push((k, b));
            }
        }
        self.inner.crypto().block_encrypt(algorithm, key, block)
    }

    fn new_hmac(&self, algorithm: HmacAlgorithm, key: &[u8]) -> Result<Box<dyn Mac>, CryptoError> {
        self.inner.crypto().new_hmac(algorithm, key)
    }

    fn new_stream_cipher(
        &self,
        algorithm: StreamCipherAlgorithm,
        key: &[u8],
    ) -> Result<Box<dyn StreamCipher>, CryptoError> {
        self.inner.crypto().new_stream_cipher(algorithm, key)
    }

    fn new_aead(
        &self,
        algorithm: AeadAlgorithm,
        key: &[u8],
    ) -> Result<Box<dyn AeadCipher>, CryptoError> {
        self.inner.crypto().new_aead(algorithm, key)
    }

    fn new_cbc(
        &self,
        algorithm: CbcAlgorithm,
        key: &[u8],
    ) -> Result<Box<dyn CbcCipher>, CryptoError> {
        self.inner.crypto().new_cbc(algorithm, key)
    }

    fn start_key_exchange(
        &self,
        algorithm: KeyExchangeAlgorithm,
    ) -> Result<Box<dyn ActiveKeyExchange>, CryptoError> {
        self.inner.crypto().start_key_exchange(algorithm)
    }

    fn generate_signing_key(
        &self,
        scheme: SignatureScheme,
    ) -> Result<Arc<dyn SigningKey>, CryptoError> {
        self.inner.crypto().generate_signing_key(scheme)
    }

    fn import_signing_key(
        &self,
        scheme: SignatureScheme,
        pkcs8_der: &[u8],
    ) -> Result<Arc<dyn SigningKey>, CryptoError> {
        self.inner.crypto().import_signing_key(scheme, pkcs8_der)
    }

    fn verify_signature(
        &self,
        scheme: SignatureScheme,
        public_key: PublicKey<'_>,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), CryptoError> {
        self.inner
            .crypto()
            .verify_signature(scheme, public_key, message, signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::rtp;
    use rtc::shared::marshal::Marshal;

    fn packet(seq: u16) -> rtp::Packet {
        rtp::Packet {
            header: rtp::header::Header {
                version: 2,
                payload_type: 111,
                sequence_number: seq,
                timestamp: 960 * u32::from(seq),
                ssrc: 0x1234_5678,
                ..Default::default()
            },
            payload: bytes::Bytes::from(vec![seq as u8; 80]),
        }
    }

    /// The tap, watching `rtc`'s own SRTP code derive a local and then a remote context,
    /// yields a context that protects packets byte for byte as the local one does.
    #[test]
    fn the_tapped_context_protects_exactly_like_the_engines_own() {
        let provider = rtc::crypto::default_provider().unwrap();
        let tap = KeyTap::new(Arc::clone(&provider));
        assert!(tap.local_context().is_none(), "nothing derived yet");
        let (key, salt) = ([7u8; 16], [9u8, 1, 2, 3, 4, 5, 6, 77, 8, 9, 10, 11]);
        let profile = ProtectionProfile::AeadAes128Gcm;
        let mut engine_local =
            Context::new(&key, &salt, profile, None, None, tap.crypto()).unwrap();
        let _engine_remote =
            Context::new(&[3u8; 16], &[4u8; 12], profile, None, None, tap.crypto()).unwrap();
        let mut ours = tap
            .local_context()
            .expect("keys of a GCM context were seen");
        for seq in [1u16, 2, 65535, 0, 1] {
            let p = packet(seq);
            let plain = p.marshal().unwrap();
            let a = engine_local.encrypt_rtp(&plain).unwrap();
            let b = ours.encrypt_rtp_with_header(&plain, &p.header).unwrap();
            assert_eq!(a, b, "seq {seq}");
        }
        // And not like the remote one: the tap took the first derivation, not the last.
        let mut remote = Context::new(
            &[3u8; 16],
            &[4u8; 12],
            profile,
            None,
            None,
            provider.crypto(),
        )
        .unwrap();
        let p = packet(5);
        let plain = p.marshal().unwrap();
        assert_ne!(
            remote.encrypt_rtp(&plain).unwrap(),
            tap.local_context().unwrap().encrypt_rtp(&plain).unwrap()
        );
    }

    /// Keys of a profile the fast path does not handle are not reported.
    #[test]
    fn other_profiles_are_left_to_the_engine() {
        let provider = rtc::crypto::default_provider().unwrap();
        let tap = KeyTap::new(provider);
        let _ = Context::new(
            &[7u8; 16],
            &[9u8; 14],
            ProtectionProfile::Aes128CmHmacSha1_80,
            None,
            None,
            tap.crypto(),
        )
        .unwrap();
        assert!(tap.local_context().is_none());
    }
}
