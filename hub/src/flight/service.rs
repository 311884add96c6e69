//! The Flight SQL commands the hub answers (everything a read-only SQL
//! engine can): statements, prepared statements (without parameters),
//! `GetSqlInfo`, `GetCatalogs`, `GetDbSchemas`, `GetTables` (with
//! `include_schema`), `GetTableTypes`. Updates, ingest, Substrait and
//! transactions answer `UNIMPLEMENTED`.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::server::FlightSqlService;
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, Any, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandPreparedStatementQuery,
    CommandStatementQuery, ProstMessageExt, SqlInfo, SqlSupportedCaseSensitivity,
    SqlSupportedTransaction, TicketStatementQuery,
};
use arrow_flight::utils::batches_to_flight_data;
use arrow_flight::{
    Action, FlightData, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest,
    HandshakeResponse, IpcMessage, SchemaAsIpc, Ticket,
};
use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::{Schema, SchemaRef};
use deltalake::arrow::ipc::writer::IpcWriteOptions;
use futures_util::{Stream, TryStreamExt};
use prost::Message;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};

use super::handle::Handle;
use super::{TRUNCATED, catalog, metadata, status};
use crate::auth::Principal;
use crate::query::{self, Statement, engine, show};
use crate::server::{ApiError, AppState, PeerAddr};

type DoGetStream = Pin<Box<dyn Stream<Item = Result<FlightData, Status>> + Send + 'static>>;

/// The Flight SQL service over the hub's state.
#[derive(Clone)]
pub(super) struct FerrySql {
    pub(super) state: AppState,
    info: Arc<SqlInfoData>,
}

impl std::fmt::Debug for FerrySql {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FerrySql").finish_non_exhaustive()
    }
}

fn st(e: ApiError) -> Status {
    status::from_api(&e)
}

fn peer<T>(request: &Request<T>) -> Option<SocketAddr> {
    request.extensions().get::<PeerAddr>().map(|p| p.0)
}

impl FerrySql {
    pub(super) fn new(state: AppState) -> Result<Self, ApiError> {
        let mut b = SqlInfoDataBuilder::new();
        b.append(SqlInfo::FlightSqlServerName, "Ferry");
        b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
        b.append(SqlInfo::FlightSqlServerArrowVersion, "59");
        b.append(SqlInfo::FlightSqlServerReadOnly, true);
        b.append(SqlInfo::FlightSqlServerSql, true);
        b.append(SqlInfo::FlightSqlServerSubstrait, false);
        b.append(
            SqlInfo::FlightSqlServerTransaction,
            SqlSupportedTransaction::None as i32,
        );
        b.append(SqlInfo::FlightSqlServerCancel, false);
        let timeout = i32::try_from(state.config.query.timeout.as_millis()).unwrap_or(i32::MAX);
        b.append(SqlInfo::FlightSqlServerStatementTimeout, timeout);
        b.append(SqlInfo::SqlDdlCatalog, false);
        b.append(SqlInfo::SqlDdlSchema, false);
        b.append(SqlInfo::SqlDdlTable, false);
        b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
        b.append(
            SqlInfo::SqlIdentifierCase,
            SqlSupportedCaseSensitivity::SqlCaseSensitivityLowercase as i32,
        );
        b.append(
            SqlInfo::SqlQuotedIdentifierCase,
            // Quoted identifiers keep their case; Flight SQL has no value
            // for "case sensitive", so: unknown.
            SqlSupportedCaseSensitivity::SqlCaseSensitivityUnknown as i32,
        );
        let info = b
            .build()
            .map_err(|e| ApiError::internal("Flight SQL info", e))?;
        Ok(FerrySql {
            state,
            info: Arc::new(info),
        })
    }

    /// The columns `handle` answers, planned (not run) for `principal` on
    /// the query executor.
    async fn schema_of(
        &self,
        principal: &Principal,
        handle: &Handle,
    ) -> Result<SchemaRef, ApiError> {
        let database = handle.database()?;
        let base = self.state.query.session_base().for_principal(principal);
        let tables = self.state.tables.clone();
        if let Some(s) = show::parse(&handle.sql) {
            let out = show::run(&tables, s, database.as_ref(), 1, base.readable.as_deref()).await?;
            return Ok(out.schema);
        }
        let limits = query::limits(&self.state.config.query);
        let probe = engine::Probe::new(self.state.query.memory_pool());
        let sql = handle.sql.clone();
        let cancel = tokio_util::sync::CancellationToken::new();
        self.state
            .query
            .run(&principal.key(), &cancel, async move {
                engine::output_schema(&tables, &sql, database.as_ref(), base, limits, probe).await
            })
            .await
    }

