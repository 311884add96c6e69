//! The engine's matching against `mqtt5-protocol`'s filter matcher (a
//! straight reading of MQTT 5 §4.7, used here as the oracle), and its
//! memory bounds.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mqtt5_protocol::topic_matching::matches;
use proptest::prelude::*;

use super::retained::{RetainError, Retained};
use super::subscriptions::{Delivery, SubOptions, SubscribeError, Subscriptions};
use super::topic::Filter;
use super::tree::TopicTree;

/// Topic levels from a small alphabet, so that random filters and topics
/// meet often; `$SYS` and the empty level included.
fn level() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("a".to_owned()),
        Just("b".to_owned()),
        Just(String::new()),
        Just("$SYS".to_owned()),
        Just("$x".to_owned()),
    ]
}

fn topic() -> impl Strategy<Value = String> {
    // Topic names are checked before they reach the tree: never empty.
    prop::collection::vec(level(), 1..5)
        .prop_map(|l| l.join("/"))
        .prop_filter("a topic name is not empty", |t| !t.is_empty())
}

fn filter() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(
            prop_oneof![level(), Just("+".to_owned()), Just("+".to_owned())],
            // 0 levels before `#`: the bare `#`, which must skip `$` topics.
            0..5,
        ),
        any::<bool>(),
    )
        .prop_map(|(mut l, hash)| {
            if hash {
                l.push("#".to_owned());
            }
            l.join("/")
        })
        .prop_filter("a filter is not empty", |f| !f.is_empty())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Stored filters, a topic: the tree finds exactly the filters the
    /// oracle says match.
    #[test]
    fn filters_matching_a_topic_are_those_the_specification_gives(
        filters in prop::collection::btree_set(filter(), 0..24),
        topics in prop::collection::vec(topic(), 1..8),
    ) {
        let mut tree = TopicTree::default();
        for f in &filters {
            tree.update(f, |slot| *slot = Some(f.clone()));
        }
        for t in &topics {
            let mut got = BTreeSet::new();
            tree.matching_filters(t, |f: &String| { got.insert(f.clone()); });
            let want: BTreeSet<String> =
                filters.iter().filter(|f| matches(t, f)).cloned().collect();
            prop_assert_eq!(got, want, "topic {:?}", t);
        }
    }

    /// Stored topics, a filter: the tree finds exactly the topics the
    /// oracle says the filter matches.
    #[test]
    fn topics_matching_a_filter_are_those_the_specification_gives(
        topics in prop::collection::btree_set(topic(), 0..24),
        filters in prop::collection::vec(filter(), 1..8),
    ) {
        let mut tree = TopicTree::default();
        for t in &topics {
            tree.update(t, |slot| *slot = Some(t.clone()));
        }
        for f in &filters {
            let mut got = BTreeSet::new();
            tree.matching_topics(f, |t: &String| { got.insert(t.clone()); });
            let want: BTreeSet<String> =
                topics.iter().filter(|t| matches(t, f)).cloned().collect();
            prop_assert_eq!(got, want, "filter {:?}", f);
        }
    }

    /// Whatever was stored, removing it all leaves the bare root: the
    /// tree's memory follows what it holds, not what it has seen.
    #[test]
    fn removing_everything_leaves_only_the_root(
        paths in prop::collection::vec(filter(), 0..32),
    ) {
        let mut tree = TopicTree::default();
        for p in &paths {
            tree.update(p, |slot| *slot = Some(()));
        }
        let distinct: BTreeSet<&String> = paths.iter().collect();
        prop_assert_eq!(tree.len(), distinct.len());
        for p in &paths {
            tree.remove(p);
        }
        prop_assert_eq!(tree.len(), 0);
        prop_assert_eq!(tree.nodes(), 1);
    }
}

fn client(id: &str) -> Arc<str> {
    id.into()
}

fn qos(q: u8) -> SubOptions {
    SubOptions {
        qos: q,
        ..SubOptions::default()
    }
}

fn filter_of(raw: &str) -> Filter {
    Filter::parse(raw).unwrap_or_else(|e| panic!("{raw}: {e}"))
}

