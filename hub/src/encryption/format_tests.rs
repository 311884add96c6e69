use proptest::prelude::*;

use super::*;

fn key(id: &str, byte: u8) -> ObjectKey {
    ObjectKey::derive(&[byte; 32], Header::new(id, [7; 16]))
}

#[test]
fn sizes_map_both_ways() {
    for plain in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 5] {
        let cipher = cipher_len(plain);
        assert_eq!(plain_len(cipher), Ok(plain), "plain {plain}");
        assert_eq!(
            seal(key("k", 1), &vec![9; plain as usize]).len() as u64,
            cipher
        );
    }
    // Lengths no plaintext has: too short, or a last chunk as long as a full one.
    assert!(plain_len(HEADER_LEN + TAG - 1).is_err());
    assert!(plain_len(HEADER_LEN + TAG + CHUNK).is_err());
}

#[test]
fn an_object_opens_only_as_it_was_sealed() {
    let plain: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let sealed = seal(key("k1", 1), &plain);
    let header = Header::parse(&sealed).unwrap();
    assert_eq!(header.key_id(), "k1");
    assert_eq!(key("k1", 1).open(&sealed).unwrap(), plain);
    // Another master key.
    assert!(matches!(
        ObjectKey::derive(&[2; 32], header.clone()).open(&sealed),
        Err(FormatError::Authentication(0))
    ));
    // A changed byte in the second chunk.
    let mut changed = sealed.clone();
    changed[(HEADER_LEN + CHUNK + TAG + 10) as usize] ^= 1;
    assert_eq!(
        key("k1", 1).open(&changed),
        Err(FormatError::Authentication(1))
    );
    // Cut after the first chunk: the first chunk is not a last chunk.
    let cut = &sealed[..(HEADER_LEN + CHUNK + TAG) as usize];
    assert!(key("k1", 1).open(cut).is_err());
    // A header naming another key id is the associated data of every chunk.
    let mut renamed = sealed.clone();
    renamed[10] = b'x';
    let forged = Header::parse(&renamed).unwrap();
    assert!(ObjectKey::derive(&[1; 32], forged).open(&renamed).is_err());
    // Plaintext is not an encrypted object.
    assert_eq!(Header::parse(b"PAR1...."), Err(FormatError::NotEncrypted));
}

#[test]
fn no_plaintext_survives_sealing() {
    let plain = b"secret-plant-omega ".repeat(10_000);
    let sealed = seal(key("k", 3), &plain);
    assert!(!sealed.windows(18).any(|w| w == b"secret-plant-omega"));
}

proptest! {
    #[test]
    fn streamed_sealing_and_range_reads_agree(
        len in 0usize..300_000,
        pieces in proptest::collection::vec(1usize..100_000, 1..8),
        a in 0usize..300_000,
        b in 0usize..300_000,
    ) {
        let plain: Vec<u8> = (0..len).map(|i| (i * 31 % 256) as u8).collect();
        let mut sealer = Sealer::new(key("k", 4));
        let mut sealed = Vec::new();
        let mut rest = &plain[..];
        for p in pieces.iter().cycle() {
            if rest.is_empty() { break; }
            let n = (*p).min(rest.len());
            sealed.extend_from_slice(&sealer.push(&rest[..n]));
            rest = &rest[n..];
        }
        sealed.extend_from_slice(&sealer.finish());
        prop_assert_eq!(sealed.len() as u64, cipher_len(len as u64));
        prop_assert_eq!(&key("k", 4).open(&sealed).unwrap(), &plain);
        let (start, end) = (a.min(b).min(len), a.max(b).min(len));
        let range = start as u64..end as u64;
        let (index, cipher) = chunks_for(&range, len as u64);
        let opened = key("k", 4)
            .open_chunks(index.start, &sealed[cipher.start as usize..cipher.end as usize], len as u64)
            .unwrap();
        let from = start - index.start as usize * CHUNK as usize;
        prop_assert_eq!(&opened[from..from + (end - start)], &plain[start..end]);
    }
}
