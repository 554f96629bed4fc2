//! Team posts and their comments.
//!
//! Visibility follows the team: to a non-member a post or comment does not
//! exist (404). Only the author edits; the author or a team admin deletes.
//! Posts list newest first, comments oldest first, both keyset-paginated on
//! `(created_at, id)`. Ids are UUIDv7 (time-ordered, monotonic within a
//! process), so rows created in the same millisecond keep insertion order.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiResult;
use crate::extract::{Json, Path, Query};

use convene_proto::collab::{
    Comment, CreateCommentRequest, CreatePostRequest, Post, UpdateCommentRequest,
    UpdatePostRequest, UserRef,
};
use convene_proto::control::{Page, Problem, TeamRole};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use crate::db::{ms_to_dt, now_ms, uuid_col};
use crate::error::ApiError;
use crate::pagination::{Cursor, PageParams, PageRequest};
use crate::{validate, Actor, Control};

/// [`validate::text`] for multi-line user content: CRLF and lone CR become
/// LF first, so text pasted from any platform passes the control-character
/// check.
pub(crate) fn long_text(
    field: &str,
    value: &str,
    min: usize,
    max: usize,
) -> Result<String, ApiError> {
    let normalized = value.replace("\r\n", "\n").replace('\r', "\n");
    validate::text(field, &normalized, min, max)
}

/// Keyset bound for newest-first lists: rows strictly before `(ts, id)`.
/// The first page (no cursor) starts above every real key.
pub(crate) fn desc_bound(page: &PageRequest) -> (i64, String) {
    if page.after.ts == i64::MIN && page.after.id.is_empty() {
        (i64::MAX, String::new())
    } else {
        (page.after.ts, page.after.id.clone())
    }
}

fn post_from_row(row: &AnyRow) -> Result<Post, ApiError> {
    Ok(Post {
        id: uuid_col(&row.try_get::<String, _>("id")?)?,
        team_id: uuid_col(&row.try_get::<String, _>("team_id")?)?,
        author: UserRef {
            id: uuid_col(&row.try_get::<String, _>("author_id")?)?,
            username: row.try_get("author_username")?,
        },
        title: row.try_get("title")?,
        body: row.try_get("body")?,
        comment_count: row.try_get("comment_count")?,
        created_at: ms_to_dt(row.try_get("created_at")?),
        edited_at: row.try_get::<Option<i64>, _>("edited_at")?.map(ms_to_dt),
    })
}

fn comment_from_row(row: &AnyRow) -> Result<Comment, ApiError> {
    Ok(Comment {
        id: uuid_col(&row.try_get::<String, _>("id")?)?,
        post_id: uuid_col(&row.try_get::<String, _>("post_id")?)?,
        author: UserRef {
            id: uuid_col(&row.try_get::<String, _>("author_id")?)?,
            username: row.try_get("author_username")?,
        },
        body: row.try_get("body")?,
        created_at: ms_to_dt(row.try_get("created_at")?),
        edited_at: row.try_get::<Option<i64>, _>("edited_at")?.map(ms_to_dt),
    })
}

const POST_SELECT: &str = "SELECT p.id, p.team_id, p.author_id, u.username AS author_username,
        p.title, p.body, p.created_at, p.edited_at,
        (SELECT COUNT(*) FROM comments c WHERE c.post_id = p.id) AS comment_count
     FROM posts p JOIN users u ON u.id = p.author_id";
const COMMENT_SELECT: &str = "SELECT c.id, c.post_id, c.author_id, u.username AS author_username,
        c.body, c.created_at, c.edited_at
     FROM comments c JOIN users u ON u.id = c.author_id";

/// Who wrote a post or comment, where it lives and the caller's team role.
struct Access {
    id: Uuid,
    team_id: Uuid,
    author_id: Uuid,
    role: TeamRole,
}

impl Access {
    fn require_author(&self, actor: &Actor, what: &str) -> Result<(), ApiError> {
        if self.author_id == actor.user_id {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "only the author may edit this {what}"
            )))
        }
    }

    fn require_author_or_admin(&self, actor: &Actor, what: &str) -> Result<(), ApiError> {
        if self.author_id == actor.user_id || self.role == TeamRole::Admin {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "only the author or a team admin may delete this {what}"
            )))
        }
    }
}

async fn post_view(conn: &mut AnyConnection, post_id: Uuid) -> Result<Post, ApiError> {
    let row = sqlx::query(&format!("{POST_SELECT} WHERE p.id = $1"))
        .bind(post_id.to_string())
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| ApiError::not_found("post"))?;
    post_from_row(&row)
}