    /// A `FlightInfo` of one endpoint on this connection whose ticket is
    /// `ticket`.
    fn info(
        schema: &Schema,
        ticket: Vec<u8>,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Status> {
        let endpoint = FlightEndpoint::new().with_ticket(Ticket::new(ticket));
        let info = FlightInfo::new()
            .try_with_schema(schema)
            .map_err(|e| Status::internal(format!("encoding the schema: {e}")))?
            .with_endpoint(endpoint)
            .with_descriptor(descriptor);
        Ok(Response::new(info))
    }

    /// Runs `handle` for `principal` and streams its rows, encoded as
    /// Flight data on the query runtime (as HTTP answers are encoded
    /// there): the threads that serve calls only send.
    pub(super) async fn results(
        &self,
        principal: &Principal,
        handle: Handle,
        remote: Option<SocketAddr>,
    ) -> Result<Response<DoGetStream>, Status> {
        let statement = Statement {
            database: handle.database().map_err(st)?,
            sql: handle.sql,
            remote,
        };
        let answer = query::execute(&self.state, principal, statement, |out, _| {
            let bytes = out.bytes;
            let data = batches_to_flight_data(&out.schema, out.batches)
                .map_err(|e| ApiError::internal("encoding the answer as Flight data", e))?;
            Ok(Encoded {
                data,
                rows: out.row_count,
                bytes,
                truncated: out.truncated,
            })
        })
        .await
        .map_err(|e| st(metadata::denied(&self.state, principal, "DoGet", e)))?;
        let truncated = if answer.truncated { "true" } else { "false" };
        let stream = futures_util::stream::iter(answer.data.into_iter().map(Ok));
        let mut response: Response<DoGetStream> = Response::new(Box::pin(stream));
        response
            .metadata_mut()
            .insert(TRUNCATED, MetadataValue::from_static(truncated));
        Ok(response)
    }
}

/// An answer encoded as Flight data (the schema first).
struct Encoded {
    data: Vec<FlightData>,
    rows: usize,
    bytes: usize,
    truncated: bool,
}

impl query::Answered for Encoded {
    fn rows(&self) -> usize {
        self.rows
    }
    fn size(&self) -> usize {
        self.bytes
    }
}

/// `batches` as Flight data (the schema first, also when there are none).
fn batches(schema: SchemaRef, batches: Vec<RecordBatch>) -> DoGetStream {
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(futures_util::stream::iter(batches.into_iter().map(Ok)))
        .map_err(Status::from);
    Box::pin(stream)
}

fn one<E: std::fmt::Display>(
    batch: Result<RecordBatch, E>,
) -> Result<Response<DoGetStream>, Status> {
    let batch = batch.map_err(|e| Status::internal(format!("building the answer: {e}")))?;
    Ok(Response::new(batches(batch.schema(), vec![batch])))
}

#[tonic::async_trait]
impl FlightSqlService for FerrySql {
    type FlightService = FerrySql;