#[test]
fn overlapping_subscriptions_give_one_copy_at_the_highest_qos_with_every_identifier() {
    let mut subs = Subscriptions::new(usize::MAX);
    let a = client("a");
    let with_id = |q, id| SubOptions {
        qos: q,
        id: Some(id),
        ..SubOptions::default()
    };
    subs.subscribe(&a, &filter_of("s/+/t"), with_id(0, 7))
        .expect("ok");
    subs.subscribe(&a, &filter_of("s/#"), with_id(2, 3))
        .expect("ok");
    subs.subscribe(&a, &filter_of("x/#"), with_id(1, 9))
        .expect("ok");
    assert_eq!(
        subs.deliveries("s/1/t", Some("b")),
        vec![Delivery {
            client: a.clone(),
            qos: 2,
            retain_as_published: false,
            ids: vec![3, 7],
        }]
    );
    assert_eq!(subs.deliveries("y", None), vec![]);
}

#[test]
fn no_local_holds_back_only_the_publishers_own_messages() {
    let mut subs = Subscriptions::new(usize::MAX);
    let (a, b) = (client("a"), client("b"));
    let no_local = SubOptions {
        qos: 1,
        no_local: true,
        ..SubOptions::default()
    };
    subs.subscribe(&a, &filter_of("t"), no_local).expect("ok");
    subs.subscribe(&b, &filter_of("t"), no_local).expect("ok");
    let to: Vec<Arc<str>> = subs
        .deliveries("t", Some("a"))
        .into_iter()
        .map(|d| d.client)
        .collect();
    assert_eq!(to, vec![b.clone()]);
    // Another subscription of `a` without No Local still delivers.
    subs.subscribe(&a, &filter_of("#"), qos(0)).expect("ok");
    let got = subs.deliveries("t", Some("a"));
    assert_eq!(got.len(), 2);
    assert_eq!((got[0].client.clone(), got[0].qos), (a, 0));
}

#[test]
fn a_shared_group_delivers_each_message_to_one_member_in_turn() {
    let mut subs = Subscriptions::new(usize::MAX);
    let (a, b) = (client("a"), client("b"));
    subs.subscribe(&a, &filter_of("$share/g/t/#"), qos(1))
        .expect("ok");
    subs.subscribe(&b, &filter_of("$share/g/t/#"), qos(1))
        .expect("ok");
    subs.subscribe(&a, &filter_of("t/x"), qos(0)).expect("ok");
    let round: Vec<Vec<(Arc<str>, u8)>> = (0..4)
        .map(|_| {
            subs.deliveries("t/x", None)
                .into_iter()
                .map(|d| (d.client, d.qos))
                .collect()
        })
        .collect();
    assert_eq!(round[0], vec![(a.clone(), 0), (a.clone(), 1)]);
    assert_eq!(round[1], vec![(a.clone(), 0), (b.clone(), 1)]);
    assert_eq!(round[2], round[0]);
    assert_eq!(round[3], round[1]);
    assert_eq!(
        subs.subscribe(
            &a,
            &filter_of("$share/g/u"),
            SubOptions {
                no_local: true,
                ..SubOptions::default()
            }
        ),
        Err(SubscribeError::SharedNoLocal)
    );
    assert!(subs.unsubscribe("b", &filter_of("$share/g/t/#")));
    assert!(subs.deliveries("t/y", None).iter().all(|d| d.client == a));
}

#[test]
fn resubscribing_replaces_and_the_quota_counts_filters() {
    let mut subs = Subscriptions::new(2);
    let a = client("a");
    assert_eq!(subs.subscribe(&a, &filter_of("t"), qos(0)), Ok(false));
    assert_eq!(subs.subscribe(&a, &filter_of("t"), qos(2)), Ok(true));
    assert_eq!(subs.deliveries("t", None)[0].qos, 2);
    assert_eq!(subs.subscribe(&a, &filter_of("u"), qos(0)), Ok(false));
    assert_eq!(
        subs.subscribe(&a, &filter_of("v"), qos(0)),
        Err(SubscribeError::Quota {
            client: a.clone(),
            max: 2
        })
    );
    // Replacing one held is not a new one.
    assert_eq!(subs.subscribe(&a, &filter_of("u"), qos(1)), Ok(true));
    // Another client has its own quota.
    assert_eq!(
        subs.subscribe(&client("b"), &filter_of("v"), qos(0)),
        Ok(false)
    );
    assert_eq!(subs.len(), 3);
}

