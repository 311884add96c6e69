//! Tests of the codec: hand-made packets, and properties over any bytes.

use super::*;

fn frame(bytes: &[u8]) -> Frame {
    test_frame(bytes)
}

fn with_header(first: u8, body: &[u8]) -> Vec<u8> {
    encode_frame(first, body).to_vec()
}

#[test]
fn header_limits() {
    assert_eq!(parse_header(&[0x30], 100), Ok(None));
    assert_eq!(parse_header(&[0x30, 0x80], 100), Ok(None));
    assert_eq!(parse_header(&[0x30, 5], 100), Ok(Some((2, 7))));
    assert_eq!(
        parse_header(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01], usize::MAX),
        Err(CodecError::BadLength)
    );
    assert!(matches!(
        parse_header(&[0x30, 0x80, 0x01], 100),
        Err(CodecError::TooLarge {
            size: 131,
            max: 100
        })
    ));
}

#[test]
fn connect_v4_with_login() {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0xC2, 0, 60];
    body.extend_from_slice(&[0, 2, b'i', b'd', 0, 1, b'u', 0, 2, b'p', b'w']);
    let info = parse_connect(&frame(&with_header(0x10, &body))).expect("connect");
    assert_eq!(info.level, ProtocolLevel::V4);
    assert_eq!(info.client_id, "id");
    assert_eq!(info.username.as_deref(), Some("u"));
    assert_eq!(info.password.as_deref(), Some(&b"pw"[..]));
}

#[test]
fn connect_v5_maximum_packet_size() {
    let connect = |props: &[u8]| {
        let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 60];
        body.push(props.len() as u8);
        body.extend_from_slice(props);
        body.extend_from_slice(&[0, 1, b'c']);
        parse_connect(&frame(&with_header(0x10, &body)))
    };
    assert_eq!(connect(&[]).expect("none").max_packet, None);
    let info = connect(&[0x11, 0, 0, 0, 10, 0x27, 0, 1, 0, 64]).expect("connect");
    assert_eq!(info.max_packet, Some(65_600));
    assert_eq!(info.client_id, "c");
    assert_eq!(
        connect(&[0x27, 0, 0, 0, 0]),
        Err(CodecError::ZeroProperty(0x27))
    );
    assert_eq!(
        connect(&[0x21, 0, 5]).expect("receive max").receive_max,
        Some(5)
    );
    assert_eq!(connect(&[0x21, 0, 0]), Err(CodecError::ZeroProperty(0x21)));
    assert_eq!(connect(&[0x27, 0, 0]), Err(CodecError::Truncated));
}

#[test]
fn connect_v5_with_will_and_properties() {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 5, 0x86, 0, 60];
    body.extend_from_slice(&[5, 0x11, 0, 0, 0, 10]); // session expiry
    body.extend_from_slice(&[0, 1, b'c']);
    body.extend_from_slice(&[2, 0x01, 1]); // will properties
    body.extend_from_slice(&[0, 1, b't', 0, 1, b'x']);
    body.extend_from_slice(&[0, 1, b'u']);
    let info = parse_connect(&frame(&with_header(0x10, &body))).expect("connect");
    assert_eq!(info.level, ProtocolLevel::V5);
    assert_eq!(info.client_id, "c");
    assert_eq!(info.username.as_deref(), Some("u"));
    assert_eq!(info.password, None);

    // The client id can be replaced; everything around it is kept.
    let original = frame(&with_header(0x10, &body));
    let long = "x".repeat(300);
    let rewritten = with_client_id(&original, &info.client_id_at, &long).expect("rewrite");
    let again = parse_connect(&frame(&rewritten)).expect("still a CONNECT");
    assert_eq!(again.client_id, long);
    assert_eq!(again.username.as_deref(), Some("u"));
    assert_eq!(again.level, ProtocolLevel::V5);
    let back = with_client_id(&frame(&rewritten), &again.client_id_at, "c").expect("rewrite");
    assert_eq!(back, original.bytes);
}

