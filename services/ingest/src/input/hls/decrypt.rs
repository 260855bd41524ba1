//! AES-128 segments (`EXT-X-KEY:METHOD=AES-128`, RFC 8216 5.2): each
//! segment is AES-128-CBC with PKCS#7 padding as a whole, under a 16-byte
//! key fetched from the key's URI, with the tag's IV or the segment's media
//! sequence number. The padding is only known at the end, so an encrypted
//! segment is fetched whole (within the muxed-segment cap) and decrypted at
//! once. Keys are kept by URL, the last [`KEYS_KEPT`], since a playlist
//! names the same key for many segments and rotates through a few.

use std::collections::VecDeque;
use std::sync::Mutex;

use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockDecryptMut, KeyIvInit};

/// Keys remembered.
const KEYS_KEPT: usize = 8;

type Decryptor = cbc::Decryptor<aes::Aes128>;

/// Decrypts a segment in place. A wrong key or IV shows up as bad padding
/// or as bytes that are no transport stream: both are errors, so a key
/// mix-up never feeds noise to the segmenter.
pub fn decrypt(data: &mut Vec<u8>, key: &[u8; 16], iv: &[u8; 16]) -> Result<(), String> {
    let wrong = "does not decrypt with its key (wrong key or IV, or not AES-128-CBC)";
    let len = Decryptor::new(key.into(), iv.into())
        .decrypt_padded_mut::<Pkcs7>(data)
        .map_err(|_| wrong.to_owned())?
        .len();
    data.truncate(len);
    if data.first().is_some_and(|&b| b != dvr_media::ts::SYNC_BYTE) {
        return Err(format!("{wrong}: the result is not MPEG-TS"));
    }
    Ok(())
}

/// The keys fetched lately, by URL.
#[derive(Debug, Default)]
pub struct KeyCache(Mutex<VecDeque<(String, [u8; 16])>>);

impl KeyCache {
    /// The key fetched from `url`, if it is still kept.
    pub fn get(&self, url: &str) -> Option<[u8; 16]> {
        let keys = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        keys.iter().find(|(u, _)| u == url).map(|(_, k)| *k)
    }

    /// Keeps `key` for `url`, forgetting the oldest past [`KEYS_KEPT`].
    pub fn insert(&self, url: &str, key: [u8; 16]) {
        let mut keys = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        keys.retain(|(u, _)| u != url);
        if keys.len() >= KEYS_KEPT {
            keys.pop_front();
        }
        keys.push_back((url.to_owned(), key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes::cipher::BlockEncryptMut;

    fn encrypt(plain: &[u8], key: &[u8; 16], iv: &[u8; 16]) -> Vec<u8> {
        let mut buf = plain.to_vec();
        buf.resize(plain.len() + 16, 0);
        let len = cbc::Encryptor::<aes::Aes128>::new(key.into(), iv.into())
            .encrypt_padded_mut::<Pkcs7>(&mut buf, plain.len())
            .unwrap()
            .len();
        buf.truncate(len);
        buf
    }

    #[test]
    fn decrypts_with_the_right_key_and_refuses_the_wrong_one() {
        let plain: Vec<u8> = std::iter::once(0x47)
            .chain((0..375).map(|i| i as u8))
            .collect();
        let (key, iv) = ([7; 16], [9; 16]);
        let mut data = encrypt(&plain, &key, &iv);
        assert_ne!(data[..plain.len()], plain[..]);
        decrypt(&mut data, &key, &iv).unwrap();
        assert_eq!(data, plain);
        let mut data = encrypt(&plain, &key, &iv);
        let e = decrypt(&mut data, &[8; 16], &iv).unwrap_err();
        assert!(e.contains("does not decrypt"), "{e}");
        // Not a whole number of blocks.
        let mut short = vec![0u8; 17];
        assert!(decrypt(&mut short, &key, &iv).is_err());
    }

    #[test]
    fn keeps_the_latest_keys() {
        let cache = KeyCache::default();
        for i in 0..=KEYS_KEPT {
            cache.insert(&format!("k{i}"), [i as u8; 16]);
        }
        assert_eq!(cache.get("k0"), None, "the oldest went");
        assert_eq!(
            cache.get(&format!("k{KEYS_KEPT}")),
            Some([KEYS_KEPT as u8; 16])
        );
    }
}
