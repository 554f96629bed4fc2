//! The waiting hall: a persisted queue of users asking to enter a
//! conference, one entry per (conference, user), ordered by an insertion
//! sequence number. Moderators admit or deny; every change is published on
//! the event bus after it is committed.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiResult;
use crate::extract::{Json, Path};

use convene_proto::control::{DenyRequest, Problem, WaitingEntry, WaitingStatus};
use convene_proto::events::ConferenceEvent;
use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use crate::conferences::lock;
use crate::db::{ms_to_dt, now_ms, uuid_col};
use crate::error::ApiError;
use crate::tokens::{revoke, Scope};
use crate::{validate, Actor, Control};

#[derive(Debug, Clone)]
pub(crate) struct EntryState {
    pub status: WaitingStatus,
    pub seq: i64,
    pub reason: Option<String>,
}

pub(crate) async fn entry_state(
    conn: &mut AnyConnection,
    conference_id: Uuid,
    user_id: Uuid,
) -> Result<Option<EntryState>, ApiError> {
    let row = sqlx::query(
        "SELECT status, seq, reason FROM waiting_entries WHERE conference_id = $1 AND user_id = $2",
    )
    .bind(conference_id.to_string())
    .bind(user_id.to_string())
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|r| {
        Ok(EntryState {
            status: WaitingStatus::parse(&r.try_get::<String, _>("status")?)
                .ok_or_else(|| ApiError::Internal("corrupt waiting status".into()))?,
            seq: r.try_get("seq")?,
            reason: r.try_get("reason")?,
        })
    })
    .transpose()
}

async fn next_seq(conn: &mut AnyConnection, conference_id: Uuid) -> Result<i64, ApiError> {
    let row = sqlx::query(
        "SELECT COALESCE(MAX(seq), 0) + 1 AS next FROM waiting_entries WHERE conference_id = $1",
    )
    .bind(conference_id.to_string())
    .fetch_one(&mut *conn)
    .await?;
    Ok(row.try_get("next")?)
}

async fn position(
    conn: &mut AnyConnection,
    conference_id: Uuid,
    seq: i64,
) -> Result<i64, ApiError> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS n FROM waiting_entries
         WHERE conference_id = $1 AND status = 'waiting' AND seq <= $2",
    )
    .bind(conference_id.to_string())
    .bind(seq)
    .fetch_one(&mut *conn)
    .await?;
    Ok(row.try_get("n")?)
}

/// Puts the user in the queue unless already waiting. Returns the queue
/// position and whether the user newly entered it. The caller must hold the
/// conference lock ([`lock`]) so sequence numbers cannot collide.
pub(crate) async fn enqueue(
    conn: &mut AnyConnection,
    conference_id: Uuid,
    user_id: Uuid,
    existing: Option<EntryState>,
) -> Result<(i64, bool), ApiError> {
    let now = now_ms();
    let (seq, queued) = match existing {
        Some(EntryState {
            status: WaitingStatus::Waiting,
            seq,
            ..
        }) => (seq, false),
        Some(_) => {
            let seq = next_seq(conn, conference_id).await?;
            sqlx::query(
                "UPDATE waiting_entries SET status = 'waiting', seq = $1, since = $2, updated_at = $2, reason = NULL
                 WHERE conference_id = $3 AND user_id = $4",
            )
            .bind(seq)
            .bind(now)
            .bind(conference_id.to_string())
            .bind(user_id.to_string())
            .execute(&mut *conn)
            .await?;
            (seq, true)
        }
        None => {
            let seq = next_seq(conn, conference_id).await?;
            sqlx::query(
                "INSERT INTO waiting_entries (conference_id, user_id, seq, status, since, updated_at, reason)
                 VALUES ($1, $2, $3, 'waiting', $4, $4, NULL)",
            )
            .bind(conference_id.to_string())
            .bind(user_id.to_string())
            .bind(seq)
            .bind(now)
            .execute(&mut *conn)
            .await?;
            (seq, true)
        }
    };
    Ok((position(conn, conference_id, seq).await?, queued))
}

