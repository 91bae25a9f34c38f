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

    /// A protector for the connection's outgoing packets, keyed as its own SRTP context is,
    /// once the DTLS handshake has produced the keys and if they are of a profile this
    /// understands (AES-128-GCM); `None` otherwise.
    pub(crate) fn local_sender(&self) -> Option<SrtpSender> {
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
        SrtpSender::new(self.inner.crypto(), key, &first[..GCM_SALT]).ok()
    }
}

/// SRTP protection (AES-128-GCM, RFC 7714) of one connection's outgoing RTP, in place.
///
/// Hand-written over the provider's AEAD rather than `rtc::srtp`'s `Context`, which keeps
/// each SSRC's state in a hash map and allocates the protected packet: per forwarded copy
/// that was a tenth of the mux thread (issue 6's profile). Here a connection's few streams
/// are a short list and the packet is sealed where it was built. The unit tests check it
/// against `rtc::srtp` byte for byte.
pub(crate) struct SrtpSender {
    aead: Box<dyn AeadCipher>,
    session_salt: [u8; GCM_SALT],
    /// Per SSRC (one per receive slot): the highest packet index sent (48 bits: rollover
    /// counter and sequence). Inline, so a copy touches no other allocation.
    streams: [(u32, u64); crate::RECV_SLOTS],
    streams_len: usize,
}

/// Why a packet was not protected. Only the mux builds the packets, so each is a bug there.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProtectError {
    #[error("the RTP header is longer than the packet, or shorter than 12 bytes")]
    Malformed,
    #[error("more streams than a connection has receive slots")]
    TooManyStreams,
    #[error("sealing: {0}")]
    Crypto(CryptoError),
}

/// The AES-GCM tag SRTP appends (RFC 7714 §7).
pub(crate) const SRTP_GCM_TAG: usize = 16;
/// Key-derivation labels (RFC 3711 §4.3.2).
const LABEL_SRTP_ENCRYPTION: u8 = 0x00;
const LABEL_SRTP_SALT: u8 = 0x02;

impl SrtpSender {
    fn new(
        crypto: &dyn RTCCrypto,
        master_key: &[u8; AES_128],
        master_salt: &[u8],
    ) -> Result<SrtpSender, CryptoError> {
        // RFC 3711 §4.3.3, AES-CM PRF: one block each, the master salt XOR the label at byte 7
        // (index DIV kdr is 0), padded with zeros.
        let derive = |label: u8| -> Result<[u8; AES_128], CryptoError> {
            let mut block = [0u8; AES_128];
            block[..master_salt.len()].copy_from_slice(master_salt);
            block[7] ^= label;
            crypto.block_encrypt(BlockCipherAlgorithm::Aes128, master_key, &mut block)?;
            Ok(block)
        };
        let session_key = derive(LABEL_SRTP_ENCRYPTION)?;
        let salt = derive(LABEL_SRTP_SALT)?;
        let aead = crypto.new_aead(AeadAlgorithm::Aes128Gcm, &session_key)?;
        let mut session_salt = [0u8; GCM_SALT];
        session_salt.copy_from_slice(&salt[..GCM_SALT]);
        Ok(SrtpSender {
            aead,
            session_salt,
            streams: [(0, 0); crate::RECV_SLOTS],
            streams_len: 0,
        })
    }

