use std::sync::{Arc, Mutex};

use bytes::Bytes;
use ferry_protocols::{FieldValue, Reading};

use super::*;
use crate::ingest::{
    Accepted, Durability, Incoming, IngestSink, Message, QoS, RejectReason, Source,
};

/// An in-memory buffer that records what it was given (also used by the
/// serial tests).
#[derive(Clone, Default)]
pub(crate) struct Recorder {
    pub(crate) readings: Arc<Mutex<Vec<(Incoming, Durability)>>>,
    pub(crate) letters: Arc<Mutex<Vec<DeadLetter>>>,
    pub(crate) full: bool,
}

impl Buffer for Recorder {
    type Committing = std::future::Ready<Result<(), RejectReason>>;

    async fn append(
        &self,
        readings: Vec<Incoming>,
        durability: Durability,
    ) -> Result<Self::Committing, RejectReason> {
        if self.full {
            return Err(RejectReason::Full);
        }
        let mut all = self.readings.lock().unwrap();
        all.extend(readings.into_iter().map(|r| (r, durability)));
        Ok(std::future::ready(Ok(())))
    }

    async fn dead_letter(&self, letter: DeadLetter) -> Result<Self::Committing, RejectReason> {
        self.letters.lock().unwrap().push(letter);
        Ok(std::future::ready(Ok(())))
    }
}

fn routes(toml_text: &str) -> Vec<RouteConfig> {
    #[derive(serde::Deserialize)]
    struct Wrapper {
        routes: Vec<RouteConfig>,
    }
    toml::from_str::<Wrapper>(toml_text).unwrap().routes
}

fn msg(topic: &str, payload: &str, qos: QoS) -> Message {
    Message {
        topic: topic.into(),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        qos,
        source: Source::Broker {
            client_id: "c1".into(),
        },
    }
}

fn router(toml_text: &str) -> (Router<Recorder>, Recorder) {
    let rec = Recorder::default();
    (
        Router::with_clock(routes(toml_text), rec.clone(), || 42),
        rec,
    )
}

const ROUTES: &str = r#"
[[routes]]
topic = "site/{site}/{device}/{measurement}"
database = "plant"
tags = { line = "3" }

[[routes]]
topic = "lp/#"
database = "raw"
format = "line-protocol"

[[routes]]
topic = "v/{device}"
database = "plant"
measurement = "level"
format = "value"
field = "mm"
"#;

#[tokio::test]
async fn json_route_with_captures_and_static_tags() {
    let (r, rec) = router(ROUTES);
    let got = r
        .ingest(msg(
            "site/north/pump-7/pressure",
            r#"{"bar": 2.5}"#,
            QoS::AtLeastOnce,
        ))
        .await;
    assert_eq!(got, Accepted::Stored);
    let all = rec.readings.lock().unwrap();
    assert_eq!(all.len(), 1);
    let (inc, durability) = &all[0];
    assert_eq!(*durability, Durability::Durable);
    assert_eq!(inc.database.as_str(), "plant");
    let reading: &Reading = &inc.reading;
    assert_eq!(reading.measurement.as_str(), "pressure");
    assert_eq!(reading.time_ns, 42);
    let tags: Vec<_> = reading
        .tags
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        tags,
        [("device", "pump-7"), ("line", "3"), ("site", "north")]
    );
    assert_eq!(reading.fields.values().next(), Some(&FieldValue::F64(2.5)));
}

#[tokio::test]
async fn line_protocol_keeps_good_lines_and_dead_letters_bad_ones() {
    let (r, rec) = router(ROUTES);
    let got = r
        .ingest(msg(
            "lp/x",
            "cpu v=1 1\ncpu v= 2\ncpu v=3 3",
            QoS::AtMostOnce,
        ))
        .await;
    assert_eq!(got, Accepted::Stored);
    assert_eq!(rec.readings.lock().unwrap().len(), 2);
    assert_eq!(rec.readings.lock().unwrap()[0].1, Durability::BestEffort);
    let letters = rec.letters.lock().unwrap();
    assert_eq!(letters.len(), 1);
    assert!(letters[0].error.contains("line 2"), "{}", letters[0].error);
    assert_eq!(letters[0].topic, "lp/x");
    assert_eq!(letters[0].source, "broker:c1");
}

#[tokio::test]
async fn value_route_and_garbage() {
    let (r, rec) = router(ROUTES);
    assert_eq!(
        r.ingest(msg("v/tank1", " 12.5\n", QoS::AtLeastOnce)).await,
        Accepted::Stored
    );
    assert_eq!(
        r.ingest(msg("v/tank1", "hello", QoS::AtLeastOnce)).await,
        Accepted::Stored
    );
    let all = rec.readings.lock().unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].0.reading.measurement.as_str(), "level");
    assert_eq!(
        all[0].0.reading.fields.values().next(),
        Some(&FieldValue::F64(12.5))
    );
    let letters = rec.letters.lock().unwrap();
    assert_eq!(letters.len(), 1);
    assert!(
        letters[0].error.contains("expected a number"),
        "{}",
        letters[0].error
    );
}

#[tokio::test]
async fn hostile_topic_capture_is_a_dead_letter() {
    let (r, rec) = router(ROUTES);
    let got = r.ingest(msg("site/a/b/..", "1", QoS::AtLeastOnce)).await;
    assert_eq!(got, Accepted::Stored);
    assert!(rec.readings.lock().unwrap().is_empty());
    assert_eq!(rec.letters.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn unrouted_and_rejected() {
    let (r, _) = router(ROUTES);
    assert_eq!(
        r.ingest(msg("other/topic", "1", QoS::AtLeastOnce)).await,
        Accepted::Unrouted
    );
    let rec = Recorder {
        full: true,
        ..Recorder::default()
    };
    let r = Router::with_clock(routes(ROUTES), rec, || 1);
    assert_eq!(
        r.ingest(msg("v/t", "1", QoS::AtLeastOnce)).await,
        Accepted::Rejected(RejectReason::Full)
    );
}

#[test]
fn validation_reports_every_problem_with_its_path() {
    let rs = routes(
        r#"
[[routes]]
topic = "a/{device}"
database = "db"
tags = { device = "x" }

[[routes]]
topic = "b/{measurement}"
database = "db"
"#,
    );
    let mut errors = Vec::new();
    for (i, r) in rs.iter().enumerate() {
        r.validate(i, &mut errors);
    }
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].starts_with("routes[0].measurement: required"));
    assert!(errors[1].starts_with("routes[0].tags.device"));
}

#[test]
fn bad_route_values_fail_to_parse_with_their_path() {
    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Wrapper {
        routes: Vec<RouteConfig>,
    }
    let err = toml::from_str::<Wrapper>("[[routes]]\ntopic = \"a/#/b\"\ndatabase = \"db\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("'#' must be the last level"), "{err}");
    let err = toml::from_str::<Wrapper>("[[routes]]\ntopic = \"a\"\ndatabase = \"../x\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("database name"), "{err}");
}
