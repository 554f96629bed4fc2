//! Conferences: scheduling, moderators, ending, joining (room tokens) and
//! removing participants.
//!
//! Moderators are the conference's explicit moderators plus the team's
//! admins, so a conference whose moderators all left the team is never
//! orphaned.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiResult;
use crate::extract::{Json, Path, Query};

use std::collections::BTreeSet;

use convene_proto::control::{
    Conference, CreateConferenceRequest, Grants, JoinConferenceResponse, Page, Problem, TeamRole,
    UpdateConferenceRequest, WaitingEntry, WaitingStatus,
};
use convene_proto::events::{ConferenceEvent, RemovalReason};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use crate::db::{ms_to_dt, now_ms, uuid_col};
use crate::error::ApiError;
use crate::pagination::{Cursor, PageParams};
use crate::teams::role_in_tx;
use crate::tokens::{revoke, Scope};
use crate::waiting::{self, EntryState};
use crate::{validate, Actor, Control};

/// Most moderators a single update may add or remove.
const MAX_MODERATOR_CHANGES: usize = 100;

/// A conference row as stored.
#[derive(Debug, Clone)]
pub(crate) struct ConfRecord {
    pub id: Uuid,
    pub team_id: Uuid,
    pub title: String,
    pub starts_at: i64,
    pub waiting_hall: bool,
    pub created_by: Uuid,
    pub created_at: i64,
    pub ended_at: Option<i64>,
}

const CONF_SELECT: &str =
    "SELECT id, team_id, title, starts_at, waiting_hall, created_by, created_at, ended_at FROM conferences";

fn record_from_row(row: &AnyRow) -> Result<ConfRecord, ApiError> {
    Ok(ConfRecord {
        id: uuid_col(&row.try_get::<String, _>("id")?)?,
        team_id: uuid_col(&row.try_get::<String, _>("team_id")?)?,
        title: row.try_get("title")?,
        starts_at: row.try_get("starts_at")?,
        waiting_hall: row.try_get::<i64, _>("waiting_hall")? != 0,
        created_by: uuid_col(&row.try_get::<String, _>("created_by")?)?,
        created_at: row.try_get("created_at")?,
        ended_at: row.try_get("ended_at")?,
    })
}

pub(crate) async fn load(
    conn: &mut AnyConnection,
    id: Uuid,
) -> Result<Option<ConfRecord>, ApiError> {
    let row = sqlx::query(&format!("{CONF_SELECT} WHERE id = $1"))
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(record_from_row).transpose()
}

async fn moderators(conn: &mut AnyConnection, id: Uuid) -> Result<Vec<Uuid>, ApiError> {
    sqlx::query(
        "SELECT user_id FROM conference_moderators WHERE conference_id = $1 ORDER BY user_id",
    )
    .bind(id.to_string())
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| uuid_col(&r.try_get::<String, _>("user_id")?))
    .collect()
}

async fn is_explicit_moderator(
    conn: &mut AnyConnection,
    id: Uuid,
    user_id: Uuid,
) -> Result<bool, ApiError> {
    Ok(sqlx::query(
        "SELECT 1 AS x FROM conference_moderators WHERE conference_id = $1 AND user_id = $2",
    )
    .bind(id.to_string())
    .bind(user_id.to_string())
    .fetch_optional(&mut *conn)
    .await?
    .is_some())
}