#[test]
fn login_is_replaced() {
    // 3.1.1 with a will and a login; 5 with properties and no login.
    let mut v4 = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0xC6, 0, 60];
    v4.extend_from_slice(&[0, 2, b'i', b'd', 0, 1, b't', 0, 1, b'x']);
    v4.extend_from_slice(&[0, 1, b'u', 0, 2, b'p', b'w']);
    let mut v5 = vec![0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 0, 0];
    v5.extend_from_slice(&[0, 1, b'c']);
    for body in [v4, v5] {
        let original = frame(&with_header(0x10, &body));
        let info = parse_connect(&original).expect("connect");
        let long = "p".repeat(200);
        let patched = with_login(&original, &info, "gate", &long).expect("login");
        let again = parse_connect(&patched).expect("still a CONNECT");
        assert_eq!(again.username.as_deref(), Some("gate"));
        assert_eq!(again.password.as_deref(), Some(long.as_bytes()));
        assert_eq!(again.client_id, info.client_id);
        assert_eq!(
            (again.level, again.keep_alive),
            (info.level, info.keep_alive)
        );
        assert_eq!(
            &patched.bytes[patched.header_len..again.login_at],
            {
                let mut kept = original.bytes[original.header_len..info.login_at].to_vec();
                kept[7] |= 0xC0;
                kept
            },
            "everything before the login is kept (flags aside)"
        );
    }
}

#[test]
fn keep_alive_is_read_and_replaced() {
    for (level, props) in [(4u8, &[][..]), (5, &[0u8][..])] {
        let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', level, 0x02, 0, 0];
        body.extend_from_slice(props);
        body.extend_from_slice(&[0, 2, b'i', b'd']);
        let original = frame(&with_header(0x10, &body));
        let info = parse_connect(&original).expect("connect");
        assert_eq!(info.keep_alive, 0);
        let patched = with_keep_alive(&original, info.keep_alive_at, u16::MAX).expect("patch");
        let again = parse_connect(&patched).expect("still a CONNECT");
        assert_eq!(again.keep_alive, u16::MAX);
        assert_eq!(again.client_id, "id");
        assert_eq!(patched.bytes.len(), original.bytes.len());
    }
    let short = frame(&[0x10, 0x01, 0x00]);
    assert_eq!(
        with_keep_alive(&short, 2, 1).map(|f| f.bytes),
        Err(CodecError::Truncated)
    );
    assert_eq!(
        with_keep_alive(&short, 0, 1).map(|f| f.bytes),
        Err(CodecError::Truncated),
        "never inside the fixed header"
    );
}

#[test]
fn connect_v3_is_recognised() {
    let body = [
        0, 6, b'M', b'Q', b'I', b's', b'd', b'p', 3, 2, 0, 60, 0, 1, b'c',
    ];
    let original = frame(&with_header(0x10, &body));
    let info = parse_connect(&original).expect("connect");
    assert_eq!(info.level, ProtocolLevel::V3);
    assert_eq!((info.client_id.as_str(), info.keep_alive), ("c", 60));

    // Handed on as 3.1.1, with the same flags, keep alive and id.
    let v311 = v31_as_v311(&original).expect("3.1.1");
    let again = parse_connect(&v311).expect("a 3.1.1 CONNECT");
    assert_eq!(again.level, ProtocolLevel::V4);
    assert_eq!((again.client_id.as_str(), again.keep_alive), ("c", 60));
    assert_eq!(&v311.bytes[v311.header_len + 7..], &body[9..]);
    assert_eq!(
        v31_as_v311(&frame(&[0x10, 0x02, 0, 6])).map(|f| f.bytes),
        Err(CodecError::Truncated)
    );

    // Its CONNACK carries no session-present flag.
    let connack = frame(&[0x20, 0x02, 0x01, 0x00]);
    assert_eq!(connack_as_v31(&connack).as_ref(), &[0x20, 0x02, 0x00, 0x00]);
}

#[test]
fn publish_v5_alias() {
    let mut aliases = TopicAliases::default();
    let first = [0, 3, b'a', b'/', b'b', 0, 7, 3, 0x23, 0, 9, b'x'];
    let p = parse_publish(&frame(&with_header(0x32, &first)), true, &mut aliases).expect("publish");
    assert_eq!((p.topic.as_str(), p.pkid, p.qos), ("a/b", 7, 1));
    assert_eq!(&p.payload[..], b"x");
    let second = [0, 0, 0, 8, 3, 0x23, 0, 9, b'y'];
    let p =
        parse_publish(&frame(&with_header(0x3A, &second)), true, &mut aliases).expect("publish");
    assert_eq!((p.topic.as_str(), p.dup), ("a/b", true));
    let unknown = [0, 0, 0, 8, 3, 0x23, 0, 4, b'y'];
    assert_eq!(
        parse_publish(&frame(&with_header(0x32, &unknown)), true, &mut aliases),
        Err(CodecError::UnknownAlias(4))
    );
    for bad in [0u16, 4097, u16::MAX] {
        let [hi, lo] = bad.to_be_bytes();
        let publish = [0, 3, b'a', b'/', b'b', 0, 8, 3, 0x23, hi, lo, b'y'];
        assert_eq!(
            parse_publish(&frame(&with_header(0x32, &publish)), true, &mut aliases),
            Err(CodecError::InvalidAlias(bad))
        );
    }
    let last = [0, 3, b'c', b'/', b'd', 0, 8, 3, 0x23, 0x10, 0x00, b'z'];
    let p = parse_publish(&frame(&with_header(0x32, &last)), true, &mut aliases).expect("4096");
    assert_eq!(p.topic, "c/d");
}

