//! The engine through whole exchanges, after the Paho interoperability
//! suite's MQTT 5 cases that rumqttd fails (decision 0023): offline
//! queueing, session expiry, wills and their delay, retained messages with
//! Retain Handling and Retain As Published, takeover, and the bounds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::broker::{Ack, Engine, EngineLimits};
use super::session::{Limits, Message, Send};
use super::sessions::{Connect, ConnectError, Connected, ConnectionId, Ended, Expiry, Will};
use super::subscriptions::SubOptions;
use super::topic::Filter;

/// The limits most tests run under; a test about one bound changes it.
fn limits() -> EngineLimits {
    EngineLimits {
        queue: Limits {
            max_queued: 100,
            max_queued_bytes: 1 << 20,
            max_inflight: 100,
        },
        max_queued_total_bytes: 1 << 20,
        max_sessions: 10,
        max_subscriptions_per_client: 10,
        max_retained_messages: 10,
        max_retained_bytes: 1 << 20,
    }
}

fn engine() -> Engine {
    Engine::new(limits())
}

fn connect(e: &mut Engine, id: &str, clean: bool, expiry: Expiry, now: Instant) -> ConnectionId {
    connect_with(e, id, clean, expiry, None, now)
}

fn connect_with(
    e: &mut Engine,
    id: &str,
    clean: bool,
    expiry: Expiry,
    will: Option<Will>,
    now: Instant,
) -> ConnectionId {
    connected(e, id, clean, expiry, will, now).connection
}

/// A CONNECT (Receive Maximum 100) and what it resulted in.
fn connected(
    e: &mut Engine,
    id: &str,
    clean: bool,
    expiry: Expiry,
    will: Option<Will>,
    now: Instant,
) -> Connected {
    e.connect(
        Connect {
            client: id.into(),
            clean_start: clean,
            expiry,
            receive_maximum: 100,
            will,
        },
        now,
    )
    .expect("connect")
    .0
}

/// A CONNECT without will, and what it resulted in.
fn reconnect(e: &mut Engine, id: &str, clean: bool, expiry: Expiry, now: Instant) -> Connected {
    connected(e, id, clean, expiry, None, now)
}

fn msg(from: &str, topic: &str, qos: u8, retain: bool, payload: &str) -> Arc<Message> {
    Arc::new(Message {
        topic: topic.into(),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        qos,
        retain,
        expires: None,
        publisher: Some(from.into()),
        properties: Default::default(),
    })
}

fn sub(e: &mut Engine, id: &str, filter: &str, opts: SubOptions, now: Instant) {
    let conn = e.sessions.connection(id).expect("connected");
    e.subscribe(
        &id.into(),
        conn,
        &Filter::parse(filter).expect("filter"),
        opts,
        now,
    )
    .expect("subscribe");
}

/// What the connection serving `id` may write now.
fn ready(e: &mut Engine, id: &str, now: Instant) -> Vec<Send> {
    match e.sessions.connection(id) {
        Some(conn) => e.ready(id, conn, now),
        None => Vec::new(),
    }
}

fn qos(q: u8) -> SubOptions {
    SubOptions {
        qos: q,
        ..SubOptions::default()
    }
}

/// (payload, qos, retain) of each PUBLISH in `sends`.
fn got(sends: &[Send]) -> Vec<(String, u8, bool)> {
    sends
        .iter()
        .filter_map(|s| match s {
            Send::Publish(o) => Some((
                String::from_utf8_lossy(&o.message.payload).into_owned(),
                o.qos,
                o.retain,
            )),
            Send::Pubrel(_) => None,
        })
        .collect()
}

const KEEP: Expiry = Expiry::After(Duration::from_secs(99_999));

#[test]
fn a_kept_session_gets_what_was_published_while_it_was_offline() {
    let now = Instant::now();
    let mut e = engine();
    let a = connect(&mut e, "a", true, KEEP, now);
    sub(&mut e, "a", "t/#", qos(2), now);
    e.disconnect("a", a, Ended::Normal, None, now);
    connect(&mut e, "b", true, Expiry::After(Duration::ZERO), now);
    for q in 0..3 {
        e.publish(msg("b", "t/x", q, false, &format!("q{q}")))
            .expect("publish");
    }
    let back = reconnect(&mut e, "a", false, KEEP, now);
    assert!(back.session_present);
    // QoS 0 is not queued for an offline client (as Mosquitto).
    assert_eq!(
        got(&back.resend),
        vec![("q1".into(), 1, false), ("q2".into(), 2, false)]
    );
}