async fn comment_view(conn: &mut AnyConnection, comment_id: Uuid) -> Result<Comment, ApiError> {
    let row = sqlx::query(&format!("{COMMENT_SELECT} WHERE c.id = $1"))
        .bind(comment_id.to_string())
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| ApiError::not_found("comment"))?;
    comment_from_row(&row)
}

impl Control {
    /// The post's team and author, if the actor may see it.
    async fn post_access(&self, actor: &Actor, post_id: Uuid) -> Result<Access, ApiError> {
        let row = sqlx::query("SELECT team_id, author_id FROM posts WHERE id = $1")
            .bind(post_id.to_string())
            .fetch_optional(&self.db().pool)
            .await?
            .ok_or_else(|| ApiError::not_found("post"))?;
        let team_id = uuid_col(&row.try_get::<String, _>("team_id")?)?;
        let role = self
            .membership(team_id, actor.user_id)
            .await?
            .ok_or_else(|| ApiError::not_found("post"))?;
        Ok(Access {
            id: post_id,
            team_id,
            author_id: uuid_col(&row.try_get::<String, _>("author_id")?)?,
            role,
        })
    }

    async fn comment_access(&self, actor: &Actor, comment_id: Uuid) -> Result<Access, ApiError> {
        let row = sqlx::query(
            "SELECT p.team_id, c.author_id FROM comments c JOIN posts p ON p.id = c.post_id
             WHERE c.id = $1",
        )
        .bind(comment_id.to_string())
        .fetch_optional(&self.db().pool)
        .await?
        .ok_or_else(|| ApiError::not_found("comment"))?;
        let team_id = uuid_col(&row.try_get::<String, _>("team_id")?)?;
        let role = self
            .membership(team_id, actor.user_id)
            .await?
            .ok_or_else(|| ApiError::not_found("comment"))?;
        Ok(Access {
            id: comment_id,
            team_id,
            author_id: uuid_col(&row.try_get::<String, _>("author_id")?)?,
            role,
        })
    }

    fn post_title(&self, title: &str) -> Result<String, ApiError> {
        validate::text("title", title, 1, self.config().post_title_max_chars)
    }

    fn post_body(&self, body: &str) -> Result<String, ApiError> {
        long_text("body", body, 0, self.config().post_body_max_chars)
    }

    fn comment_body(&self, body: &str) -> Result<String, ApiError> {
        long_text("body", body, 1, self.config().comment_max_chars)
    }

    pub async fn create_post(
        &self,
        actor: &Actor,
        team_id: Uuid,
        req: CreatePostRequest,
    ) -> Result<Post, ApiError> {
        self.require_member(actor, team_id).await?;
        let title = self.post_title(&req.title)?;
        let body = self.post_body(&req.body)?;
        let id = Uuid::now_v7();
        let now = now_ms();
        sqlx::query(
            "INSERT INTO posts (id, team_id, author_id, title, body, created_at, edited_at)
             VALUES ($1, $2, $3, $4, $5, $6, NULL)",
        )
        .bind(id.to_string())
        .bind(team_id.to_string())
        .bind(actor.user_id.to_string())
        .bind(&title)
        .bind(&body)
        .bind(now)
        .execute(&self.db().pool)
        .await?;
        Ok(Post {
            id,
            team_id,
            author: UserRef {
                id: actor.user_id,
                username: actor.username.clone(),
            },
            title,
            body,
            comment_count: 0,
            created_at: ms_to_dt(now),
            edited_at: None,
        })
    }

    /// The team's posts, newest first.
    pub async fn list_posts(
        &self,
        actor: &Actor,
        team_id: Uuid,
        params: &PageParams,
    ) -> Result<Page<Post>, ApiError> {
        self.require_member(actor, team_id).await?;
        let page = self.page(params)?;
        let (ts, id) = desc_bound(&page);
        let sql = format!(
            "{POST_SELECT} WHERE p.team_id = $1
               AND (p.created_at < $2 OR (p.created_at = $2 AND p.id < $3))
             ORDER BY p.created_at DESC, p.id DESC LIMIT $4"
        );
        page.fetch(
            &self.db().pool,
            &sql,
            team_id.to_string(),
            (ts, id),
            post_from_row,
            |p| Cursor {
                ts: p.created_at.timestamp_millis(),
                id: p.id.to_string(),
            },
        )
        .await
    }

    pub async fn get_post(&self, actor: &Actor, post_id: Uuid) -> Result<Post, ApiError> {
        self.post_access(actor, post_id).await?;
        let mut conn = self.db().pool.acquire().await?;
        post_view(&mut conn, post_id).await
    }

