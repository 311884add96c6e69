use std::sync::Arc;

use super::*;

const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

#[test]
fn entries_parse_and_errors_never_show_a_key() {
    let source = KeySource::Env("K".to_owned());
    let set = parse(&format!("# c\na:{HEX}, b:{HEX}\n"), &source).unwrap();
    assert_eq!(set.active().id(), "b");
    assert_eq!(set.keys().len(), 2);
    for bad in [
        format!("{HEX}:{HEX}"), // swapped: the key where the id goes
        format!("a:{}", &HEX[..60]),
        format!("a:{HEX}\na:{HEX}"),
        "  # nothing\n".to_owned(),
    ] {
        let err = parse(&bad, &source).unwrap_err().to_string();
        assert!(!err.contains(&HEX[..16]), "{err}");
    }
    // Debug shows ids only.
    assert!(!format!("{set:?}").contains(&HEX[..16]));
}

#[test]
fn a_key_file_is_created_private_and_rotations_never_lose_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.keys");
    let ring = Arc::new(Keyring::load(KeySource::File(path.clone())).unwrap());
    assert!(ring.created());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let first = ring.current().active().id().to_owned();
    // Concurrent rotations: each appends its own key, none is lost.
    let rotated: Vec<Rotated> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let ring = Arc::clone(&ring);
                s.spawn(move || ring.rotate().unwrap())
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let reread = Keyring::load(KeySource::File(path.clone())).unwrap();
    assert!(!reread.created());
    let ids: Vec<String> = reread
        .current()
        .keys()
        .iter()
        .map(|k| k.id().to_owned())
        .collect();
    assert_eq!(ids.len(), 5, "{ids:?}");
    assert_eq!(ids[0], first);
    for r in &rotated {
        assert!(r.generated);
        assert!(ids.contains(&r.active), "{ids:?}");
        // The running keyring and the file agree on each key's bytes.
        assert_eq!(
            ring.current().get(&r.active).unwrap().fingerprint(),
            reread.current().get(&r.active).unwrap().fingerprint()
        );
    }
    assert_eq!(ring.current().active().id(), ids[4]);
    // No temporary file is left beside the key file.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn environment_keys_cannot_be_rotated_by_the_hub() {
    let ring = Keyring::from_text(&format!("a:{HEX}")).unwrap();
    assert!(matches!(
        ring.rotate(),
        Err(KeyError::Invalid { .. } | KeyError::NothingNew(_))
    ));
}
