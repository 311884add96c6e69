//! Time-series functions through `/api/v1/query`: gap filling in time
//! buckets (`date_bin_gapfill`, `locf`, `interpolate`) and a moving
//! average, against hand-computed answers.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::start;

const MIN_NS: i64 = 60_000_000_000;
/// 2026-01-01T00:00:00Z in ns.
const T0: i64 = 1_767_225_600_000_000_000;

#[tokio::test]
async fn gaps_are_filled_and_moving_averages_computed_as_by_hand() {
    let hub = start().await;
    // Room a: 10 at 00:00, 30 at 00:30; room b: 4 at 00:10, 8 at 00:20.
    let body: String = [
        ("a", 0, 10.0),
        ("a", 30, 30.0),
        ("b", 10, 4.0),
        ("b", 20, 8.0),
    ]
    .iter()
    .map(|(room, m, t)| format!("home,room={room} temp={t} {}\n", T0 + m * MIN_NS))
    .collect();
    assert_eq!(
        hub.write_lp("lab", &body).await.status(),
        StatusCode::NO_CONTENT
    );

    let (status, v) = hub
        .sql(
            "SELECT CAST(date_bin_gapfill(INTERVAL '10 minutes', time) AS VARCHAR) AS t, room, \
             avg(temp) AS plain, locf(avg(temp)) AS carried, interpolate(avg(temp)) AS line \
             FROM lab.home WHERE time >= '2026-01-01T00:00:00Z' AND time < '2026-01-01T00:40:00Z' \
             GROUP BY date_bin_gapfill(INTERVAL '10 minutes', time), room ORDER BY room, t",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    // a: 10, -, -, 30 → locf 10, 10, 10, 30; line 10, 16.67, 23.33, 30.
    // b: -, 4, 8, - → locf -, 4, 8, 8; line -, 4, 8, -.
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 8, "{v}");
    let row = |i: usize| data[i].as_array().unwrap().clone();
    assert_eq!(row(0)[1..4], [json!("a"), json!(10.0), json!(10.0)]);
    assert_eq!(row(1)[2..4], [json!(null), json!(10.0)]);
    let line = row(1)[4].as_f64().unwrap();
    assert!((line - 50.0 / 3.0).abs() < 1e-9, "{line}");
    let line = row(2)[4].as_f64().unwrap();
    assert!((line - 70.0 / 3.0).abs() < 1e-9, "{line}");
    assert_eq!(row(3)[2..5], [json!(30.0), json!(30.0), json!(30.0)]);
    assert_eq!(
        row(4)[1..5],
        [json!("b"), json!(null), json!(null), json!(null)]
    );
    assert_eq!(row(7)[2..5], [json!(null), json!(8.0), json!(null)]);

    // An unbounded range is refused with the reason.
    let (status, v) = hub
        .sql(
            "SELECT date_bin_gapfill(INTERVAL '10 minutes', time) AS t, avg(temp) FROM lab.home \
             WHERE time >= '2026-01-01T00:00:00Z' GROUP BY 1",
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["message"].as_str().unwrap().contains("bound"), "{v}");

    // A moving average over the last two readings of each room.
    let (status, v) = hub
        .sql(
            "SELECT room, temp, avg(temp) OVER (PARTITION BY room ORDER BY time \
             ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) AS moving \
             FROM lab.home ORDER BY room, time",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(
        v["data"],
        json!([
            ["a", 10.0, 10.0],
            ["a", 30.0, 20.0],
            ["b", 4.0, 4.0],
            ["b", 8.0, 6.0]
        ])
    );
    hub.stop().await;
}