#[test]
fn a_session_ends_when_its_expiry_passes_and_takes_its_subscriptions() {
    let now = Instant::now();
    let mut e = engine();
    let a = connect(
        &mut e,
        "a",
        true,
        Expiry::After(Duration::from_secs(5)),
        now,
    );
    sub(&mut e, "a", "t", qos(1), now);
    e.disconnect("a", a, Ended::Normal, None, now);
    e.tick(now + Duration::from_secs(4));
    assert_eq!(e.sessions.len(), 1);
    e.tick(now + Duration::from_secs(5));
    assert_eq!((e.sessions.len(), e.subscriptions.len()), (0, 0));
    let back = reconnect(&mut e, "a", false, KEEP, now + Duration::from_secs(6));
    assert!(!back.session_present);
    // A DISCONNECT may shorten the interval to 0: the session ends at once.
    let b = connect(&mut e, "b", true, KEEP, now);
    sub(&mut e, "b", "t", qos(1), now);
    e.disconnect(
        "b",
        b,
        Ended::Normal,
        Some(Expiry::After(Duration::ZERO)),
        now,
    );
    assert_eq!(e.subscriptions.of_client("b").count(), 0);
}

#[test]
fn clean_start_discards_the_old_session() {
    let now = Instant::now();
    let mut e = engine();
    let a = connect(&mut e, "a", true, KEEP, now);
    sub(&mut e, "a", "t", qos(1), now);
    e.disconnect("a", a, Ended::Normal, None, now);
    e.publish(msg("x", "t", 1, false, "old")).expect("publish");
    let back = reconnect(&mut e, "a", true, KEEP, now);
    assert!(!back.session_present);
    assert!(back.resend.is_empty());
    assert_eq!(e.subscriptions.len(), 0);
}

#[test]
fn wills_go_out_on_an_abnormal_end_after_their_delay_and_not_after_a_reconnect() {
    let now = Instant::now();
    let mut e = engine();
    connect(&mut e, "watch", true, KEEP, now);
    sub(&mut e, "watch", "will/#", qos(1), now);
    let will = |delay| {
        Some(Will {
            message: msg("dev", "will/dev", 1, false, "gone"),
            delay: Duration::from_secs(delay),
            expiry: None,
        })
    };
    // Normal DISCONNECT: no will.
    let c = connect_with(&mut e, "dev", true, KEEP, will(0), now);
    e.disconnect("dev", c, Ended::Normal, None, now);
    assert!(ready(&mut e, "watch", now).is_empty());
    // Lost connection: the will at once.
    let c = connect_with(&mut e, "dev", false, KEEP, will(0), now);
    let (_, woken) = e.disconnect("dev", c, Ended::WithWill, None, now);
    assert!(woken.contains("watch"));
    assert_eq!(
        got(&ready(&mut e, "watch", now)),
        vec![("gone".into(), 1, false)]
    );
    // A delay of 3 s: not before it, then once.
    let c = connect_with(&mut e, "dev", false, KEEP, will(3), now);
    e.disconnect("dev", c, Ended::WithWill, None, now);
    e.tick(now + Duration::from_secs(2));
    assert!(ready(&mut e, "watch", now).is_empty());
    e.tick(now + Duration::from_secs(3));
    assert_eq!(got(&ready(&mut e, "watch", now)).len(), 1);
    e.tick(now + Duration::from_secs(9));
    assert!(ready(&mut e, "watch", now).is_empty());
    // Reconnecting within the delay cancels it.
    let c = connect_with(&mut e, "dev", false, KEEP, will(3), now);
    e.disconnect("dev", c, Ended::WithWill, None, now);
    connect(&mut e, "dev", false, KEEP, now + Duration::from_secs(1));
    e.tick(now + Duration::from_secs(10));
    assert!(ready(&mut e, "watch", now).is_empty());
}

fn will(payload: &str, retain: bool, delay: u64) -> Option<Will> {
    Some(Will {
        message: msg("dev", "will/dev", 0, retain, payload),
        delay: Duration::from_secs(delay),
        expiry: None,
    })
}