    /// Author only; absent fields stay unchanged.
    pub async fn update_post(
        &self,
        actor: &Actor,
        post_id: Uuid,
        req: UpdatePostRequest,
    ) -> Result<Post, ApiError> {
        let access = self.post_access(actor, post_id).await?;
        access.require_author(actor, "post")?;
        let title = req.title.map(|t| self.post_title(&t)).transpose()?;
        let body = req.body.map(|b| self.post_body(&b)).transpose()?;
        let mut tx = self.db().pool.begin().await?;
        if title.is_some() || body.is_some() {
            let now = now_ms();
            if let Some(title) = title {
                sqlx::query("UPDATE posts SET title = $1, edited_at = $2 WHERE id = $3")
                    .bind(title)
                    .bind(now)
                    .bind(access.id.to_string())
                    .execute(&mut *tx)
                    .await?;
            }
            if let Some(body) = body {
                sqlx::query("UPDATE posts SET body = $1, edited_at = $2 WHERE id = $3")
                    .bind(body)
                    .bind(now)
                    .bind(access.id.to_string())
                    .execute(&mut *tx)
                    .await?;
            }
        }
        let post = post_view(&mut tx, access.id).await?;
        tx.commit().await?;
        Ok(post)
    }

    /// The author or a team admin; the comments go with it.
    pub async fn delete_post(&self, actor: &Actor, post_id: Uuid) -> Result<(), ApiError> {
        let access = self.post_access(actor, post_id).await?;
        access.require_author_or_admin(actor, "post")?;
        sqlx::query("DELETE FROM posts WHERE id = $1 AND team_id = $2")
            .bind(access.id.to_string())
            .bind(access.team_id.to_string())
            .execute(&self.db().pool)
            .await?;
        Ok(())
    }

    pub async fn create_comment(
        &self,
        actor: &Actor,
        post_id: Uuid,
        req: CreateCommentRequest,
    ) -> Result<Comment, ApiError> {
        let access = self.post_access(actor, post_id).await?;
        let body = self.comment_body(&req.body)?;
        let id = Uuid::now_v7();
        let now = now_ms();
        let inserted = sqlx::query(
            "INSERT INTO comments (id, post_id, author_id, body, created_at, edited_at)
             VALUES ($1, $2, $3, $4, $5, NULL)",
        )
        .bind(id.to_string())
        .bind(access.id.to_string())
        .bind(actor.user_id.to_string())
        .bind(&body)
        .bind(now)
        .execute(&self.db().pool)
        .await;
        match inserted {
            // The post was deleted after the access check.
            Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => {
                return Err(ApiError::not_found("post"))
            }
            other => other?,
        };
        Ok(Comment {
            id,
            post_id: access.id,
            author: UserRef {
                id: actor.user_id,
                username: actor.username.clone(),
            },
            body,
            created_at: ms_to_dt(now),
            edited_at: None,
        })
    }

    /// The post's comments, oldest first.
    pub async fn list_comments(
        &self,
        actor: &Actor,
        post_id: Uuid,
        params: &PageParams,
    ) -> Result<Page<Comment>, ApiError> {
        self.post_access(actor, post_id).await?;
        let page = self.page(params)?;
        let sql = format!(
            "{COMMENT_SELECT} WHERE c.post_id = $1
               AND (c.created_at > $2 OR (c.created_at = $2 AND c.id > $3))
             ORDER BY c.created_at, c.id LIMIT $4"
        );
        page.fetch(
            &self.db().pool,
            &sql,
            post_id.to_string(),
            page.asc_bound(),
            comment_from_row,
            |c| Cursor {
                ts: c.created_at.timestamp_millis(),
                id: c.id.to_string(),
            },
        )
        .await
    }

    /// Author only.
    pub async fn update_comment(
        &self,
        actor: &Actor,
        comment_id: Uuid,
        req: UpdateCommentRequest,
    ) -> Result<Comment, ApiError> {
        let access = self.comment_access(actor, comment_id).await?;
        access.require_author(actor, "comment")?;
        let body = self.comment_body(&req.body)?;
        let mut tx = self.db().pool.begin().await?;
        sqlx::query("UPDATE comments SET body = $1, edited_at = $2 WHERE id = $3")
            .bind(body)
            .bind(now_ms())
            .bind(access.id.to_string())
            .execute(&mut *tx)
            .await?;
        let comment = comment_view(&mut tx, access.id).await?;
        tx.commit().await?;
        Ok(comment)
    }

    /// The author or a team admin.
    pub async fn delete_comment(&self, actor: &Actor, comment_id: Uuid) -> Result<(), ApiError> {
        let access = self.comment_access(actor, comment_id).await?;
        access.require_author_or_admin(actor, "comment")?;
        sqlx::query("DELETE FROM comments WHERE id = $1")
            .bind(access.id.to_string())
            .execute(&self.db().pool)
            .await?;
        Ok(())
    }
}

