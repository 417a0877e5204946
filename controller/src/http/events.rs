//! `GET /api/events`: what keeps the page live, as server-sent events.
//!
//! - `status`: the whole status (`/api/status`), first and at each change;
//! - `plan`: the plan (`/api/plan`), first and when a load's timeline
//!   changes (not at every pass, whose only news is the time);
//! - `switched`: one history record (`/api/history`), as it happens.
//!
//! The page reads it with `fetch` rather than `EventSource`, because only
//! `fetch` can send the token in a header. A reader that falls behind the
//! switches gets a fresh `status` instead of what it missed.

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use delestage_proto::json;
use http::StatusCode;
use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;
use tokio_stream::Stream;

use super::Dashboard;
use super::api::{ApiError, plan_value};
use crate::enforce::Event;
use crate::wire::{record_to_pb, status_to_pb};

/// What woke the stream's task.
enum Next {
    Status,
    Plan,
    Switch(Result<Event, RecvError>),
    Gone,
}

pub(crate) async fn stream(
    State(d): State<Dashboard>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, tonic::Status>>>, ApiError> {
    let (sink, stream) = d
        .streams
        .open::<SseEvent>()
        .map_err(|s| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, s.message()))?;
    let mut status = d.controller.watch_status();
    let mut plan = d.controller.watch_plan();
    let mut switches = d.controller.subscribe_events();
    tokio::spawn(async move {
        status.mark_unchanged();
        plan.mark_unchanged();
        let mut sent_plan = Value::Null;
        if !sink.send(status_event(&d)).await {
            return;
        }
        let mut next = Next::Plan;
        loop {
            let event = match next {
                Next::Status => Some(status_event(&d)),
                Next::Plan => plan_event(&d, &mut sent_plan),
                Next::Switch(Ok(Event::Switched(record))) => Some(named(
                    "switched",
                    &json::record_json(&record_to_pb(&record)),
                )),
                // A load's change is in the next status.
                Next::Switch(Ok(Event::LoadChanged { .. })) => None,
                Next::Switch(Err(RecvError::Lagged(_))) => Some(status_event(&d)),
                Next::Switch(Err(RecvError::Closed)) | Next::Gone => return,
            };
            if let Some(event) = event
                && !sink.send(event).await
            {
                return;
            }
            next = sink
                .until(async {
                    tokio::select! {
                        changed = status.changed() => if changed.is_ok() { Next::Status } else { Next::Gone },
                        changed = plan.changed() => if changed.is_ok() { Next::Plan } else { Next::Gone },
                        switch = switches.recv() => Next::Switch(switch),
                    }
                })
                .await
                .unwrap_or(Next::Gone);
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

fn named(name: &str, value: &Value) -> SseEvent {
    SseEvent::default().event(name).data(value.to_string())
}

fn status_event(d: &Dashboard) -> SseEvent {
    named(
        "status",
        &json::status_json(&status_to_pb(&d.controller.status())),
    )
}

/// The plan, unless its timelines are what was sent last.
fn plan_event(d: &Dashboard, sent: &mut Value) -> Option<SseEvent> {
    let plan = plan_value(d, None).ok()?;
    let key = timelines(&plan);
    if *sent == key {
        return None;
    }
    *sent = key;
    Some(named("plan", &plan))
}

/// A plan without what changes at every pass: when it was computed, and
/// so where each timeline starts.
fn timelines(plan: &Value) -> Value {
    let mut key = plan.clone();
    if let Some(map) = key.as_object_mut() {
        map.remove("computed_at");
    }
    if let Some(loads) = key["loads"].as_array_mut() {
        for load in loads {
            if let Some(first) = load["intervals"].get_mut(0).and_then(Value::as_object_mut) {
                first.remove("start");
            }
        }
    }
    key
}