#[test]
fn a_takeover_keeps_the_session_and_drops_the_first_connections_will() {
    let now = Instant::now();
    let mut e = engine();
    connect(&mut e, "watch", true, KEEP, now);
    sub(&mut e, "watch", "will/#", qos(0), now);
    let first = connect_with(&mut e, "dev", true, KEEP, will("taken", false, 0), now);
    sub(&mut e, "dev", "cmd", qos(1), now);
    let second = reconnect(&mut e, "dev", false, KEEP, now);
    assert_eq!(second.taken_over, Some(first));
    assert!(second.session_present);
    // The session carries on: a new connection came within the will delay.
    assert!(ready(&mut e, "watch", now).is_empty());
    // The first connection's late calls and end change nothing.
    e.publish(msg("x", "cmd", 1, false, "go")).expect("publish");
    let to_first = e.ready("dev", first, now);
    assert!(to_first.is_empty());
    let sent = e.ready("dev", second.connection, now);
    let Some(Send::Publish(o)) = sent.first() else {
        panic!("the command goes to the second connection: {sent:?}")
    };
    let id = o.packet_id.expect("QoS 1");
    assert!(!e.ack("dev", first, Ack::Puback, id));
    assert!(
        !e.ack("dev", second.connection, Ack::Pubcomp, id),
        "QoS 1 completes with PUBACK"
    );
    assert!(e.ack("dev", second.connection, Ack::Puback, id));
    assert!(!e.ack("dev", second.connection, Ack::Puback, id), "once");
    assert!(!e.unsubscribe("dev", first, &Filter::parse("cmd").expect("filter")));
    e.disconnect("dev", first, Ended::WithWill, None, now);
    assert_eq!(e.sessions.connection("dev"), Some(second.connection));
    assert_eq!(e.subscriptions.of_client("dev").count(), 1);
}

#[test]
fn a_takeover_that_ends_the_session_publishes_the_first_connections_will() {
    let now = Instant::now();
    let mut e = engine();
    connect(&mut e, "watch", true, KEEP, now);
    sub(&mut e, "watch", "will/#", qos(0), now);
    // Clean start on the new connection ends the old session.
    connect_with(&mut e, "dev", true, KEEP, will("clean", false, 0), now);
    let second = reconnect(&mut e, "dev", true, KEEP, now);
    assert!(!second.session_present && second.discarded);
    assert_eq!(
        got(&ready(&mut e, "watch", now)),
        vec![("clean".into(), 0, false)]
    );
    // A session with expiry 0 ends with its connection: never resumed.
    let zero = Expiry::After(Duration::ZERO);
    connect_with(&mut e, "z", true, zero, will("zero", false, 0), now);
    sub(&mut e, "z", "cmd", qos(1), now);
    let again = reconnect(&mut e, "z", false, KEEP, now);
    assert!(!again.session_present, "an expiry-0 session is not resumed");
    assert_eq!(e.subscriptions.of_client("z").count(), 0);
    assert_eq!(
        got(&ready(&mut e, "watch", now)),
        vec![("zero".into(), 0, false)]
    );
}

#[test]
fn a_will_goes_out_when_the_session_ends_before_its_delay() {
    let now = Instant::now();
    let mut e = engine();
    connect(&mut e, "watch", true, KEEP, now);
    sub(&mut e, "watch", "will/#", qos(0), now);
    let c = connect_with(
        &mut e,
        "dev",
        true,
        Expiry::After(Duration::from_secs(10)),
        will("early", false, 60),
        now,
    );
    e.disconnect("dev", c, Ended::WithWill, None, now);
    assert!(
        ready(&mut e, "watch", now).is_empty(),
        "not at the disconnect"
    );
    e.tick(now + Duration::from_secs(9));
    assert!(ready(&mut e, "watch", now).is_empty());
    e.tick(now + Duration::from_secs(10));
    assert_eq!(
        got(&ready(&mut e, "watch", now)),
        vec![("early".into(), 0, false)]
    );
    assert_eq!(e.sessions.len(), 1, "only the watcher's session is left");
}