#[test]
fn publish_garbage_never_panics() {
    let mut aliases = TopicAliases::default();
    for len in 0..12 {
        for first in [0x30, 0x32, 0x34, 0x36, 0x10] {
            let body: Vec<u8> = (0..len).map(|i| (i * 37 + 250) as u8).collect();
            let f = frame(&with_header(first, &body));
            let _ = parse_publish(&f, true, &mut aliases);
            let _ = parse_publish(&f, false, &mut aliases);
            let _ = parse_connect(&f);
            let _ = f.ack_pkid();
        }
    }
}

#[tokio::test]
async fn reader_splits_frames_and_rejects_large() {
    let data: Vec<u8> = [with_header(0xC0, &[]), with_header(0x30, b"\0\x01ab")].concat();
    let mut reader = FrameReader::new(&data[..], 100);
    let a = reader.next().await.expect("read").expect("frame");
    assert_eq!(a.packet_type(), 12);
    let b = reader.next().await.expect("read").expect("frame");
    assert_eq!(b.packet_type(), PUBLISH);
    assert!(reader.next().await.expect("eof").is_none());
    let big = with_header(0x30, &[0; 200]);
    let mut reader = FrameReader::new(&big[..], 100);
    assert!(matches!(
        reader.next().await,
        Err(ReadError::Codec(CodecError::TooLarge { .. }))
    ));
}

mod prop {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Any bytes: the CONNECT path of the gate (parse, keep-alive patch,
        /// 3.1 translation, CONNACK rewrite) returns errors, never panics,
        /// and what it builds still parses.
        #[test]
        fn connect_path_never_panics(
            head in prop_oneof![
                Just(&b"\x00\x06MQIsdp\x03"[..]),
                Just(&b"\x00\x04MQTT\x04"[..]),
                Just(&b"\x00\x04MQTT\x05"[..]),
                Just(&b""[..]),
            ],
            keep_alive in any::<u16>(),
            id in "[a-z0-9]{0,30}",
            valid in any::<bool>(),
            tail in proptest::collection::vec(any::<u8>(), 0..64),
            first in prop_oneof![Just(0x10u8), any::<u8>()],
        ) {
            // Either a well-formed clean-session CONNECT after `head`, then
            // `tail`, or `tail` alone after `head`.
            let mut body = head.to_vec();
            if valid {
                body.push(0x02);
                body.extend_from_slice(&keep_alive.to_be_bytes());
                if head.last() == Some(&5) {
                    body.push(0); // no properties
                }
                body.extend_from_slice(&u16::try_from(id.len()).unwrap_or(0).to_be_bytes());
                body.extend_from_slice(id.as_bytes());
            }
            body.extend_from_slice(&tail);
            let frame = test_frame(&encode_frame(first, &body));
            if let Ok(info) = parse_connect(&frame) {
                if let Ok(logged_in) = with_login(&frame, &info, "gate", "secret") {
                    let again = parse_connect(&logged_in).expect("a login patch still parses");
                    prop_assert_eq!(again.password.as_deref(), Some(&b"secret"[..]));
                    prop_assert_eq!(again.client_id, info.client_id.clone());
                }
                if let Ok(patched) = with_keep_alive(&frame, info.keep_alive_at, u16::MAX) {
                    prop_assert_eq!(parse_connect(&patched).map(|i| i.keep_alive), Ok(u16::MAX));
                }
                if info.level == ProtocolLevel::V3 {
                    let v311 = v31_as_v311(&frame).expect("a parsed 3.1 CONNECT translates");
                    let again = parse_connect(&v311).expect("and parses as 3.1.1");
                    prop_assert_eq!(again.level, ProtocolLevel::V4);
                    prop_assert_eq!(again.client_id, info.client_id);
                }
            }
            let _ = connack_as_v31(&frame);
        }
    }
}