    /// Protects the RTP packet in `packet` (its header `header_len` bytes long, extensions
    /// included): encrypts the payload and appends the tag.
    pub(crate) fn protect(
        &mut self,
        packet: &mut Vec<u8>,
        header_len: usize,
    ) -> Result<(), ProtectError> {
        if packet.len() < header_len || header_len < 12 {
            return Err(ProtectError::Malformed);
        }
        let seq = u16::from_be_bytes([packet[2], packet[3]]);
        let ssrc = u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]);
        let index = self.index(ssrc, seq).ok_or(ProtectError::TooManyStreams)?;
        let roc = (index >> 16) as u32;
        // RFC 7714 §8.1: 00 00 || SSRC || ROC || SEQ, XOR the session salt.
        let mut nonce = [0u8; GCM_SALT];
        nonce[2..6].copy_from_slice(&ssrc.to_be_bytes());
        nonce[6..10].copy_from_slice(&roc.to_be_bytes());
        nonce[10..12].copy_from_slice(&seq.to_be_bytes());
        for (n, s) in nonce.iter_mut().zip(self.session_salt) {
            *n ^= s;
        }
        let mut tag = [0u8; SRTP_GCM_TAG];
        let (header, payload) = packet.split_at_mut(header_len);
        self.aead
            .seal_in_place(&nonce, header, payload, &mut tag)
            .map_err(ProtectError::Crypto)?;
        packet.extend_from_slice(&tag);
        Ok(())
    }

    /// The packet index of `seq` on stream `ssrc` (RFC 3711 §3.3.1 and appendix A: the
    /// rollover counter guessed from the highest index sent), which becomes the highest if
    /// it is ahead of it.
    /// `None` for a stream past the connection's slots.
    fn index(&mut self, ssrc: u32, seq: u16) -> Option<u64> {
        let known = &mut self.streams[..self.streams_len];
        let Some((_, highest)) = known.iter_mut().find(|(s, _)| *s == ssrc) else {
            let free = self.streams.get_mut(self.streams_len)?;
            *free = (ssrc, u64::from(seq));
            self.streams_len += 1;
            return Some(u64::from(seq));
        };
        let step = i64::from(seq.wrapping_sub(*highest as u16) as i16);
        let index = (*highest as i64 + step).max(0) as u64;
        if step > 0 {
            *highest = index;
        }
        Some(index)
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
    use rtc::shared::marshal::{Marshal, MarshalSize};
    use rtc::srtp::context::Context;
    use rtc::srtp::protection_profile::ProtectionProfile;

    fn packet(seq: u16, level: bool) -> rtp::Packet {
        let mut p = rtp::Packet {
            header: rtp::header::Header {
                version: 2,
                payload_type: 111,
                sequence_number: seq,
                timestamp: 960u32.wrapping_mul(u32::from(seq)),
                ssrc: 0x1234_5678,
                ..Default::default()
            },
            payload: bytes::Bytes::from(vec![seq as u8; 80]),
        };
        if level {
            p.header
                .set_extension(1, bytes::Bytes::from_static(&[0x9e]))
                .unwrap();
        }
        p
    }

    /// Watching `rtc`'s own SRTP code derive a connection's local and then its remote
    /// context, the tap yields a sender that protects packets byte for byte as the local one
    /// does: across a sequence-number wrap, with and without a header extension, and for a
    /// packet that comes a little late.
    #[test]
    fn the_tapped_sender_protects_exactly_like_the_engines_own_context() {
        let provider = rtc::crypto::default_provider().unwrap();
        let tap = KeyTap::new(Arc::clone(&provider));
        assert!(tap.local_sender().is_none(), "nothing derived yet");
        let (key, salt) = ([7u8; 16], [9u8, 1, 2, 3, 4, 5, 6, 77, 8, 9, 10, 11]);
        let profile = ProtectionProfile::AeadAes128Gcm;
        let mut engine_local =
            Context::new(&key, &salt, profile, None, None, tap.crypto()).unwrap();
        let mut engine_remote =
            Context::new(&[3u8; 16], &[4u8; 12], profile, None, None, tap.crypto()).unwrap();
        let mut ours = tap.local_sender().expect("keys of a GCM context were seen");
        let mut seqs: Vec<u16> = (65000..=65535).step_by(7).collect();
        seqs.extend([65535, 0, 1, 2, 70, 69, 71, 40000, 65535, 0, 3]);
        for (i, seq) in seqs.into_iter().enumerate() {
            let p = packet(seq, i % 2 == 0);
            let plain = p.marshal().unwrap();
            let theirs = engine_local.encrypt_rtp(&plain).unwrap();
            let mut mine = plain.to_vec();
            ours.protect(&mut mine, p.header.marshal_size()).unwrap();
            assert_eq!(&theirs[..], &mine[..], "packet {i}, seq {seq}");
            // And not as the remote one would: the tap took the first derivation.
            assert_ne!(&engine_remote.encrypt_rtp(&plain).unwrap()[..], &mine[..]);
        }
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
        assert!(tap.local_sender().is_none());
    }

    /// What the sender cannot protect is refused, not a panic.
    #[test]
    fn what_cannot_be_protected_is_refused() {
        let provider = rtc::crypto::default_provider().unwrap();
        let mut sender = SrtpSender::new(provider.crypto(), &[1; 16], &[2; 12]).unwrap();
        let mut short = vec![0x80u8; 8];
        assert!(matches!(
            sender.protect(&mut short, 12),
            Err(ProtectError::Malformed)
        ));
        assert_eq!(short, vec![0x80u8; 8]);
        // One stream per receive slot; a further SSRC is refused, the others go on.
        for ssrc in 0..=crate::RECV_SLOTS as u32 {
            let mut p = packet(1, false);
            p.header.ssrc = ssrc;
            let mut bytes = p.marshal().unwrap().to_vec();
            let result = sender.protect(&mut bytes, 12);
            if (ssrc as usize) < crate::RECV_SLOTS {
                assert!(result.is_ok());
            } else {
                assert!(matches!(result, Err(ProtectError::TooManyStreams)));
            }
        }
    }
}