#[test]
fn a_retained_will_is_kept_and_its_expiry_counts_from_publication() {
    let now = Instant::now();
    let mut e = engine();
    let c = connect_with(
        &mut e,
        "dev",
        true,
        KEEP,
        Some(Will {
            message: msg("dev", "will/dev", 1, true, "offline"),
            delay: Duration::from_secs(30),
            expiry: Some(Duration::from_secs(20)),
        }),
        now,
    );
    e.disconnect("dev", c, Ended::WithWill, None, now);
    let published = now + Duration::from_secs(30);
    e.tick(published);
    assert_eq!(e.retained.len(), 1, "a retained will is a retained message");
    // Published at 30 s with 20 s to live: a subscriber at 40 s gets it
    // with 10 s left, one at 51 s does not.
    connect(&mut e, "late", true, KEEP, now);
    sub(
        &mut e,
        "late",
        "will/#",
        qos(1),
        published + Duration::from_secs(10),
    );
    let sent = ready(&mut e, "late", published + Duration::from_secs(10));
    let Send::Publish(o) = &sent[0] else {
        panic!("a PUBLISH: {sent:?}")
    };
    assert_eq!((o.retain, o.expiry_left), (true, Some(10)));
    connect(&mut e, "later", true, KEEP, now);
    sub(
        &mut e,
        "later",
        "will/#",
        qos(1),
        published + Duration::from_secs(21),
    );
    assert!(ready(&mut e, "later", published + Duration::from_secs(21)).is_empty());
}

#[test]
fn raising_a_zero_session_expiry_at_disconnect_is_a_protocol_error() {
    let now = Instant::now();
    let mut e = engine();
    connect(&mut e, "watch", true, KEEP, now);
    sub(&mut e, "watch", "will/#", qos(0), now);
    let c = connect_with(
        &mut e,
        "dev",
        true,
        Expiry::After(Duration::ZERO),
        will("bye", false, 0),
        now,
    );
    let (out, _) = e.disconnect("dev", c, Ended::Normal, Some(KEEP), now);
    assert!(out.protocol_error && out.ended);
    // As Mosquitto: the will goes out and the session ends.
    assert_eq!(
        got(&ready(&mut e, "watch", now)),
        vec![("bye".into(), 0, false)]
    );
}

#[test]
fn retained_messages_follow_retain_handling_and_live_ones_retain_as_published() {
    let now = Instant::now();
    let mut e = engine();
    connect(&mut e, "p", true, KEEP, now);
    connect(&mut e, "s", true, KEEP, now);
    e.publish(msg("p", "r/1", 1, true, "kept"))
        .expect("publish");
    let rh = |h, rap| SubOptions {
        qos: 2,
        retain_handling: h,
        retain_as_published: rap,
        ..SubOptions::default()
    };
    // Retain Handling 0: sent, RETAIN set, at the lower QoS.
    sub(&mut e, "s", "r/#", rh(0, false), now);
    assert_eq!(
        got(&ready(&mut e, "s", now)),
        vec![("kept".into(), 1, true)]
    );
    // 1: only for a new subscription; this one replaces.
    sub(&mut e, "s", "r/#", rh(1, false), now);
    assert!(ready(&mut e, "s", now).is_empty());
    sub(&mut e, "s", "r/+", rh(1, false), now);
    assert_eq!(got(&ready(&mut e, "s", now)).len(), 1);
    // 2: never.
    sub(&mut e, "s", "+/1", rh(2, false), now);
    assert!(ready(&mut e, "s", now).is_empty());
    // Live: RETAIN cleared unless Retain As Published.
    e.publish(msg("p", "r/1", 2, true, "live"))
        .expect("publish");
    assert_eq!(
        got(&ready(&mut e, "s", now)),
        vec![("live".into(), 2, false)]
    );
    sub(&mut e, "s", "r/1", rh(2, true), now);
    e.publish(msg("p", "r/1", 2, true, "live2"))
        .expect("publish");
    assert_eq!(
        got(&ready(&mut e, "s", now)),
        vec![("live2".into(), 2, true)]
    );
    // An empty retained payload deletes it.
    e.publish(msg("p", "r/1", 0, true, "")).expect("publish");
    assert_eq!(e.retained.len(), 0);
}

