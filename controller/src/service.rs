//! The gRPC face of the controller: `delestage.controller.v1.ControllerService`.
//!
//! Reads what the reconcile loop publishes; the only writes are overrides,
//! which wake the loop.

use std::sync::Arc;

use delestage_proto::controller::v1 as pb;
use delestage_proto::time::{from_pb, to_pb};
use delestage_runtime::stream::{StreamSlots, WatchStream, forward_broadcast, forward_watch};
use pb::controller_service_server::ControllerService;
use tonic::{Request, Response, Status};

use crate::enforce::{Controller, Event};
use crate::wire::{
    HISTORY_DEFAULT, HISTORY_MAX, load_status_to_pb, override_to_pb, plan_to_pb, record_to_pb,
    status_to_pb,
};

pub(crate) struct ControllerApi {
    controller: Arc<Controller>,
    /// Caps the Watch* streams, and ends them at shutdown.
    streams: StreamSlots,
}

impl ControllerApi {
    pub(crate) fn new(controller: Arc<Controller>, streams: StreamSlots) -> Self {
        Self {
            controller,
            streams,
        }
    }

    pub(crate) fn into_server(
        self,
    ) -> pb::controller_service_server::ControllerServiceServer<Self> {
        pb::controller_service_server::ControllerServiceServer::new(self)
            .max_decoding_message_size(delestage_runtime::grpc::MAX_REQUEST_BYTES)
    }
}

#[tonic::async_trait]
impl ControllerService for ControllerApi {
    async fn get_status(
        &self,
        _request: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::GetStatusResponse>, Status> {
        Ok(Response::new(pb::GetStatusResponse {
            status: Some(status_to_pb(&self.controller.status())),
        }))
    }

    type WatchStatusStream = WatchStream<pb::WatchStatusResponse>;

    async fn watch_status(
        &self,
        _request: Request<pb::WatchStatusRequest>,
    ) -> Result<Response<Self::WatchStatusStream>, Status> {
        let (sink, stream) = self.streams.open()?;
        forward_watch(sink, self.controller.watch_status(), |status| {
            pb::WatchStatusResponse {
                status: Some(status_to_pb(status)),
            }
        });
        Ok(Response::new(stream))
    }

    type WatchEventsStream = WatchStream<pb::WatchEventsResponse>;

    async fn watch_events(
        &self,
        _request: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        let (sink, stream) = self.streams.open()?;
        let events = self.controller.subscribe_events();
        let controller = Arc::clone(&self.controller);
        forward_broadcast(
            sink,
            status_event(&self.controller),
            events,
            event_to_pb,
            // Fell behind: start again from the whole status.
            move || std::future::ready(status_event(&controller)),
        );
        Ok(Response::new(stream))
    }

    async fn get_plan(
        &self,
        request: Request<pb::GetPlanRequest>,
    ) -> Result<Response<pb::GetPlanResponse>, Status> {
        let wanted = request.into_inner().load;
        let plan = self.controller.plan();
        if let Some(name) = &wanted
            && plan.load(name).is_none()
        {
            return Err(crate::Error::UnknownLoad(name.clone()).into());
        }
        Ok(Response::new(plan_to_pb(
            &plan,
            self.controller.loads(),
            wanted.as_deref(),
        )))
    }

    async fn set_override(
        &self,
        request: Request<pb::SetOverrideRequest>,
    ) -> Result<Response<pb::SetOverrideResponse>, Status> {
        let req = request.into_inner();
        let until = req
            .until
            .as_ref()
            .ok_or_else(|| Status::invalid_argument("until: required (when the override ends)"))?;
        let until =
            from_pb(until).ok_or_else(|| Status::invalid_argument("until: not a valid time"))?;
        let o = self
            .controller
            .set_override(&req.load, req.powered, until, req.force, "grpc")
            .await?;
        Ok(Response::new(pb::SetOverrideResponse {
            r#override: Some(override_to_pb(&req.load, &o)),
        }))
    }

    async fn clear_override(
        &self,
        request: Request<pb::ClearOverrideRequest>,
    ) -> Result<Response<pb::ClearOverrideResponse>, Status> {
        let cleared = self
            .controller
            .clear_override(&request.into_inner().load, "grpc")
            .await?;
        Ok(Response::new(pb::ClearOverrideResponse { cleared }))
    }

    async fn get_history(
        &self,
        request: Request<pb::GetHistoryRequest>,
    ) -> Result<Response<pb::GetHistoryResponse>, Status> {
        let req = request.into_inner();
        let since = match &req.since {
            Some(t) => Some(
                from_pb(t).ok_or_else(|| Status::invalid_argument("since: not a valid time"))?,
            ),
            None => None,
        };
        let limit = match req.limit as usize {
            0 => HISTORY_DEFAULT,
            n => n.min(HISTORY_MAX),
        };
        let load = (!req.load.is_empty()).then_some(req.load.as_str());
        let records = self.controller.history(load, since, limit).await;
        Ok(Response::new(pb::GetHistoryResponse {
            records: records.iter().map(record_to_pb).collect(),
        }))
    }
}

fn status_event(controller: &Controller) -> pb::WatchEventsResponse {
    let status = controller.status();
    pb::WatchEventsResponse {
        at: Some(to_pb(status.at)),
        event: Some(pb::watch_events_response::Event::Status(status_to_pb(
            &status,
        ))),
    }
}

fn event_to_pb(event: Event) -> pb::WatchEventsResponse {
    match event {
        Event::Switched(record) => pb::WatchEventsResponse {
            at: Some(to_pb(record.at)),
            event: Some(pb::watch_events_response::Event::Switched(record_to_pb(
                &record,
            ))),
        },
        Event::LoadChanged { at, status } => pb::WatchEventsResponse {
            at: Some(to_pb(at)),
            event: Some(pb::watch_events_response::Event::LoadChanged(
                load_status_to_pb(&status),
            )),
        },
    }
}