/// Serialises joins and moderation of one conference on PostgreSQL (row
/// lock), so queue sequence numbers and status changes never race.
pub(crate) async fn lock(conn: &mut AnyConnection, id: Uuid) -> Result<(), ApiError> {
    sqlx::query("UPDATE conferences SET title = title WHERE id = $1")
        .bind(id.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn view(conn: &mut AnyConnection, rec: ConfRecord) -> Result<Conference, ApiError> {
    let moderators = moderators(conn, rec.id).await?;
    Ok(Conference {
        id: rec.id,
        team_id: rec.team_id,
        title: rec.title,
        starts_at: ms_to_dt(rec.starts_at),
        waiting_hall: rec.waiting_hall,
        moderators,
        created_by: rec.created_by,
        created_at: ms_to_dt(rec.created_at),
        ended_at: rec.ended_at.map(ms_to_dt),
    })
}

fn full_grants(moderator: bool) -> Grants {
    Grants {
        can_publish: true,
        can_subscribe: true,
        can_publish_data: true,
        moderator,
        waiting: false,
    }
}

fn waiting_grants() -> Grants {
    Grants {
        waiting: true,
        ..Grants::default()
    }
}

impl Control {
    /// Loads a conference the actor may see (member of its team); anything
    /// else is "not found".
    pub(crate) async fn conference_access(
        &self,
        actor: &Actor,
        id: Uuid,
    ) -> Result<(ConfRecord, TeamRole), ApiError> {
        let mut conn = self.db().pool.acquire().await?;
        let rec = load(&mut conn, id)
            .await?
            .ok_or_else(|| ApiError::not_found("conference"))?;
        drop(conn);
        let role = self
            .membership(rec.team_id, actor.user_id)
            .await?
            .ok_or_else(|| ApiError::not_found("conference"))?;
        Ok((rec, role))
    }

    pub(crate) async fn is_moderator(
        &self,
        conn: &mut AnyConnection,
        rec: &ConfRecord,
        role: TeamRole,
        user_id: Uuid,
    ) -> Result<bool, ApiError> {
        Ok(role == TeamRole::Admin || is_explicit_moderator(conn, rec.id, user_id).await?)
    }

    /// Whether `user_id` moderates conference `id` of `team_id` right now:
    /// a team admin or a named moderator. `None` when the user is no longer
    /// in the team.
    pub(crate) async fn moderates_now(
        &self,
        id: Uuid,
        team_id: Uuid,
        user_id: Uuid,
    ) -> Result<Option<bool>, ApiError> {
        let Some(role) = self.membership(team_id, user_id).await? else {
            return Ok(None);
        };
        if role == TeamRole::Admin {
            return Ok(Some(true));
        }
        let mut conn = self.db().pool.acquire().await?;
        Ok(Some(is_explicit_moderator(&mut conn, id, user_id).await?))
    }

    /// Tells rooms a user's moderator grant for a conference as it stands
    /// now, read after the change was committed so that the latest of
    /// several events carries the latest state.
    pub(crate) async fn emit_moderator_grant(&self, id: Uuid, team_id: Uuid, user_id: Uuid) {
        match self.moderates_now(id, team_id, user_id).await {
            Ok(Some(moderator)) => {
                self.emit(ConferenceEvent::ModeratorChanged {
                    conference_id: id,
                    user_id,
                    moderator,
                })
                .await
            }
            // Gone from the team: `participant_removed` deals with them.
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %e, conference = %id, user = %user_id, "reading a moderator grant failed")
            }
        }
    }

    pub(crate) async fn require_moderator(
        &self,
        actor: &Actor,
        id: Uuid,
    ) -> Result<ConfRecord, ApiError> {
        let (rec, role) = self.conference_access(actor, id).await?;
        let mut conn = self.db().pool.acquire().await?;
        if self
            .is_moderator(&mut conn, &rec, role, actor.user_id)
            .await?
        {
            Ok(rec)
        } else {
            Err(ApiError::Forbidden("only moderators may do this".into()))
        }
    }

    pub async fn create_conference(
        &self,
        actor: &Actor,
        team_id: Uuid,
        req: CreateConferenceRequest,
    ) -> Result<Conference, ApiError> {
        self.require_member(actor, team_id).await?;
        let title = validate::text("title", &req.title, 1, validate::TITLE_MAX)?;
        let id = Uuid::new_v4();
        let now = now_ms();
        let mut tx = self.db().pool.begin().await?;
        sqlx::query(
            "INSERT INTO conferences (id, team_id, title, starts_at, waiting_hall, created_by, created_at, ended_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, NULL)",
        )
        .bind(id.to_string())
        .bind(team_id.to_string())
        .bind(&title)
        .bind(req.starts_at.timestamp_millis())
        .bind(i64::from(req.waiting_hall))
        .bind(actor.user_id.to_string())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO conference_moderators (conference_id, user_id) VALUES ($1, $2)")
            .bind(id.to_string())
            .bind(actor.user_id.to_string())
            .execute(&mut *tx)
            .await?;
        let rec = load(&mut tx, id)
            .await?
            .ok_or_else(|| ApiError::Internal("conference vanished".into()))?;
        let conf = view(&mut tx, rec).await?;
        tx.commit().await?;
        Ok(conf)
    }

    /// The team's conferences in creation order.
    pub async fn list_conferences(
        &self,
        actor: &Actor,
        team_id: Uuid,
        params: &PageParams,
    ) -> Result<Page<Conference>, ApiError> {
        self.require_member(actor, team_id).await?;
        let page = self.page(params)?;
        let mut conn = self.db().pool.acquire().await?;
        let rows = sqlx::query(&format!(
            "{CONF_SELECT} WHERE team_id = $1
               AND (created_at > $2 OR (created_at = $2 AND id > $3))
             ORDER BY created_at, id LIMIT $4"
        ))
        .bind(team_id.to_string())
        .bind(page.after.ts)
        .bind(&page.after.id)
        .bind(page.fetch_limit())
        .fetch_all(&mut *conn)
        .await?;
        let mut items = Vec::with_capacity(rows.len());
        for row in &rows {
            items.push(view(&mut conn, record_from_row(row)?).await?);
        }
        let (items, next_cursor) = page.finish(items, |c| Cursor {
            ts: c.created_at.timestamp_millis(),
            id: c.id.to_string(),
        });
        Ok(Page { items, next_cursor })
    }

    pub async fn get_conference(&self, actor: &Actor, id: Uuid) -> Result<Conference, ApiError> {
        let (rec, _) = self.conference_access(actor, id).await?;
        let mut conn = self.db().pool.acquire().await?;
        view(&mut conn, rec).await
    }

    /// Changes title, waiting hall and moderators. Turning the waiting hall
    /// off admits everyone still waiting.
    pub async fn update_conference(
        &self,
        actor: &Actor,
        id: Uuid,
        req: UpdateConferenceRequest,
    ) -> Result<Conference, ApiError> {
        let rec = self.require_moderator(actor, id).await?;
        let title = req
            .title
            .map(|t| validate::text("title", &t, 1, validate::TITLE_MAX))
            .transpose()?;
        if req.add_moderators.len() > MAX_MODERATOR_CHANGES
            || req.remove_moderators.len() > MAX_MODERATOR_CHANGES
        {
            return Err(ApiError::Validation(format!(
                "at most {MAX_MODERATOR_CHANGES} moderator changes per request"
            )));
        }
        let mut tx = self.db().pool.begin().await?;
        lock(&mut tx, id).await?;
        let rec = load(&mut tx, id).await?.unwrap_or(rec);
        if rec.ended_at.is_some() {
            return Err(ApiError::ConferenceEnded);
        }
        if let Some(title) = &title {
            sqlx::query("UPDATE conferences SET title = $1 WHERE id = $2")
                .bind(title)
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        if let Some(wh) = req.waiting_hall {
            sqlx::query("UPDATE conferences SET waiting_hall = $1 WHERE id = $2")
                .bind(i64::from(wh))
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        for user in BTreeSet::from_iter(req.add_moderators.iter().copied()) {
            if role_in_tx(&mut tx, rec.team_id, user).await?.is_none() {
                return Err(ApiError::Validation(format!(
                    "user {user} is not a member of the team"
                )));
            }
            sqlx::query(
                "INSERT INTO conference_moderators (conference_id, user_id) VALUES ($1, $2)
                 ON CONFLICT (conference_id, user_id) DO NOTHING",
            )
            .bind(id.to_string())
            .bind(user.to_string())
            .execute(&mut *tx)
            .await?;
        }
        for user in BTreeSet::from_iter(req.remove_moderators.iter().copied()) {
            sqlx::query(
                "DELETE FROM conference_moderators WHERE conference_id = $1 AND user_id = $2",
            )
            .bind(id.to_string())
            .bind(user.to_string())
            .execute(&mut *tx)
            .await?;
        }
        if moderators(&mut tx, id).await?.is_empty() {
            return Err(ApiError::Conflict(
                "a conference must keep at least one moderator".into(),
            ));
        }
        let admitted = if req.waiting_hall == Some(false) {
            waiting::admit_all_in_tx(&mut tx, id).await?
        } else {
            Vec::new()
        };
        let rec = load(&mut tx, id)
            .await?
            .ok_or_else(|| ApiError::not_found("conference"))?;
        let conf = view(&mut tx, rec).await?;
        tx.commit().await?;
        for user_id in admitted {
            self.emit(ConferenceEvent::WaitingAdmitted {
                conference_id: id,
                user_id,
            })
            .await;
        }
        self.emit(ConferenceEvent::ConferenceUpdated {
            conference_id: id,
            title: conf.title.clone(),
            waiting_hall: conf.waiting_hall,
            moderators: conf.moderators.clone(),
        })
        .await;
        let touched: BTreeSet<Uuid> = req
            .add_moderators
            .iter()
            .chain(&req.remove_moderators)
            .copied()
            .collect();
        for user_id in touched {
            self.emit_moderator_grant(id, conf.team_id, user_id).await;
        }
        Ok(conf)
    }

    /// Ends the conference; every token for it stops verifying. Ending an
    /// ended conference returns it unchanged.
    pub async fn end_conference(&self, actor: &Actor, id: Uuid) -> Result<Conference, ApiError> {
        self.require_moderator(actor, id).await?;
        let mut tx = self.db().pool.begin().await?;
        let ended =
            sqlx::query("UPDATE conferences SET ended_at = $1 WHERE id = $2 AND ended_at IS NULL")
                .bind(now_ms())
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1;
        let rec = load(&mut tx, id)
            .await?
            .ok_or_else(|| ApiError::not_found("conference"))?;
        let conf = view(&mut tx, rec).await?;
        tx.commit().await?;
        if ended {
            self.emit(ConferenceEvent::ConferenceEnded { conference_id: id })
                .await;
        }
        Ok(conf)
    }

    /// Issues a token for the conference: a room token for moderators,
    /// admitted users and everyone when there is no waiting hall; otherwise a
    /// waiting-hall token, queuing the user (once — rejoining keeps the
    /// place). Denied users get 403.
    pub async fn join_conference(
        &self,
        actor: &Actor,
        id: Uuid,
    ) -> Result<JoinConferenceResponse, ApiError> {
        let (rec, role) = self.conference_access(actor, id).await?;
        if rec.ended_at.is_some() {
            return Err(ApiError::ConferenceEnded);
        }
        let mut tx = self.db().pool.begin().await?;
        lock(&mut tx, id).await?;
        let rec = load(&mut tx, id)
            .await?
            .ok_or_else(|| ApiError::not_found("conference"))?;
        if rec.ended_at.is_some() {
            return Err(ApiError::ConferenceEnded);
        }
        let moderator = self
            .is_moderator(&mut tx, &rec, role, actor.user_id)
            .await?;
        let entry = waiting::entry_state(&mut tx, id, actor.user_id).await?;
        if !moderator {
            if let Some(EntryState {
                status: WaitingStatus::Denied,
                reason,
                ..
            }) = &entry
            {
                return Err(ApiError::Forbidden(match reason {
                    Some(r) => format!("entry to this conference was denied: {r}"),
                    None => "entry to this conference was denied".into(),
                }));
            }
        }
        let admitted = matches!(&entry, Some(e) if e.status == WaitingStatus::Admitted);
        let (grants, position, queued) = if moderator || !rec.waiting_hall || admitted {
            (full_grants(moderator), None, false)
        } else {
            let (position, queued) = waiting::enqueue(&mut tx, id, actor.user_id, entry).await?;
            (waiting_grants(), Some(position), queued)
        };
        let token = self
            .issue_room_token(
                &mut tx,
                actor.user_id,
                &actor.username,
                id,
                rec.team_id,
                grants,
            )
            .await?;
        tx.commit().await?;
        if let (true, Some(position)) = (queued, position) {
            self.emit(ConferenceEvent::WaitingJoined {
                conference_id: id,
                user_id: actor.user_id,
                username: actor.username.clone(),
                position,
            })
            .await;
        }
        Ok(JoinConferenceResponse {
            token,
            signaling_url: self.config().signaling_url(),
            ice_servers: self
                .config()
                .ice
                .ice_servers(&actor.user_id.to_string(), std::time::SystemTime::now()),
            waiting: grants.waiting,
            moderator: grants.moderator,
            position,
        })
    }

    /// Removes a participant: revokes their tokens for the conference and
    /// bars them from rejoining it (their waiting entry becomes `denied`).
    pub async fn remove_participant(
        &self,
        actor: &Actor,
        id: Uuid,
        user_id: Uuid,
    ) -> Result<(), ApiError> {
        let rec = self.require_moderator(actor, id).await?;
        let mut tx = self.db().pool.begin().await?;
        lock(&mut tx, id).await?;
        let target_role = role_in_tx(&mut tx, rec.team_id, user_id)
            .await?
            .ok_or_else(|| ApiError::not_found("participant"))?;
        if self
            .is_moderator(&mut tx, &rec, target_role, user_id)
            .await?
        {
            return Err(ApiError::Conflict(
                "moderators cannot be removed; revoke their moderator role first".into(),
            ));
        }
        waiting::set_denied(&mut tx, id, user_id, Some("removed by a moderator")).await?;
        revoke(&mut tx, Scope::Conference, id, user_id).await?;
        tx.commit().await?;
        self.emit(ConferenceEvent::ParticipantRemoved {
            conference_id: id,
            user_id,
            reason: RemovalReason::Moderator,
        })
        .await;
        Ok(())
    }
}

// ------------------------------------------------------------------ HTTP

/// The conference routes.
pub(crate) fn routes() -> OpenApiRouter<Control> {
    OpenApiRouter::new()
        .routes(routes!(create_conference, list_conferences))
        .routes(routes!(get_conference, update_conference))
        .routes(routes!(end_conference))
        .routes(routes!(join_conference))
        .routes(routes!(remove_participant))
        .routes(routes!(move_to_waiting))
}

#[utoipa::path(post, path = "/v1/teams/{id}/conferences", tag = "conferences", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Team id")), request_body = CreateConferenceRequest,
    responses((status = 201, body = Conference), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn create_conference(
    State(c): State<Control>,
    actor: Actor,
    Path(id): Path<Uuid>,
    Json(req): Json<CreateConferenceRequest>,
) -> ApiResult<impl IntoResponse> {
    Ok((
        StatusCode::CREATED,
        Json(c.create_conference(&actor, id, req).await?),
    ))
}

#[utoipa::path(get, path = "/v1/teams/{id}/conferences", tag = "conferences", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Team id"), PageParams),
    responses((status = 200, body = Page<Conference>), (status = 404, body = Problem)))]
async fn list_conferences(
    State(c): State<Control>,
    actor: Actor,
    Path(id): Path<Uuid>,
    Query(p): Query<PageParams>,
) -> ApiResult<Json<Page<Conference>>> {
    Ok(Json(c.list_conferences(&actor, id, &p).await?))
}

#[utoipa::path(get, path = "/v1/conferences/{id}", tag = "conferences", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Conference id")),
    responses((status = 200, body = Conference), (status = 404, body = Problem)))]