#[test]
fn a_retained_message_past_the_bound_is_refused_and_not_delivered() {
    let now = Instant::now();
    let mut e = Engine::new(EngineLimits {
        max_sessions: 2,
        max_retained_messages: 1,
        ..limits()
    });
    connect(&mut e, "s", true, KEEP, now);
    sub(&mut e, "s", "#", qos(1), now);
    e.publish(msg("p", "a", 1, true, "1")).expect("room");
    assert!(e.publish(msg("p", "b", 1, true, "2")).is_err());
    assert_eq!(got(&ready(&mut e, "s", now)), vec![("1".into(), 1, false)]);
    // Sessions are bounded too.
    connect(&mut e, "t", true, KEEP, now);
    let third = e.connect(
        Connect {
            client: "u".into(),
            clean_start: true,
            expiry: KEEP,
            receive_maximum: 10,
            will: None,
        },
        now,
    );
    assert_eq!(third.err(), Some(ConnectError::Quota(2)));
}

#[test]
fn at_the_session_bound_the_kept_session_ending_first_makes_room() {
    let now = Instant::now();
    let mut e = Engine::new(EngineLimits {
        max_sessions: 3,
        ..limits()
    });
    // "never" is kept for good, "soon" for 10 s, "busy" is connected.
    for (id, expiry) in [
        ("never", Expiry::Never),
        ("soon", Expiry::After(Duration::from_secs(10))),
        ("busy", KEEP),
    ] {
        let c = connect(&mut e, id, false, expiry, now);
        sub(&mut e, id, "t", qos(1), now);
        if id != "busy" {
            e.disconnect(id, c, Ended::Normal, None, now);
        }
    }
    let (connected, _) = e
        .connect(
            Connect {
                client: "new".into(),
                clean_start: true,
                expiry: KEEP,
                receive_maximum: 10,
                will: None,
            },
            now,
        )
        .expect("room is made");
    assert_eq!(connected.evicted.as_deref(), Some("soon"));
    assert!(e.sessions.outbox("soon").is_none());
    let subscribed: Vec<_> = e
        .subscriptions
        .deliveries("t", None)
        .into_iter()
        .map(|d| d.client.to_string())
        .collect();
    assert!(!subscribed.contains(&"soon".to_owned()), "{subscribed:?}");
    // Next the session that never ends; then, all connected, a refusal.
    let (connected, _) = e
        .connect(
            Connect {
                client: "newer".into(),
                clean_start: true,
                expiry: KEEP,
                receive_maximum: 10,
                will: None,
            },
            now,
        )
        .expect("room is made");
    assert_eq!(connected.evicted.as_deref(), Some("never"));
    let refused = e.connect(
        Connect {
            client: "last".into(),
            clean_start: true,
            expiry: KEEP,
            receive_maximum: 10,
            will: None,
        },
        now,
    );
    assert_eq!(refused.err(), Some(ConnectError::Quota(3)));
}

#[test]
fn the_queues_of_all_sessions_share_one_budget_given_back_as_they_drain_or_end() {
    let now = Instant::now();
    // Each session could queue 1 MiB; all together only 3 messages' worth.
    let one = msg("p", "t", 1, false, "0123456789").bytes();
    let mut e = Engine::new(EngineLimits {
        max_queued_total_bytes: 3 * one,
        ..limits()
    });
    let a = connect(&mut e, "a", false, Expiry::Never, now);
    let b = connect(&mut e, "b", false, Expiry::Never, now);
    sub(&mut e, "a", "t", qos(1), now);
    sub(&mut e, "b", "t", qos(1), now);
    e.publish(msg("p", "t", 1, false, "0123456789"))
        .expect("publish");
    e.publish(msg("p", "t", 1, false, "0123456789"))
        .expect("publish");
    // Four deliveries asked for, three fit.
    assert_eq!(e.sessions.budget().used(), 3 * one);
    let queued = |e: &mut Engine, c| e.sessions.outbox(c).map_or(0, |o| o.queued());
    assert_eq!(queued(&mut e, "a") + queued(&mut e, "b"), 3);
    // Written out, the bytes come back.
    assert_eq!(e.ready("a", a, now).len(), 2);
    assert_eq!(e.sessions.budget().used(), one);
    // A session that ends gives back what it still had queued.
    e.disconnect(
        "b",
        b,
        Ended::Normal,
        Some(Expiry::After(Duration::ZERO)),
        now,
    );
    assert_eq!(e.sessions.budget().used(), 0);
}
