//! Teams, their members, join codes and join requests.
//!
//! Visibility rule: to anyone outside a team, the team (and everything in
//! it) does not exist — lookups answer 404, not 403, so ids cannot be probed.

mod routes;

pub(crate) use routes::routes;

use convene_proto::control::{
    CreateTeamRequest, JoinRequest, JoinRequestStatus, JoinTeamResponse, JoinTeamStatus, Member,
    Page, Team, TeamRole, UpdateTeamRequest,
};
use convene_proto::events::{ConferenceEvent, RemovalReason};
use rand::Rng;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use crate::db::{is_unique_violation, ms_to_dt, now_ms, uuid_col};
use crate::error::ApiError;
use crate::pagination::{Cursor, PageParams, PageRequest};
use crate::tokens::{revoke, Scope};
use crate::{validate, Actor, Control};

/// Unambiguous alphabet (no 0/O, 1/I): 16 characters carry 80 bits.
const CODE_ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
const CODE_LEN: usize = 16;

fn new_join_code() -> String {
    let mut rng = rand::rngs::OsRng;
    (0..CODE_LEN)
        .map(|_| CODE_ALPHABET[rng.gen_range(0..CODE_ALPHABET.len())] as char)
        .collect()
}

/// Accepts codes typed with lower case, spaces or dashes.
fn normalize_code(code: &str) -> String {
    code.chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .flat_map(char::to_uppercase)
        .collect()
}

fn team_from_row(row: &AnyRow) -> Result<Team, ApiError> {
    let role = TeamRole::parse(&row.try_get::<String, _>("role")?)
        .ok_or_else(|| ApiError::Internal("corrupt role".into()))?;
    Ok(Team {
        id: uuid_col(&row.try_get::<String, _>("id")?)?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        join_code: (role == TeamRole::Admin)
            .then(|| row.try_get::<String, _>("join_code"))
            .transpose()?,
        role,
        created_at: ms_to_dt(row.try_get("created_at")?),
    })
}

fn member_from_row(row: &AnyRow) -> Result<Member, ApiError> {
    Ok(Member {
        user_id: uuid_col(&row.try_get::<String, _>("user_id")?)?,
        username: row.try_get("username")?,
        email: row.try_get("email")?,
        role: TeamRole::parse(&row.try_get::<String, _>("role")?)
            .ok_or_else(|| ApiError::Internal("corrupt role".into()))?,
        joined_at: ms_to_dt(row.try_get("joined_at")?),
    })
}

fn request_from_row(row: &AnyRow) -> Result<JoinRequest, ApiError> {
    Ok(JoinRequest {
        id: uuid_col(&row.try_get::<String, _>("id")?)?,
        team_id: uuid_col(&row.try_get::<String, _>("team_id")?)?,
        user_id: uuid_col(&row.try_get::<String, _>("user_id")?)?,
        username: row.try_get("username")?,
        status: JoinRequestStatus::parse(&row.try_get::<String, _>("status")?)
            .ok_or_else(|| ApiError::Internal("corrupt status".into()))?,
        created_at: ms_to_dt(row.try_get("created_at")?),
    })
}

const TEAM_SELECT: &str = "SELECT t.id, t.name, t.description, t.join_code, t.created_at, m.role
     FROM teams t JOIN team_members m ON m.team_id = t.id";
const MEMBER_SELECT: &str = "SELECT m.user_id, u.username, u.email, m.role, m.joined_at
     FROM team_members m JOIN users u ON u.id = m.user_id";
const REQUEST_SELECT: &str = "SELECT r.id, r.team_id, r.user_id, u.username, r.status, r.created_at
     FROM join_requests r JOIN users u ON u.id = r.user_id";

/// Takes the team row's write lock (PostgreSQL) so concurrent admin changes
/// on one team serialise; otherwise two admins demoting each other could
/// both pass the last-admin check. SQLite writers are serialised already.
pub(crate) async fn lock_team(conn: &mut AnyConnection, team_id: Uuid) -> Result<(), ApiError> {
    let done = sqlx::query("UPDATE teams SET name = name WHERE id = $1")
        .bind(team_id.to_string())
        .execute(&mut *conn)
        .await?;
    if done.rows_affected() == 0 {
        return Err(ApiError::not_found("team"));
    }
    Ok(())
}