async fn get_conference(
    State(c): State<Control>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Conference>> {
    Ok(Json(c.get_conference(&actor, id).await?))
}

#[utoipa::path(patch, path = "/v1/conferences/{id}", tag = "conferences", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Conference id")), request_body = UpdateConferenceRequest,
    responses((status = 200, body = Conference), (status = 403, body = Problem), (status = 409, body = Problem)))]
async fn update_conference(
    State(c): State<Control>,
    actor: Actor,
    Path(id): Path<Uuid>,
    Json(req): Json<UpdateConferenceRequest>,
) -> ApiResult<Json<Conference>> {
    Ok(Json(c.update_conference(&actor, id, req).await?))
}

#[utoipa::path(post, path = "/v1/conferences/{id}/end", tag = "conferences", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Conference id")),
    responses((status = 200, body = Conference), (status = 403, body = Problem)))]
async fn end_conference(
    State(c): State<Control>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Conference>> {
    Ok(Json(c.end_conference(&actor, id).await?))
}

/// Get a room token (or a waiting-hall token) for the conference.
#[utoipa::path(post, path = "/v1/conferences/{id}/join", tag = "conferences", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Conference id")),
    responses((status = 200, body = JoinConferenceResponse), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn join_conference(
    State(c): State<Control>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<JoinConferenceResponse>> {
    Ok(Json(c.join_conference(&actor, id).await?))
}

#[utoipa::path(post, path = "/v1/conferences/{id}/participants/{user_id}/remove", tag = "conferences", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Conference id"), ("user_id" = Uuid, Path, description = "User id")),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn remove_participant(
    State(c): State<Control>,
    actor: Actor,
    Path((id, user_id)): Path<(Uuid, Uuid)>,
) -> ApiResult<StatusCode> {
    c.remove_participant(&actor, id, user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/conferences/{id}/participants/{user_id}/move-to-waiting", tag = "conferences", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Conference id"), ("user_id" = Uuid, Path, description = "User id")),
    responses((status = 200, body = WaitingEntry), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn move_to_waiting(
    State(c): State<Control>,
    actor: Actor,
    Path((id, user_id)): Path<(Uuid, Uuid)>,
) -> ApiResult<Json<WaitingEntry>> {
    Ok(Json(c.move_to_waiting(&actor, id, user_id).await?))
}
