//! What a statement ticket and a prepared statement handle carry: the
//! statement and its default database, as JSON, and for a prepared
//! statement the columns planned when it was prepared (so that its
//! `GetFlightInfo` does not plan again). Nothing is kept on the hub between
//! calls; a handle a client made up is no more than a statement it could
//! have sent (a made-up schema only misleads that client: the rows carry
//! their own), and it is authorised again at `DoGet`.

use ferry_protocols::DatabaseName;
use serde::{Deserialize, Serialize};

use crate::server::ApiError;

/// A statement to run later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Handle {
    pub sql: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// The answer's Arrow schema (IPC, base64), for prepared statements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
}

impl Handle {
    pub fn new(sql: String, database: Option<&DatabaseName>) -> Self {
        Handle {
            sql,
            database: database.map(|d| d.as_str().to_owned()),
            schema: None,
        }
    }

    /// With `ipc` (an encoded schema) kept in the handle.
    pub fn with_schema(mut self, ipc: &[u8]) -> Self {
        use base64::Engine;
        self.schema = Some(base64::engine::general_purpose::STANDARD.encode(ipc));
        self
    }

    /// The schema kept in the handle, if it decodes.
    pub fn schema(&self) -> Option<deltalake::arrow::datatypes::Schema> {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(self.schema.as_deref()?)
            .ok()?;
        deltalake::arrow::datatypes::Schema::try_from(arrow_flight::IpcMessage(bytes.into())).ok()
    }

    pub fn encode(&self) -> Vec<u8> {
        // Serializing two strings cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, ApiError> {
        serde_json::from_slice(bytes).map_err(|e| {
            ApiError::bad_request(format!(
                "not a statement handle of this hub (make it with GetFlightInfo or \
                 CreatePreparedStatement): {e}"
            ))
        })
    }

    pub fn database(&self) -> Result<Option<DatabaseName>, ApiError> {
        self.database
            .as_deref()
            .map(|d| DatabaseName::new(d).map_err(|e| ApiError::bad_request(e.to_string())))
            .transpose()
    }
}

/// InfluxDB 3's `DoGet` ticket, as `influxdb3-python` sends it.
#[derive(Debug, Clone, Deserialize)]
pub struct InfluxTicket {
    pub database: Option<String>,
    pub sql_query: String,
    #[serde(default = "sql")]
    pub query_type: String,
    #[serde(default)]
    pub params: Option<serde_json::Map<String, serde_json::Value>>,
}

fn sql() -> String {
    "sql".to_owned()
}

impl InfluxTicket {
    /// A ticket that is JSON (InfluxDB 3's), else `None` (Flight SQL's
    /// protobuf tickets never start with `{`).
    pub fn parse(bytes: &[u8]) -> Option<Result<Handle, ApiError>> {
        if bytes.first() != Some(&b'{') {
            return None;
        }
        let ticket: InfluxTicket = match serde_json::from_slice(bytes) {
            Ok(t) => t,
            Err(e) => {
                return Some(Err(ApiError::bad_request(format!(
                    "the JSON ticket is not {{\"database\", \"sql_query\", \"query_type\"}}: {e}"
                ))));
            }
        };
        if !ticket.query_type.eq_ignore_ascii_case("sql") {
            return Some(Err(ApiError::bad_request(format!(
                "query_type {:?} is not supported: this hub answers SQL only",
                ticket.query_type
            ))));
        }
        if ticket.params.as_ref().is_some_and(|p| !p.is_empty()) {
            return Some(Err(ApiError::bad_request(
                "query parameters are not supported: put the values in the statement",
            )));
        }
        Some(Ok(Handle {
            sql: ticket.sql_query,
            database: ticket.database.filter(|d| !d.is_empty()),
            schema: None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let db = DatabaseName::new("plant").unwrap();
        let h = Handle::new("SELECT 1".into(), Some(&db));
        assert_eq!(Handle::decode(&h.encode()).unwrap(), h);
        assert!(Handle::decode(b"\x0a\x03abc").is_err());
        let bad_db = Handle {
            sql: "SELECT 1".into(),
            database: Some("../x".into()),
            schema: None,
        };
        assert!(bad_db.database().is_err());
        assert!(InfluxTicket::parse(b"\x0a\x01x").is_none());
        let t = InfluxTicket::parse(
            br#"{"database":"plant","sql_query":"SELECT 1","query_type":"sql"}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(t.sql, "SELECT 1");
        assert!(
            InfluxTicket::parse(br#"{"database":"p","sql_query":"x","query_type":"influxql"}"#)
                .unwrap()
                .is_err()
        );
        assert!(InfluxTicket::parse(b"{not json").unwrap().is_err());
        assert!(
            InfluxTicket::parse(br#"{"sql_query":"x","params":{"a":1}}"#)
                .unwrap()
                .is_err()
        );
    }
}