#[test]
fn a_session_that_ends_leaves_nothing_behind() {
    let mut subs = Subscriptions::new(usize::MAX);
    for i in 0..1_000 {
        let c = client(&format!("dev-{i}"));
        subs.subscribe(&c, &filter_of(&format!("sensors/dev-{i}/cmd")), qos(1))
            .expect("ok");
        subs.subscribe(&c, &filter_of("$share/all/sensors/+/cmd"), qos(1))
            .expect("ok");
    }
    assert_eq!(subs.len(), 2_000);
    for i in 0..1_000 {
        assert_eq!(subs.remove_client(&format!("dev-{i}")), 2);
    }
    assert!(subs.is_empty());
    assert_eq!(subs.nodes(), 1);
    assert_eq!(subs.deliveries("sensors/dev-1/cmd", None), vec![]);
}

#[test]
fn retained_messages_are_bounded_by_count_and_bytes() {
    let now = Instant::now();
    let mut r: Retained<String> = Retained::new(2, 100);
    r.set("a", "1".into(), 10, None).expect("room");
    r.set("b", "2".into(), 10, None).expect("room");
    assert!(matches!(
        r.set("c", "3".into(), 10, None),
        Err(RetainError::Full {
            held: 2,
            max_messages: 2,
            ..
        })
    ));
    // Replacing and deleting are always allowed.
    r.set("a", "1'".into(), 10, None).expect("replace");
    assert!(r.clear("b"));
    r.set("c", "3".into(), 85, None).expect("room again");
    assert_eq!(r.bytes(), 95);
    // Growing one past the byte bound is refused; shrinking is not.
    assert!(r.set("a", "big".into(), 20, None).is_err());
    r.set("c", "small".into(), 5, None).expect("shrink");
    assert_eq!(r.bytes(), 15);
    let mut got: Vec<&String> = r.matching("#", now);
    got.sort();
    assert_eq!(got, vec!["1'", "small"]);
}

#[test]
fn retained_messages_follow_the_dollar_rule_and_expire() {
    let now = Instant::now();
    let mut r: Retained<String> = Retained::new(100, 10_000);
    r.set("$SYS/up", "$SYS/up".into(), 1, None).expect("room");
    r.set("s/1", "s/1".into(), 1, Some(now + Duration::from_secs(5)))
        .expect("room");
    r.set("s/2", "s/2".into(), 1, Some(now + Duration::from_secs(60)))
        .expect("room");
    assert_eq!(r.matching("#", now).len(), 2);
    assert_eq!(r.matching("+/up", now).len(), 0);
    assert_eq!(r.matching("$SYS/#", now), vec!["$SYS/up"]);
    let later = now + Duration::from_secs(10);
    assert_eq!(r.matching("s/+", later), vec!["s/2"]);
    assert_eq!(r.purge(later, Clone::clone), 1);
    assert_eq!((r.len(), r.bytes()), (2, 2));
    assert_eq!(r.get("s/1"), None);
}

/// 100,000 distinct topics published and their retained messages deleted
/// leave the store as empty as before: no per-topic residue (what
/// `ferry-bench topics` measures of the whole agent).
#[test]
fn distinct_topics_leave_no_residue() {
    let mut r: Retained<()> = Retained::new(1_000_000, 1 << 30);
    for i in 0..100_000 {
        r.set(&format!("sensors/dev-{i}/temp"), (), 8, None)
            .expect("room");
    }
    assert_eq!(r.len(), 100_000);
    for i in 0..100_000 {
        assert!(r.clear(&format!("sensors/dev-{i}/temp")));
    }
    assert_eq!((r.len(), r.bytes(), r.nodes()), (0, 0, 1));
}