pub(crate) async fn role_in_tx(
    conn: &mut AnyConnection,
    team_id: Uuid,
    user_id: Uuid,
) -> Result<Option<TeamRole>, ApiError> {
    let row = sqlx::query("SELECT role FROM team_members WHERE team_id = $1 AND user_id = $2")
        .bind(team_id.to_string())
        .bind(user_id.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    Ok(match row {
        Some(r) => TeamRole::parse(&r.try_get::<String, _>("role")?),
        None => None,
    })
}

async fn admin_count(conn: &mut AnyConnection, team_id: Uuid) -> Result<i64, ApiError> {
    let row =
        sqlx::query("SELECT COUNT(*) AS n FROM team_members WHERE team_id = $1 AND role = 'admin'")
            .bind(team_id.to_string())
            .fetch_one(&mut *conn)
            .await?;
    Ok(row.try_get("n")?)
}

async fn active_conferences(
    conn: &mut AnyConnection,
    team_id: Uuid,
) -> Result<Vec<Uuid>, ApiError> {
    let rows = sqlx::query("SELECT id FROM conferences WHERE team_id = $1 AND ended_at IS NULL")
        .bind(team_id.to_string())
        .fetch_all(&mut *conn)
        .await?;
    rows.iter()
        .map(|r| uuid_col(&r.try_get::<String, _>("id")?))
        .collect()
}

impl Control {
    /// The user's role in the team, through the Redis cache when enabled.
    pub async fn membership(
        &self,
        team_id: Uuid,
        user_id: Uuid,
    ) -> Result<Option<TeamRole>, ApiError> {
        if let Some(cached) = self.cache().get(team_id, user_id).await {
            return Ok(cached);
        }
        let mut conn = self.db().pool.acquire().await?;
        let role = role_in_tx(&mut conn, team_id, user_id).await?;
        drop(conn);
        self.cache().put(team_id, user_id, role).await;
        Ok(role)
    }

    pub(crate) async fn require_member(
        &self,
        actor: &Actor,
        team_id: Uuid,
    ) -> Result<TeamRole, ApiError> {
        self.membership(team_id, actor.user_id)
            .await?
            .ok_or_else(|| ApiError::not_found("team"))
    }

    pub(crate) async fn require_admin(&self, actor: &Actor, team_id: Uuid) -> Result<(), ApiError> {
        match self.require_member(actor, team_id).await? {
            TeamRole::Admin => Ok(()),
            TeamRole::Member => Err(ApiError::Forbidden("only team admins may do this".into())),
        }
    }

    pub(crate) fn page(&self, params: &PageParams) -> Result<PageRequest, ApiError> {
        PageRequest::new(
            params,
            self.config().default_page_limit,
            self.config().max_page_limit,
        )
    }

    async fn team_view(
        &self,
        conn: &mut AnyConnection,
        actor: &Actor,
        team_id: Uuid,
    ) -> Result<Team, ApiError> {
        let row = sqlx::query(&format!("{TEAM_SELECT} WHERE t.id = $1 AND m.user_id = $2"))
            .bind(team_id.to_string())
            .bind(actor.user_id.to_string())
            .fetch_optional(&mut *conn)
            .await?
            .ok_or_else(|| ApiError::not_found("team"))?;
        team_from_row(&row)
    }

    pub async fn create_team(
        &self,
        actor: &Actor,
        req: CreateTeamRequest,
    ) -> Result<Team, ApiError> {
        let name = validate::text("name", &req.name, 1, validate::TEAM_NAME_MAX)?;
        let description = validate::text(
            "description",
            &req.description,
            0,
            validate::DESCRIPTION_MAX,
        )?;
        let id = Uuid::new_v4();
        let now = now_ms();
        let mut tx = self.db().pool.begin().await?;
        sqlx::query(
            "INSERT INTO teams (id, name, description, join_code, created_by, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id.to_string())
        .bind(&name)
        .bind(&description)
        .bind(new_join_code())
        .bind(actor.user_id.to_string())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO team_members (team_id, user_id, role, joined_at) VALUES ($1, $2, 'admin', $3)",
        )
        .bind(id.to_string())
        .bind(actor.user_id.to_string())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let team = self.team_view(&mut tx, actor, id).await?;
        tx.commit().await?;
        self.cache().invalidate(id, &[actor.user_id]).await;
        Ok(team)
    }

    /// Teams the actor belongs to, oldest first.
    pub async fn list_teams(
        &self,
        actor: &Actor,
        params: &PageParams,
    ) -> Result<Page<Team>, ApiError> {
        let page = self.page(params)?;
        let sql = format!(
            "{TEAM_SELECT} WHERE m.user_id = $1
               AND (t.created_at > $2 OR (t.created_at = $2 AND t.id > $3))
             ORDER BY t.created_at, t.id LIMIT $4"
        );
        page.fetch(
            &self.db().pool,
            &sql,
            actor.user_id.to_string(),
            page.asc_bound(),
            team_from_row,
            |t| Cursor {
                ts: t.created_at.timestamp_millis(),
                id: t.id.to_string(),
            },
        )
        .await
    }

    pub async fn get_team(&self, actor: &Actor, team_id: Uuid) -> Result<Team, ApiError> {
        self.require_member(actor, team_id).await?;
        let mut conn = self.db().pool.acquire().await?;
        self.team_view(&mut conn, actor, team_id).await
    }

    pub async fn update_team(
        &self,
        actor: &Actor,
        team_id: Uuid,
        req: UpdateTeamRequest,
    ) -> Result<Team, ApiError> {
        self.require_admin(actor, team_id).await?;
        let name = req
            .name
            .map(|n| validate::text("name", &n, 1, validate::TEAM_NAME_MAX))
            .transpose()?;
        let description = req
            .description
            .map(|d| validate::text("description", &d, 0, validate::DESCRIPTION_MAX))
            .transpose()?;
        let mut tx = self.db().pool.begin().await?;
        if let Some(name) = name {
            sqlx::query("UPDATE teams SET name = $1 WHERE id = $2")
                .bind(name)
                .bind(team_id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        if let Some(description) = description {
            sqlx::query("UPDATE teams SET description = $1 WHERE id = $2")
                .bind(description)
                .bind(team_id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        let team = self.team_view(&mut tx, actor, team_id).await?;
        tx.commit().await?;
        Ok(team)
    }

    /// Deletes the team with its conferences; live conferences end.
    pub async fn delete_team(&self, actor: &Actor, team_id: Uuid) -> Result<(), ApiError> {
        self.require_admin(actor, team_id).await?;
        let mut tx = self.db().pool.begin().await?;
        lock_team(&mut tx, team_id).await?;
        let members: Vec<Uuid> = sqlx::query("SELECT user_id FROM team_members WHERE team_id = $1")
            .bind(team_id.to_string())
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| uuid_col(&r.try_get::<String, _>("user_id")?))
            .collect::<Result<_, _>>()?;
        let live = active_conferences(&mut tx, team_id).await?;
        sqlx::query("DELETE FROM teams WHERE id = $1")
            .bind(team_id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.cache().invalidate(team_id, &members).await;
        for conference_id in live {
            self.emit(ConferenceEvent::ConferenceEnded { conference_id })
                .await;
        }
        Ok(())
    }

    /// Replaces the join code; the old one stops working at once.
    pub async fn rotate_join_code(&self, actor: &Actor, team_id: Uuid) -> Result<Team, ApiError> {
        self.require_admin(actor, team_id).await?;
        let mut tx = self.db().pool.begin().await?;
        sqlx::query("UPDATE teams SET join_code = $1 WHERE id = $2")
            .bind(new_join_code())
            .bind(team_id.to_string())
            .execute(&mut *tx)
            .await?;
        let team = self.team_view(&mut tx, actor, team_id).await?;
        tx.commit().await?;
        Ok(team)
    }

    /// Asks to join the team owning `code`. Idempotent: a member gets
    /// `member`, a repeated call while pending gets the same request.
    pub async fn join_team(&self, actor: &Actor, code: &str) -> Result<JoinTeamResponse, ApiError> {
        let code = normalize_code(code);
        if code.is_empty() || code.len() > validate::LOOKUP_MAX {
            return Err(ApiError::NotFound("no team with this join code".into()));
        }
        let team_id = sqlx::query("SELECT id FROM teams WHERE join_code = $1")
            .bind(&code)
            .fetch_optional(&self.db().pool)
            .await?
            .ok_or_else(|| ApiError::NotFound("no team with this join code".into()))?;
        let team_id = uuid_col(&team_id.try_get::<String, _>("id")?)?;

        for attempt in 0..2 {
            let mut tx = self.db().pool.begin().await?;
            if role_in_tx(&mut tx, team_id, actor.user_id).await?.is_some() {
                return Ok(JoinTeamResponse {
                    team_id,
                    status: JoinTeamStatus::Member,
                    request: None,
                });
            }
            let pending = sqlx::query(&format!(
                "{REQUEST_SELECT} WHERE r.team_id = $1 AND r.user_id = $2 AND r.status = 'pending'"
            ))
            .bind(team_id.to_string())
            .bind(actor.user_id.to_string())
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(row) = pending {
                return Ok(JoinTeamResponse {
                    team_id,
                    status: JoinTeamStatus::Pending,
                    request: Some(request_from_row(&row)?),
                });
            }
            let id = Uuid::new_v4();
            let now = now_ms();
            let inserted = sqlx::query(
                "INSERT INTO join_requests (id, team_id, user_id, status, created_at)
                 VALUES ($1, $2, $3, 'pending', $4)",
            )
            .bind(id.to_string())
            .bind(team_id.to_string())
            .bind(actor.user_id.to_string())
            .bind(now)
            .execute(&mut *tx)
            .await;
            match inserted {
                // A concurrent identical call won; read its request instead.
                Err(e) if is_unique_violation(&e) && attempt == 0 => continue,
                Err(e) => return Err(e.into()),
                Ok(_) => {}
            }
            tx.commit().await?;
            return Ok(JoinTeamResponse {
                team_id,
                status: JoinTeamStatus::Pending,
                request: Some(JoinRequest {
                    id,
                    team_id,
                    user_id: actor.user_id,
                    username: actor.username.clone(),
                    status: JoinRequestStatus::Pending,
                    created_at: ms_to_dt(now),
                }),
            });
        }
        Err(ApiError::Conflict(
            "join request changed concurrently; retry".into(),
        ))
    }

    /// Pending join requests, oldest first.
    pub async fn list_join_requests(
        &self,
        actor: &Actor,
        team_id: Uuid,
        params: &PageParams,
    ) -> Result<Page<JoinRequest>, ApiError> {
        self.require_admin(actor, team_id).await?;
        let page = self.page(params)?;
        let sql = format!(
            "{REQUEST_SELECT} WHERE r.team_id = $1 AND r.status = 'pending'
               AND (r.created_at > $2 OR (r.created_at = $2 AND r.id > $3))
             ORDER BY r.created_at, r.id LIMIT $4"
        );
        page.fetch(
            &self.db().pool,
            &sql,
            team_id.to_string(),
            page.asc_bound(),
            request_from_row,
            |r| Cursor {
                ts: r.created_at.timestamp_millis(),
                id: r.id.to_string(),
            },
        )
        .await
    }

    pub async fn accept_join_request(
        &self,
        actor: &Actor,
        team_id: Uuid,
        request_id: Uuid,
    ) -> Result<JoinRequest, ApiError> {
        self.decide_join_request(actor, team_id, request_id, JoinRequestStatus::Accepted)
            .await
    }

    pub async fn reject_join_request(
        &self,
        actor: &Actor,
        team_id: Uuid,
        request_id: Uuid,
    ) -> Result<JoinRequest, ApiError> {
        self.decide_join_request(actor, team_id, request_id, JoinRequestStatus::Rejected)
            .await
    }

    async fn decide_join_request(
        &self,
        actor: &Actor,
        team_id: Uuid,
        request_id: Uuid,
        decision: JoinRequestStatus,
    ) -> Result<JoinRequest, ApiError> {
        self.require_admin(actor, team_id).await?;
        let now = now_ms();
        let mut tx = self.db().pool.begin().await?;
        let row = sqlx::query(&format!(
            "{REQUEST_SELECT} WHERE r.id = $1 AND r.team_id = $2"
        ))
        .bind(request_id.to_string())
        .bind(team_id.to_string())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| ApiError::not_found("join request"))?;
        let mut request = request_from_row(&row)?;
        if request.status != JoinRequestStatus::Pending {
            return Err(ApiError::Conflict(format!(
                "join request was already {}",
                request.status.as_str()
            )));
        }
        let updated = sqlx::query(
            "UPDATE join_requests SET status = $1, decided_at = $2, decided_by = $3
             WHERE id = $4 AND status = 'pending'",
        )
        .bind(decision.as_str())
        .bind(now)
        .bind(actor.user_id.to_string())
        .bind(request_id.to_string())
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() != 1 {
            return Err(ApiError::Conflict(
                "join request was already decided".into(),
            ));
        }
        if decision == JoinRequestStatus::Accepted {
            sqlx::query(
                "INSERT INTO team_members (team_id, user_id, role, joined_at) VALUES ($1, $2, 'member', $3)
                 ON CONFLICT (team_id, user_id) DO NOTHING",
            )
            .bind(team_id.to_string())
            .bind(request.user_id.to_string())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.cache().invalidate(team_id, &[request.user_id]).await;
        request.status = decision;
        Ok(request)
    }

    pub async fn list_members(
        &self,
        actor: &Actor,
        team_id: Uuid,
        params: &PageParams,
    ) -> Result<Page<Member>, ApiError> {
        self.require_member(actor, team_id).await?;
        let page = self.page(params)?;
        let sql = format!(
            "{MEMBER_SELECT} WHERE m.team_id = $1
               AND (m.joined_at > $2 OR (m.joined_at = $2 AND m.user_id > $3))
             ORDER BY m.joined_at, m.user_id LIMIT $4"
        );
        page.fetch(
            &self.db().pool,
            &sql,
            team_id.to_string(),
            page.asc_bound(),
            member_from_row,
            |m| Cursor {
                ts: m.joined_at.timestamp_millis(),
                id: m.user_id.to_string(),
            },
        )
        .await
    }

    async fn member(
        &self,
        conn: &mut AnyConnection,
        team_id: Uuid,
        user_id: Uuid,
    ) -> Result<Member, ApiError> {
        let row = sqlx::query(&format!(
            "{MEMBER_SELECT} WHERE m.team_id = $1 AND m.user_id = $2"
        ))
        .bind(team_id.to_string())
        .bind(user_id.to_string())
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| ApiError::not_found("member"))?;
        member_from_row(&row)
    }

    /// Adds a registered user directly (no join request needed).
    pub async fn add_member(
        &self,
        actor: &Actor,
        team_id: Uuid,
        email: &str,
    ) -> Result<Member, ApiError> {
        self.require_admin(actor, team_id).await?;
        let user = self
            .any_user_by_email(email)
            .await
            .map_err(|_| ApiError::NotFound("no user with this email".into()))?;
        let now = now_ms();
        let mut tx = self.db().pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO team_members (team_id, user_id, role, joined_at) VALUES ($1, $2, 'member', $3)",
        )
        .bind(team_id.to_string())
        .bind(user.id.to_string())
        .bind(now)
        .execute(&mut *tx)
        .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => {
                return Err(ApiError::Conflict("user is already a member".into()))
            }
            other => other?,
        };
        // A pending request from this user is settled by the direct add.
        sqlx::query(
            "UPDATE join_requests SET status = 'accepted', decided_at = $1, decided_by = $2
             WHERE team_id = $3 AND user_id = $4 AND status = 'pending'",
        )
        .bind(now)
        .bind(actor.user_id.to_string())
        .bind(team_id.to_string())
        .bind(user.id.to_string())
        .execute(&mut *tx)
        .await?;
        let member = self.member(&mut tx, team_id, user.id).await?;
        tx.commit().await?;
        self.cache().invalidate(team_id, &[user.id]).await;
        Ok(member)
    }

    pub async fn update_member(
        &self,
        actor: &Actor,
        team_id: Uuid,
        user_id: Uuid,
        role: TeamRole,
    ) -> Result<Member, ApiError> {
        self.require_admin(actor, team_id).await?;
        let mut tx = self.db().pool.begin().await?;
        lock_team(&mut tx, team_id).await?;
        let current = role_in_tx(&mut tx, team_id, user_id)
            .await?
            .ok_or_else(|| ApiError::not_found("member"))?;
        if current == TeamRole::Admin
            && role == TeamRole::Member
            && admin_count(&mut tx, team_id).await? <= 1
        {
            return Err(ApiError::LastAdmin);
        }
        sqlx::query("UPDATE team_members SET role = $1 WHERE team_id = $2 AND user_id = $3")
            .bind(role.as_str())
            .bind(team_id.to_string())
            .bind(user_id.to_string())
            .execute(&mut *tx)
            .await?;
        let member = self.member(&mut tx, team_id, user_id).await?;
        let live = if current != role {
            active_conferences(&mut tx, team_id).await?
        } else {
            Vec::new()
        };
        tx.commit().await?;
        self.cache().invalidate(team_id, &[user_id]).await;
        // Team admins moderate every conference of the team.
        for conference_id in live {
            self.emit_moderator_grant(conference_id, team_id, user_id)
                .await;
        }
        Ok(member)
    }

    /// Removes a member (admins), or leaves the team (anyone, for themself).
    /// Every room token the user holds for the team's conferences is revoked
    /// and the signaling service is told to disconnect them.
    pub async fn remove_member(
        &self,
        actor: &Actor,
        team_id: Uuid,
        user_id: Uuid,
    ) -> Result<(), ApiError> {
        let actor_role = self.require_member(actor, team_id).await?;
        if actor.user_id != user_id && actor_role != TeamRole::Admin {
            return Err(ApiError::Forbidden(
                "only team admins may remove members".into(),
            ));
        }
        let mut tx = self.db().pool.begin().await?;
        lock_team(&mut tx, team_id).await?;
        let role = role_in_tx(&mut tx, team_id, user_id)
            .await?
            .ok_or_else(|| ApiError::not_found("member"))?;
        if role == TeamRole::Admin && admin_count(&mut tx, team_id).await? <= 1 {
            return Err(ApiError::LastAdmin);
        }
        sqlx::query("DELETE FROM team_members WHERE team_id = $1 AND user_id = $2")
            .bind(team_id.to_string())
            .bind(user_id.to_string())
            .execute(&mut *tx)
            .await?;
        // Moderator rights do not survive leaving; rejoining starts afresh.
        sqlx::query(
            "DELETE FROM conference_moderators WHERE user_id = $1
               AND conference_id IN (SELECT id FROM conferences WHERE team_id = $2)",
        )
        .bind(user_id.to_string())
        .bind(team_id.to_string())
        .execute(&mut *tx)
        .await?;
        revoke(&mut tx, Scope::Team, team_id, user_id).await?;
        let live = active_conferences(&mut tx, team_id).await?;
        tx.commit().await?;
        self.cache().invalidate(team_id, &[user_id]).await;
        for conference_id in live {
            self.emit(ConferenceEvent::ParticipantRemoved {
                conference_id,
                user_id,
                reason: RemovalReason::TeamMembership,
            })
            .await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_codes() {
        let c = new_join_code();
        assert_eq!(c.len(), CODE_LEN);
        assert_eq!(normalize_code(&c.to_lowercase()), c);
        assert_eq!(normalize_code("ab-cd ef"), "ABCDEF");
    }
}
