//! The gRPC service: Flight SQL ([`FerrySql`]) with InfluxDB 3's JSON
//! `DoGet` ticket in front of it, and every call counted in
//! `ferry_hub_flight_calls_total`.

use std::sync::Arc;

use arrow_flight::flight_service_server::FlightService;
use arrow_flight::{
    Action, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo, HandshakeRequest, PollInfo,
    SchemaResult, Ticket,
};
use tonic::{Request, Response, Status, Streaming};

use super::handle::InfluxTicket;
use super::service::FerrySql;
use super::{metadata, status};
use crate::metrics as m;
use crate::server::{AppState, PeerAddr};

/// The hub's Flight service.
#[derive(Debug, Clone)]
pub(super) struct Ferry {
    sql: Arc<FerrySql>,
}

impl Ferry {
    pub(super) fn new(state: AppState) -> Result<Self, crate::server::ApiError> {
        Ok(Ferry {
            sql: Arc::new(FerrySql::new(state)?),
        })
    }
}

fn counted<T>(call: &'static str, result: Result<T, Status>) -> Result<T, Status> {
    let code = match &result {
        Ok(_) => tonic::Code::Ok,
        Err(s) => s.code(),
    };
    metrics::counter!(m::FLIGHT_CALLS, "call" => call, "code" => status::label(code)).increment(1);
    result
}

type S = FerrySql;

#[tonic::async_trait]
impl FlightService for Ferry {
    type HandshakeStream = <S as FlightService>::HandshakeStream;
    type ListFlightsStream = <S as FlightService>::ListFlightsStream;
    type DoGetStream = <S as FlightService>::DoGetStream;
    type DoPutStream = <S as FlightService>::DoPutStream;
    type DoActionStream = <S as FlightService>::DoActionStream;
    type ListActionsStream = <S as FlightService>::ListActionsStream;
    type DoExchangeStream = <S as FlightService>::DoExchangeStream;

    async fn handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        counted("handshake", self.sql.handshake(request).await)
    }

    async fn list_flights(
        &self,
        request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        counted("list_flights", self.sql.list_flights(request).await)
    }

    async fn get_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        counted("get_flight_info", self.sql.get_flight_info(request).await)
    }

    async fn poll_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        counted("poll_flight_info", self.sql.poll_flight_info(request).await)
    }

    async fn get_schema(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        counted("get_schema", self.sql.get_schema(request).await)
    }

    /// InfluxDB 3's JSON ticket here; Flight SQL's tickets to [`FerrySql`].
    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        let result = match InfluxTicket::parse(&request.get_ref().ticket) {
            None => self.sql.do_get(request).await,
            Some(ticket) => self.influx_do_get(request, ticket).await,
        };
        counted("do_get", result)
    }

    async fn do_put(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        counted("do_put", self.sql.do_put(request).await)
    }

    async fn do_action(
        &self,
        request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        counted("do_action", self.sql.do_action(request).await)
    }

    async fn list_actions(
        &self,
        request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        counted("list_actions", self.sql.list_actions(request).await)
    }

    async fn do_exchange(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        counted("do_exchange", self.sql.do_exchange(request).await)
    }
}

impl Ferry {
    async fn influx_do_get(
        &self,
        request: Request<Ticket>,
        ticket: Result<super::handle::Handle, crate::server::ApiError>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let principal = metadata::reader(&self.sql.state, &request, "DoGet")
            .await
            .map_err(|e| status::from_api(&e))?;
        let handle = ticket.map_err(|e| status::from_api(&e))?;
        let remote = request.extensions().get::<PeerAddr>().map(|p| p.0);
        self.sql.results(&principal, handle, remote).await
    }
}
