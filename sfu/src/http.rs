//! The network form of the control API: HTTP/JSON on an internal port,
//! guarded by a shared secret (`Authorization: Bearer <secret>`, checked by
//! [`convene_proto::secret`] like every service-to-service secret).
//!
//! `POST /v1/request` takes an [`SfuRequest`] and answers an
//! [`SfuResponse`]; `GET /v1/events` streams [`SfuEvent`]s as server-sent
//! events. Both map one to one onto [`SfuHandle`], so a signaling service
//! in another process gets the same API as `convene up` in-process. The
//! event stream resumes where a client left it (`Last-Event-ID`, see
//! `event_log.rs`).

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::{get, post};
use axum::{Json, Router};
use convene_proto::secret::bearer_secret_matches;
use convene_proto::sfu::{SfuRequest, SfuResponse};
use futures::{Stream, StreamExt};
use tokio::sync::broadcast::error::RecvError;

use crate::core::CoreError;
use crate::error::SfuError;
use crate::event_log::{EventLog, Numbered};
use crate::handle::SfuHandle;

#[derive(Clone)]
struct AppState {
    handle: SfuHandle,
    secret: Arc<str>,
    log: Arc<EventLog>,
}

/// The control API; the event stream replays up to `replay` events to a
/// client that reconnects (`--sfu-event-replay`). Needs a Tokio runtime.
pub fn router(handle: SfuHandle, secret: &str, replay: usize) -> Router {
    let log = EventLog::start(&handle, replay);
    router_with_log(handle, secret, log)
}

/// [`router`] on a given event log (whose `close` ends the streams).
pub fn router_with_log(handle: SfuHandle, secret: &str, log: Arc<EventLog>) -> Router {
    Router::new()
        .route("/v1/request", post(request))
        .route("/v1/events", get(events))
        .with_state(AppState {
            handle,
            secret: Arc::from(secret),
            log,
        })
}

fn authorized(headers: &HeaderMap, secret: &str) -> bool {
    let authorization = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    bearer_secret_matches(authorization, secret)
}

fn status_of(e: &SfuError) -> (StatusCode, &'static str) {
    match e {
        SfuError::UnknownRoom(_) => (StatusCode::NOT_FOUND, "unknown_room"),
        SfuError::UnknownParticipant(_) => (StatusCode::NOT_FOUND, "unknown_participant"),
        SfuError::Core(CoreError::UnknownTrack(_)) => (StatusCode::NOT_FOUND, "unknown_track"),
        SfuError::Core(_) => (StatusCode::CONFLICT, "rejected"),
        SfuError::RoomFull(_) => (StatusCode::CONFLICT, "room_full"),
        SfuError::DuplicateParticipant(_) => (StatusCode::CONFLICT, "duplicate_participant"),
        SfuError::NoPendingOffer => (StatusCode::CONFLICT, "no_pending_offer"),
        SfuError::Sdp(_) => (StatusCode::BAD_REQUEST, "invalid_sdp"),
        SfuError::Negotiation(_) => (StatusCode::BAD_REQUEST, "negotiation_failed"),
        SfuError::NotPermitted => (StatusCode::FORBIDDEN, "not_permitted"),
        SfuError::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    }
}

async fn request(
    State(st): State<AppState>,
    headers: HeaderMap,
    Json(req): Json<SfuRequest>,
) -> (StatusCode, Json<SfuResponse>) {
    if !authorized(&headers, &st.secret) {
        let body = SfuResponse::Error {
            code: "unauthorized".into(),
            message: "missing or wrong bearer secret".into(),
        };
        return (StatusCode::UNAUTHORIZED, Json(body));
    }
    let h = &st.handle;
    let result = match req {
        SfuRequest::Join(r) => h
            .join_request(r)
            .await
            .map(|answer_sdp| SfuResponse::Answer { answer_sdp }),
        SfuRequest::Offer(r) => h
            .offer_request(r)
            .await
            .map(|answer_sdp| SfuResponse::Answer { answer_sdp }),
        SfuRequest::Answer(r) => h
            .handle_answer(&r.room_id, &r.participant_id, &r.answer_sdp)
            .await
            .map(|_| SfuResponse::Ok),
        SfuRequest::Subscribe(r) => h
            .subscribe(&r.room_id, &r.participant_id, &r.track_ids, r.max_quality)
            .await
            .map(|_| SfuResponse::Ok),
        SfuRequest::Unsubscribe(r) => h
            .unsubscribe(&r.room_id, &r.participant_id, &r.track_ids)
            .await
            .map(|_| SfuResponse::Ok),
        SfuRequest::SetMute(r) => h
            .set_mute(&r.room_id, &r.track_id, r.muted)
            .await
            .map(|_| SfuResponse::Ok),
        SfuRequest::RemoveParticipant(r) => h
            .remove_participant(&r.room_id, &r.participant_id)
            .await
            .map(|_| SfuResponse::Ok),
        SfuRequest::CloseRoom(r) => h.close_room(&r.room_id).await.map(|_| SfuResponse::Ok),
    };
    match result {
        Ok(r) => (StatusCode::OK, Json(r)),
        Err(e) => {
            let (status, code) = status_of(&e);
            let body = SfuResponse::Error {
                code: code.into(),
                message: e.to_string(),
            };
            (status, Json(body))
        }
    }
}

async fn events(
    State(st): State<AppState>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, StatusCode> {
    if !authorized(&headers, &st.secret) {
        return Err(StatusCode::UNAUTHORIZED);
    }
    let last = headers.get("last-event-id").and_then(|v| v.to_str().ok());
    let resume = st.log.resume(last);
    let log = st.log.clone();
    let event = move |n: &Numbered| {
        Ok(Event::default()
            .id(log.id_of(n.seq))
            .json_data(&*n.event)
            .unwrap_or_default())
    };
    // A stream that replays nothing opens with its position as its id, so
    // the client can always resume; `reset` says what it knew is void.
    let head = (resume.reset || resume.replay.is_empty()).then(|| {
        let name = if resume.reset { "reset" } else { "hello" };
        Ok(Event::default()
            .event(name)
            .id(st.log.id_of(resume.position))
            .data(st.log.instance()))
    });
    let replay: Vec<Result<Event, Infallible>> = head
        .into_iter()
        .chain(resume.replay.iter().map(&event))
        .collect();
    let live = futures::stream::unfold(resume.live, move |mut rx| {
        let event = event.clone();
        async move {
            match rx.recv().await {
                Ok(n) => Some((event(&n), rx)),
                // Too slow: end the stream; the client reopens it with
                // its last id and catches up from the log.
                Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => None,
            }
        }
    });
    let stream = futures::stream::iter(replay)
        .chain(live)
        .take_until(st.log.closed());
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
