//! The self-probes: tasks that show the runtime schedules, the buffer's
//! writer answers, and every MQTT listener serves a client end to end.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::config::SupervisorConfig;
use super::liveness::Liveness;
use super::metrics as m;
use crate::broker::BrokerHandle;
use crate::broker::probe;
use crate::store::StoreHandle;

/// How often the runtime task beats.
const RUNTIME_TICK: Duration = Duration::from_secs(1);

/// Starts every probe on `tracker`; they stop with `stop`.
pub fn spawn(
    liveness: &Liveness,
    config: &SupervisorConfig,
    broker: &BrokerHandle,
    store: &StoreHandle,
    tracker: &TaskTracker,
    stop: &CancellationToken,
) {
    let deadline = config.probe_deadline();

    let beat = liveness.register("runtime", deadline, false);
    let until = stop.clone();
    tracker.spawn(async move {
        loop {
            beat.progress(deadline);
            tokio::select! {
                () = until.cancelled() => return,
                () = tokio::time::sleep(RUNTIME_TICK) => {}
            }
        }
    });

    let beat = liveness.register("store", deadline, true);
    let (until, store, config_) = (stop.clone(), store.clone(), config.clone());
    tracker.spawn(async move {
        loop {
            let result = tokio::time::timeout(config_.probe_timeout, store.tick()).await;
            let label = match result {
                Ok(Ok(())) => {
                    beat.progress(deadline);
                    beat.note(None);
                    "ok"
                }
                Ok(Err(e)) => {
                    beat.note(Some(format!("the buffer's writer: {e}")));
                    "failed"
                }
                Err(_) => {
                    beat.note(Some(format!(
                        "the buffer's writer did not answer within {:?}",
                        config_.probe_timeout
                    )));
                    "failed"
                }
            };
            metrics::counter!(m::PROBES, "target" => "store", "result" => label).increment(1);
            tokio::select! {
                () = until.cancelled() => return,
                () = tokio::time::sleep(config_.probe_interval) => {}
            }
        }
    });

    for target in broker.probe_targets().iter().cloned() {
        let name = format!("broker.{}", target.name);
        let beat = liveness.register(name.clone(), deadline, true);
        let (until, broker, config_) = (stop.clone(), broker.clone(), config.clone());
        tracker.spawn(async move {
            let mut failing = false;
            loop {
                let result = probe::probe(&target, config_.probe_timeout).await;
                let label = match result {
                    Ok(()) => {
                        if failing {
                            tracing::info!(listener = %name, "the listener serves clients again");
                        }
                        failing = false;
                        beat.progress(deadline);
                        beat.set_ready(true);
                        beat.note(None);
                        "ok"
                    }
                    // Full is not broken: the listener refuses new clients
                    // because it serves as many as it may.
                    Err(_) if broker.at_connection_limit() => {
                        beat.progress(deadline);
                        beat.set_ready(false);
                        beat.note(Some("at mqtt.max_connections: new clients are refused".into()));
                        "saturated"
                    }
                    Err(e) => {
                        if !failing {
                            tracing::warn!(listener = %name, addr = %target.addr, error = %e, "self-probe of an mqtt listener failed");
                        }
                        failing = true;
                        beat.note(Some(format!("{} at {}: {e}", if target.v5 { "MQTT 5" } else { "MQTT 3.1.1" }, target.addr)));
                        "failed"
                    }
                };
                metrics::counter!(m::PROBES, "target" => name.clone(), "result" => label)
                    .increment(1);
                tokio::select! {
                    () = until.cancelled() => return,
                    () = tokio::time::sleep(config_.probe_interval) => {}
                }
            }
        });
    }
}