// ------------------------------------------------------------------ HTTP

/// The post and comment routes.
pub(crate) fn routes() -> OpenApiRouter<Control> {
    OpenApiRouter::new()
        .routes(routes!(list_posts, create_post))
        .routes(routes!(get_post, update_post, delete_post))
        .routes(routes!(list_comments, create_comment))
        .routes(routes!(update_comment, delete_comment))
}

/// The team's posts, newest first.
#[utoipa::path(get, path = "/v1/teams/{id}/posts", tag = "posts", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Team id"), PageParams),
    responses((status = 200, body = Page<Post>), (status = 404, body = Problem)))]
async fn list_posts(
    State(c): State<Control>,
    actor: Actor,
    Path(id): Path<Uuid>,
    Query(p): Query<PageParams>,
) -> ApiResult<Json<Page<Post>>> {
    Ok(Json(c.list_posts(&actor, id, &p).await?))
}

#[utoipa::path(post, path = "/v1/teams/{id}/posts", tag = "posts", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Team id")), request_body = CreatePostRequest,
    responses((status = 201, body = Post), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn create_post(
    State(c): State<Control>,
    actor: Actor,
    Path(id): Path<Uuid>,
    Json(req): Json<CreatePostRequest>,
) -> ApiResult<impl IntoResponse> {
    Ok((
        StatusCode::CREATED,
        Json(c.create_post(&actor, id, req).await?),
    ))
}

#[utoipa::path(get, path = "/v1/posts/{id}", tag = "posts", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Post id")),
    responses((status = 200, body = Post), (status = 404, body = Problem)))]
async fn get_post(
    State(c): State<Control>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Post>> {
    Ok(Json(c.get_post(&actor, id).await?))
}

/// Edit a post (author only).
#[utoipa::path(patch, path = "/v1/posts/{id}", tag = "posts", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Post id")), request_body = UpdatePostRequest,
    responses((status = 200, body = Post), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn update_post(
    State(c): State<Control>,
    actor: Actor,
    Path(id): Path<Uuid>,
    Json(req): Json<UpdatePostRequest>,
) -> ApiResult<Json<Post>> {
    Ok(Json(c.update_post(&actor, id, req).await?))
}

/// Delete a post and its comments (author or team admin).
#[utoipa::path(delete, path = "/v1/posts/{id}", tag = "posts", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Post id")),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn delete_post(
    State(c): State<Control>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    c.delete_post(&actor, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The post's comments, oldest first.
#[utoipa::path(get, path = "/v1/posts/{id}/comments", tag = "posts", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Post id"), PageParams),
    responses((status = 200, body = Page<Comment>), (status = 404, body = Problem)))]
async fn list_comments(
    State(c): State<Control>,
    actor: Actor,
    Path(id): Path<Uuid>,
    Query(p): Query<PageParams>,
) -> ApiResult<Json<Page<Comment>>> {
    Ok(Json(c.list_comments(&actor, id, &p).await?))
}

#[utoipa::path(post, path = "/v1/posts/{id}/comments", tag = "posts", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Post id")), request_body = CreateCommentRequest,
    responses((status = 201, body = Comment), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn create_comment(
    State(c): State<Control>,
    actor: Actor,
    Path(id): Path<Uuid>,
    Json(req): Json<CreateCommentRequest>,
) -> ApiResult<impl IntoResponse> {
    Ok((
        StatusCode::CREATED,
        Json(c.create_comment(&actor, id, req).await?),
    ))
}

/// Edit a comment (author only).
#[utoipa::path(patch, path = "/v1/comments/{id}", tag = "posts", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Comment id")), request_body = UpdateCommentRequest,
    responses((status = 200, body = Comment), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn update_comment(
    State(c): State<Control>,
    actor: Actor,
    Path(id): Path<Uuid>,
    Json(req): Json<UpdateCommentRequest>,
) -> ApiResult<Json<Comment>> {
    Ok(Json(c.update_comment(&actor, id, req).await?))
}

/// Delete a comment (author or team admin).
#[utoipa::path(delete, path = "/v1/comments/{id}", tag = "posts", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Comment id")),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn delete_comment(
    State(c): State<Control>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    c.delete_comment(&actor, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_normalizes_line_endings() {
        assert_eq!(long_text("body", "a\r\nb\rc", 1, 10).unwrap(), "a\nb\nc");
        assert!(long_text("body", "a\u{0}b", 1, 10).is_err());
        assert!(long_text("body", "  ", 1, 10).is_err());
    }
}