/// Marks the user denied, creating the entry if needed (removal of a
/// participant who never waited).
pub(crate) async fn set_denied(
    conn: &mut AnyConnection,
    conference_id: Uuid,
    user_id: Uuid,
    reason: Option<&str>,
) -> Result<(), ApiError> {
    let now = now_ms();
    if entry_state(conn, conference_id, user_id).await?.is_some() {
        sqlx::query(
            "UPDATE waiting_entries SET status = 'denied', reason = $1, updated_at = $2
             WHERE conference_id = $3 AND user_id = $4",
        )
        .bind(reason)
        .bind(now)
        .bind(conference_id.to_string())
        .bind(user_id.to_string())
        .execute(&mut *conn)
        .await?;
    } else {
        let seq = next_seq(conn, conference_id).await?;
        sqlx::query(
            "INSERT INTO waiting_entries (conference_id, user_id, seq, status, since, updated_at, reason)
             VALUES ($1, $2, $3, 'denied', $4, $4, $5)",
        )
        .bind(conference_id.to_string())
        .bind(user_id.to_string())
        .bind(seq)
        .bind(now)
        .bind(reason)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Admits every waiting user; returns who was admitted, in queue order.
pub(crate) async fn admit_all_in_tx(
    conn: &mut AnyConnection,
    conference_id: Uuid,
) -> Result<Vec<Uuid>, ApiError> {
    let users: Vec<Uuid> = sqlx::query(
        "SELECT user_id FROM waiting_entries WHERE conference_id = $1 AND status = 'waiting' ORDER BY seq",
    )
    .bind(conference_id.to_string())
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| uuid_col(&r.try_get::<String, _>("user_id")?))
    .collect::<Result<_, _>>()?;
    sqlx::query(
        "UPDATE waiting_entries SET status = 'admitted', updated_at = $1
         WHERE conference_id = $2 AND status = 'waiting'",
    )
    .bind(now_ms())
    .bind(conference_id.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(users)
}

async fn entries(
    conn: &mut AnyConnection,
    conference_id: Uuid,
    user: Option<Uuid>,
) -> Result<Vec<WaitingEntry>, ApiError> {
    let rows = sqlx::query(
        "SELECT w.user_id, u.username, w.since, w.status, w.reason
         FROM waiting_entries w JOIN users u ON u.id = w.user_id
         WHERE w.conference_id = $1 ORDER BY w.seq",
    )
    .bind(conference_id.to_string())
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    let mut waiting_rank = 0;
    for r in &rows {
        let status = WaitingStatus::parse(&r.try_get::<String, _>("status")?)
            .ok_or_else(|| ApiError::Internal("corrupt waiting status".into()))?;
        let position = (status == WaitingStatus::Waiting).then(|| {
            waiting_rank += 1;
            waiting_rank
        });
        out.push(WaitingEntry {
            user_id: uuid_col(&r.try_get::<String, _>("user_id")?)?,
            username: r.try_get("username")?,
            since: ms_to_dt(r.try_get("since")?),
            status,
            position,
            reason: r.try_get("reason")?,
        });
    }
    if let Some(user) = user {
        out.retain(|e| e.user_id == user);
    }
    Ok(out)
}

async fn entry(
    conn: &mut AnyConnection,
    conference_id: Uuid,
    user_id: Uuid,
) -> Result<WaitingEntry, ApiError> {
    entries(conn, conference_id, Some(user_id))
        .await?
        .pop()
        .ok_or_else(|| ApiError::not_found("waiting entry"))
}

impl Control {
    /// Every waiting-hall entry of the conference in queue order (moderators).
    pub async fn list_waiting(
        &self,
        actor: &Actor,
        conference_id: Uuid,
    ) -> Result<Vec<WaitingEntry>, ApiError> {
        self.require_moderator(actor, conference_id).await?;
        let mut conn = self.db().pool.acquire().await?;
        entries(&mut conn, conference_id, None).await
    }

    /// Lets a waiting (or previously denied) user in. Their next join
    /// returns a room token.
    pub async fn admit(
        &self,
        actor: &Actor,
        conference_id: Uuid,
        user_id: Uuid,
    ) -> Result<WaitingEntry, ApiError> {
        let rec = self.require_moderator(actor, conference_id).await?;
        if rec.ended_at.is_some() {
            return Err(ApiError::ConferenceEnded);
        }
        let mut tx = self.db().pool.begin().await?;
        lock(&mut tx, conference_id).await?;
        let state = entry_state(&mut tx, conference_id, user_id)
            .await?
            .ok_or_else(|| ApiError::not_found("waiting entry"))?;
        let changed = state.status != WaitingStatus::Admitted;
        if changed {
            sqlx::query(
                "UPDATE waiting_entries SET status = 'admitted', reason = NULL, updated_at = $1
                 WHERE conference_id = $2 AND user_id = $3",
            )
            .bind(now_ms())
            .bind(conference_id.to_string())
            .bind(user_id.to_string())
            .execute(&mut *tx)
            .await?;
        }
        let out = entry(&mut tx, conference_id, user_id).await?;
        tx.commit().await?;
        if changed {
            self.emit(ConferenceEvent::WaitingAdmitted {
                conference_id,
                user_id,
            })
            .await;
        }
        Ok(out)
    }

    /// Refuses a user entry; their waiting-hall token is revoked and a
    /// further join answers 403.
    pub async fn deny(
        &self,
        actor: &Actor,
        conference_id: Uuid,
        user_id: Uuid,
        reason: Option<String>,
    ) -> Result<WaitingEntry, ApiError> {
        let reason = reason
            .map(|r| validate::text("reason", &r, 0, validate::REASON_MAX))
            .transpose()?
            .filter(|r| !r.is_empty());
        self.require_moderator(actor, conference_id).await?;
        let mut tx = self.db().pool.begin().await?;
        lock(&mut tx, conference_id).await?;
        entry_state(&mut tx, conference_id, user_id)
            .await?
            .ok_or_else(|| ApiError::not_found("waiting entry"))?;
        set_denied(&mut tx, conference_id, user_id, reason.as_deref()).await?;
        revoke(&mut tx, Scope::Conference, conference_id, user_id).await?;
        let out = entry(&mut tx, conference_id, user_id).await?;
        tx.commit().await?;
        self.emit(ConferenceEvent::WaitingDenied {
            conference_id,
            user_id,
            reason,
        })
        .await;
        Ok(out)
    }

    /// Admits everyone currently waiting; returns the admitted entries.
    pub async fn admit_all(
        &self,
        actor: &Actor,
        conference_id: Uuid,
    ) -> Result<Vec<WaitingEntry>, ApiError> {
        let rec = self.require_moderator(actor, conference_id).await?;
        if rec.ended_at.is_some() {
            return Err(ApiError::ConferenceEnded);
        }
        let mut tx = self.db().pool.begin().await?;
        lock(&mut tx, conference_id).await?;
        let users = admit_all_in_tx(&mut tx, conference_id).await?;
        let mut all = entries(&mut tx, conference_id, None).await?;
        tx.commit().await?;
        all.retain(|e| users.contains(&e.user_id));
        for user_id in users {
            self.emit(ConferenceEvent::WaitingAdmitted {
                conference_id,
                user_id,
            })
            .await;
        }
        Ok(all)
    }

    /// The whole queue (waiting entries carry their position), for the
    /// signaling service, which has already checked the caller's room token.
    pub async fn waiting_queue(&self, conference_id: Uuid) -> Result<Vec<WaitingEntry>, ApiError> {
        let mut conn = self.db().pool.acquire().await?;
        entries(&mut conn, conference_id, None).await
    }

    /// Sends a participant back to the waiting hall, at the end of the
    /// queue. Their room tokens are revoked so only a moderator's admit lets
    /// them in again.
    pub async fn move_to_waiting(
        &self,
        actor: &Actor,
        conference_id: Uuid,
        user_id: Uuid,
    ) -> Result<WaitingEntry, ApiError> {
        let rec = self.require_moderator(actor, conference_id).await?;
        if rec.ended_at.is_some() {
            return Err(ApiError::ConferenceEnded);
        }
        let mut tx = self.db().pool.begin().await?;
        lock(&mut tx, conference_id).await?;
        let role = crate::teams::role_in_tx(&mut tx, rec.team_id, user_id)
            .await?
            .ok_or_else(|| ApiError::not_found("participant"))?;
        if self.is_moderator(&mut tx, &rec, role, user_id).await? {
            return Err(ApiError::Conflict(
                "moderators cannot be sent to the waiting hall".into(),
            ));
        }
        // Someone already waiting keeps their place; anyone else goes last.
        let existing = entry_state(&mut tx, conference_id, user_id).await?;
        enqueue(&mut tx, conference_id, user_id, existing).await?;
        revoke(&mut tx, Scope::Conference, conference_id, user_id).await?;
        let out = entry(&mut tx, conference_id, user_id).await?;
        tx.commit().await?;
        self.emit(ConferenceEvent::MovedToWaiting {
            conference_id,
            user_id,
        })
        .await;
        Ok(out)
    }

    /// The actor leaves the waiting hall (e.g. closed the tab). A no-op
    /// unless they are currently waiting.
    pub async fn leave_waiting(&self, actor: &Actor, conference_id: Uuid) -> Result<(), ApiError> {
        self.conference_access(actor, conference_id).await?;
        let left = sqlx::query(
            "UPDATE waiting_entries SET status = 'left', updated_at = $1
             WHERE conference_id = $2 AND user_id = $3 AND status = 'waiting'",
        )
        .bind(now_ms())
        .bind(conference_id.to_string())
        .bind(actor.user_id.to_string())
        .execute(&self.db().pool)
        .await?
        .rows_affected()
            == 1;
        if left {
            self.emit(ConferenceEvent::WaitingLeft {
                conference_id,
                user_id: actor.user_id,
            })
            .await;
        }
        Ok(())
    }

    /// Records a waiter's heartbeat (the signaling service calls this while
    /// the waiter's socket lives) and returns its queue position, or `None`
    /// when the user is not waiting.
    pub async fn touch_waiting(
        &self,
        conference_id: Uuid,
        user_id: Uuid,
    ) -> Result<Option<i64>, ApiError> {
        sqlx::query(
            "UPDATE waiting_entries SET updated_at = $1
             WHERE conference_id = $2 AND user_id = $3 AND status = 'waiting'",
        )
        .bind(now_ms())
        .bind(conference_id.to_string())
        .bind(user_id.to_string())
        .execute(&self.db().pool)
        .await?;
        let mut conn = self.db().pool.acquire().await?;
        let entry = entries(&mut conn, conference_id, None)
            .await?
            .into_iter()
            .find(|e| e.user_id == user_id);
        Ok(entry.and_then(|e| e.position))
    }

    /// Waiters without a heartbeat for `waiting_ttl_secs` leave the hall.
    /// Safe to run on every replica at once: each entry leaves once.
    pub async fn expire_waiters(&self) -> Result<usize, ApiError> {
        let ttl_ms =
            i64::try_from(self.config().waiting_ttl_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        let cutoff = now_ms().saturating_sub(ttl_ms);
        let stale = sqlx::query(
            "SELECT conference_id, user_id FROM waiting_entries
             WHERE status = 'waiting' AND updated_at < $1",
        )
        .bind(cutoff)
        .fetch_all(&self.db().pool)
        .await?;
        let mut expired = 0;
        for row in stale {
            let conference: String = row.try_get("conference_id")?;
            let user: String = row.try_get("user_id")?;
            let left = sqlx::query(
                "UPDATE waiting_entries SET status = 'left', updated_at = $1
                 WHERE conference_id = $2 AND user_id = $3 AND status = 'waiting' AND updated_at < $4",
            )
            .bind(now_ms())
            .bind(&conference)
            .bind(&user)
            .bind(cutoff)
            .execute(&self.db().pool)
            .await?
            .rows_affected()
                == 1;
            let (Ok(conference_id), Ok(user_id)) = (conference.parse(), user.parse()) else {
                continue;
            };
            if left {
                expired += 1;
                tracing::info!(conference = %conference_id, user = %user_id, "waiter expired without heartbeat");
                self.emit(ConferenceEvent::WaitingLeft {
                    conference_id,
                    user_id,
                })
                .await;
            }
        }
        Ok(expired)
    }
}

// ------------------------------------------------------------------ HTTP

/// The waiting-hall routes of the REST API.
pub(crate) fn routes() -> OpenApiRouter<Control> {
    OpenApiRouter::new()
        .routes(routes!(list_waiting))
        .routes(routes!(admit))
        .routes(routes!(deny))
        .routes(routes!(admit_all))
        .routes(routes!(leave_waiting))
}

#[utoipa::path(get, path = "/v1/conferences/{id}/waiting", tag = "waiting", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Conference id")),
    responses((status = 200, body = Vec<WaitingEntry>), (status = 403, body = Problem)))]
async fn list_waiting(
    State(c): State<Control>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Vec<WaitingEntry>>> {
    Ok(Json(c.list_waiting(&actor, id).await?))
}

#[utoipa::path(post, path = "/v1/conferences/{id}/waiting/{user_id}/admit", tag = "waiting", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Conference id"), ("user_id" = Uuid, Path, description = "User id")),
    responses((status = 200, body = WaitingEntry), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn admit(
    State(c): State<Control>,
    actor: Actor,
    Path((id, user_id)): Path<(Uuid, Uuid)>,
) -> ApiResult<Json<WaitingEntry>> {
    Ok(Json(c.admit(&actor, id, user_id).await?))
}

/// Deny entry; the body `{"reason": "..."}` is optional.
#[utoipa::path(post, path = "/v1/conferences/{id}/waiting/{user_id}/deny", tag = "waiting", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Conference id"), ("user_id" = Uuid, Path, description = "User id")),
    request_body(content = DenyRequest, description = "optional"),
    responses((status = 200, body = WaitingEntry), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn deny(
    State(c): State<Control>,
    actor: Actor,
    Path((id, user_id)): Path<(Uuid, Uuid)>,
    body: Bytes,
) -> ApiResult<Json<WaitingEntry>> {
    let req: DenyRequest = if body.iter().all(u8::is_ascii_whitespace) {
        DenyRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => ApiError::Validation(e.to_string()),
            _ => ApiError::BadRequest(e.to_string()),
        })?
    };
    Ok(Json(c.deny(&actor, id, user_id, req.reason).await?))
}

#[utoipa::path(post, path = "/v1/conferences/{id}/waiting/admit-all", tag = "waiting", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Conference id")),
    responses((status = 200, body = Vec<WaitingEntry>), (status = 403, body = Problem)))]
async fn admit_all(
    State(c): State<Control>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Vec<WaitingEntry>>> {
    Ok(Json(c.admit_all(&actor, id).await?))
}

/// Leave the waiting hall.
#[utoipa::path(post, path = "/v1/conferences/{id}/waiting/leave", tag = "waiting", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Conference id")),
    responses((status = 204), (status = 404, body = Problem)))]
async fn leave_waiting(
    State(c): State<Control>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    c.leave_waiting(&actor, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