    /// Basic credentials (the token as the password, any user name) or a
    /// bearer token; answers the token as `authorization: Bearer` for the
    /// calls that follow.
    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        let (_, secret) = metadata::caller(&self.state, &request, "Handshake")
            .await
            .map_err(st)?;
        let reply = HandshakeResponse {
            protocol_version: 0,
            payload: Default::default(),
        };
        let stream = futures_util::stream::iter([Ok(reply)]);
        let mut response: Response<Pin<Box<dyn Stream<Item = _> + Send>>> =
            Response::new(Box::pin(stream));
        if let Some(secret) = secret {
            let value = MetadataValue::try_from(format!("Bearer {secret}"))
                .map_err(|_| Status::invalid_argument("the token is not ASCII"))?;
            response.metadata_mut().insert("authorization", value);
        }
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let principal = metadata::reader(&self.state, &request, "GetFlightInfo")
            .await
            .map_err(st)?;
        let handle = Handle::new(
            query.query,
            metadata::database(&request).map_err(st)?.as_ref(),
        );
        let schema = self.schema_of(&principal, &handle).await.map_err(st)?;
        let ticket = TicketStatementQuery {
            statement_handle: handle.encode().into(),
        };
        Self::info(
            &schema,
            ticket.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let principal = metadata::reader(&self.state, &request, "GetFlightInfo")
            .await
            .map_err(st)?;
        let handle = Handle::decode(&cmd.prepared_statement_handle).map_err(st)?;
        // Planned when it was prepared; planned again only for a handle
        // without its schema.
        let schema = match handle.schema() {
            Some(s) => Arc::new(s),
            None => self.schema_of(&principal, &handle).await.map_err(st)?,
        };
        let ticket = TicketStatementQuery {
            statement_handle: cmd.prepared_statement_handle,
        };
        Self::info(
            &schema,
            ticket.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let principal = metadata::reader(&self.state, &request, "DoGet")
            .await
            .map_err(st)?;
        let handle = Handle::decode(&ticket.statement_handle).map_err(st)?;
        self.results(&principal, handle, peer(&request)).await
    }

    async fn do_get_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let principal = metadata::reader(&self.state, &request, "DoGet")
            .await
            .map_err(st)?;
        let handle = Handle::decode(&cmd.prepared_statement_handle).map_err(st)?;
        self.results(&principal, handle, peer(&request)).await
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let principal = metadata::reader(&self.state, &request, "CreatePreparedStatement")
            .await
            .map_err(st)?;
        let handle = Handle::new(
            query.query,
            metadata::database(&request).map_err(st)?.as_ref(),
        );
        let schema = self.schema_of(&principal, &handle).await.map_err(st)?;
        let IpcMessage(dataset_schema) = SchemaAsIpc::new(&schema, &IpcWriteOptions::default())
            .try_into()
            .map_err(|e: deltalake::arrow::error::ArrowError| {
                Status::internal(format!("encoding the schema: {e}"))
            })?;
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle.with_schema(&dataset_schema).encode().into(),
            dataset_schema,
            parameter_schema: Default::default(),
        })
    }

    /// Nothing is kept for a prepared statement: closing is a no-op.
    async fn do_action_close_prepared_statement(
        &self,
        _query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        metadata::reader(&self.state, &request, "ClosePreparedStatement")
            .await
            .map_err(st)?;
        Ok(())
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        metadata::reader(&self.state, &request, "GetFlightInfo")
            .await
            .map_err(st)?;
        let schema = query.clone().into_builder(&self.info).schema();
        Self::info(
            &schema,
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        metadata::reader(&self.state, &request, "DoGet")
            .await
            .map_err(st)?;
        one(query.into_builder(&self.info).build())
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        metadata::reader(&self.state, &request, "GetFlightInfo")
            .await
            .map_err(st)?;
        let schema = query.into_builder().schema();
        Self::info(
            &schema,
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        metadata::reader(&self.state, &request, "DoGet")
            .await
            .map_err(st)?;
        let mut builder = query.into_builder();
        builder.append(catalog::catalog_name(&self.state));
        one(builder.build())
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        metadata::reader(&self.state, &request, "GetFlightInfo")
            .await
            .map_err(st)?;
        let schema = query.clone().into_builder().schema();
        Self::info(
            &schema,
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let principal = metadata::reader(&self.state, &request, "DoGet")
            .await
            .map_err(st)?;
        let batch = catalog::schemas(&self.state, &principal, query)
            .await
            .map_err(st)?;
        one(Ok::<_, std::convert::Infallible>(batch))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        metadata::reader(&self.state, &request, "GetFlightInfo")
            .await
            .map_err(st)?;
        let schema = query.clone().into_builder().schema();
        Self::info(
            &schema,
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let principal = metadata::reader(&self.state, &request, "DoGet")
            .await
            .map_err(st)?;
        let batch = catalog::tables(&self.state, &principal, query)
            .await
            .map_err(st)?;
        one(Ok::<_, std::convert::Infallible>(batch))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        metadata::reader(&self.state, &request, "GetFlightInfo")
            .await
            .map_err(st)?;
        let schema = query.into_builder().schema();
        Self::info(
            &schema,
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        metadata::reader(&self.state, &request, "DoGet")
            .await
            .map_err(st)?;
        let mut builder = query.into_builder();
        for t in catalog::TABLE_TYPES {
            builder.append(t);
        }
        one(builder.build())
    }

    async fn do_get_fallback(
        &self,
        _request: Request<Ticket>,
        message: Any,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        Err(Status::unimplemented(format!(
            "DoGet of {} is not supported by this hub (read-only SQL)",
            message.type_url
        )))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
