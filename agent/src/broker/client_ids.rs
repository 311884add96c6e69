//! The client ids the embedded rumqttd sees.
//!
//! rumqttd 0.20 has two faults around client ids that a client can trigger
//! with ordinary behaviour, and each one used to leave a server thread dead
//! for good (every later CONNECT of that protocol version went unanswered)
//! while the agent kept reporting healthy:
//!
//! * Its router refuses a client id containing `+`, `$`, `#` or `/` without
//!   an answer, and the connection task that gave up leaves an entry behind
//!   in the server's will-handler map. The next CONNECT with the same id
//!   finds that entry, `try_send`s to a task that is gone and unwraps the
//!   error while holding the map's mutex: the thread panics and the mutex is
//!   poisoned. Two connections as `sensor/1` were enough.
//! * Any other way for a connection task to end before the link is up
//!   (the router out of connection slots, the CONNACK write failing because
//!   the peer had already gone) leaves the same entry behind.
//!
//! The gate prevents both: the id handed to rumqttd is the client's id with
//! those characters escaped (`%2B`, `%24`, `%23`, `%2F`, and `%25`, `%7E`
//! so that the mapping stays one-to-one), so the router never refuses an id;
//! the gate keeps its side of the loopback connection open until rumqttd's
//! CONNACK arrives, so the CONNACK write cannot fail; rumqttd gets twice the
//! gate's connection slots; and if a connection still ends without a
//! CONNACK, the id is *retired*: later connections with the same client id
//! reach rumqttd as `<id>~<generation>`, an id rumqttd has never seen. The
//! cost of retiring is the persistent session stored under the old id. The
//! crash-only panic hook is the last line: if rumqttd panics anyway, the
//! agent restarts instead of going deaf.

use std::collections::HashMap;
use std::sync::Mutex;

/// More retired ids than this are forgotten all at once (a retired id that
/// comes back then can at worst crash rumqttd, which restarts the agent).
const MAX_RETIRED: usize = 65_536;

/// The mapping from client ids to the ids rumqttd sees.
#[derive(Debug, Default)]
pub(crate) struct UpstreamIds {
    generations: Mutex<HashMap<String, u32>>,
}

fn escape(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for c in id.chars() {
        match c {
            '%' => out.push_str("%25"),
            '+' => out.push_str("%2B"),
            '$' => out.push_str("%24"),
            '#' => out.push_str("%23"),
            '/' => out.push_str("%2F"),
            '~' => out.push_str("%7E"),
            c => out.push(c),
        }
    }
    out
}

impl UpstreamIds {
    /// The id rumqttd sees for `client_id` (an empty id stays empty: rumqttd
    /// assigns one).
    pub(crate) fn upstream(&self, client_id: &str) -> String {
        if client_id.is_empty() {
            return String::new();
        }
        let escaped = escape(client_id);
        let generation = self
            .generations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(client_id)
            .copied()
            .unwrap_or(0);
        if generation == 0 {
            escaped
        } else {
            format!("{escaped}~{generation}")
        }
    }

    /// Never hand rumqttd the current upstream id of `client_id` again.
    pub(crate) fn retire(&self, client_id: &str) {
        if client_id.is_empty() {
            return;
        }
        let mut map = self.generations.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_RETIRED && !map.contains_key(client_id) {
            tracing::warn!(
                retired = map.len(),
                "too many retired client ids; forgetting them"
            );
            map.clear();
        }
        let generation = map.entry(client_id.to_owned()).or_insert(0);
        *generation = generation.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_rumqttd_refuses_are_escaped_one_to_one() {
        let ids = UpstreamIds::default();
        assert_eq!(ids.upstream("sensor-1"), "sensor-1");
        assert_eq!(ids.upstream("plant/line+1#$"), "plant%2Fline%2B1%23%24");
        // `%` and `~` are escaped too, so no two ids map to the same one.
        assert_eq!(ids.upstream("a%2F"), "a%252F");
        assert_ne!(ids.upstream("a/"), ids.upstream("a%2F"));
        assert_eq!(ids.upstream("a~1"), "a%7E1");
        assert_eq!(ids.upstream(""), "");
        for id in ["a/b", "x+#$/~%", "ünïcödé/ok"] {
            let up = ids.upstream(id);
            assert!(!"+$#/".chars().any(|c| up.contains(c)), "{up}");
        }
    }

    #[test]
    fn retired_ids_get_a_new_generation() {
        let ids = UpstreamIds::default();
        ids.retire("gw/1");
        assert_eq!(ids.upstream("gw/1"), "gw%2F1~1");
        ids.retire("gw/1");
        assert_eq!(ids.upstream("gw/1"), "gw%2F1~2");
        // No client id maps onto a retired generation: `~` is escaped.
        assert_ne!(ids.upstream("gw/1~1"), "gw%2F1~1");
        assert_eq!(ids.upstream("other"), "other");
    }
}
