//! Redis cache of team-membership lookups, the check nearly every request
//! makes. Entries are deleted after each membership change commits and expire
//! after a short TTL, which bounds staleness if an invalidation races with a
//! concurrent read-and-fill. Cache failures fall back to the database.

use convene_proto::control::TeamRole;
use redis::aio::ConnectionManager;
use uuid::Uuid;

/// Cached value meaning "not a member" (negative caching).
const NONE: &str = "-";

#[derive(Clone)]
pub struct MembershipCache {
    conn: Option<ConnectionManager>,
    ttl_secs: u64,
}

impl std::fmt::Debug for MembershipCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MembershipCache")
            .field("enabled", &self.conn.is_some())
            .field("ttl_secs", &self.ttl_secs)
            .finish()
    }
}

fn key(team_id: Uuid, user_id: Uuid) -> String {
    format!("convene:membership:{team_id}:{user_id}")
}

impl MembershipCache {
    pub fn disabled() -> Self {
        MembershipCache {
            conn: None,
            ttl_secs: 0,
        }
    }

    pub fn redis(conn: ConnectionManager, ttl_secs: u64) -> Self {
        MembershipCache {
            conn: Some(conn),
            ttl_secs: ttl_secs.max(1),
        }
    }

    /// `None` on a miss (or when disabled); `Some(None)` for a cached non-member.
    pub async fn get(&self, team_id: Uuid, user_id: Uuid) -> Option<Option<TeamRole>> {
        let mut conn = self.conn.clone()?;
        let value: Option<String> = redis::cmd("GET")
            .arg(key(team_id, user_id))
            .query_async(&mut conn)
            .await
            .inspect_err(|e| tracing::warn!(error = %e, "membership cache read failed"))
            .ok()?;
        let value = value?;
        if value == NONE {
            Some(None)
        } else {
            TeamRole::parse(&value).map(Some)
        }
    }

    pub async fn put(&self, team_id: Uuid, user_id: Uuid, role: Option<TeamRole>) {
        let Some(mut conn) = self.conn.clone() else {
            return;
        };
        let value = role.map(TeamRole::as_str).unwrap_or(NONE);
        let res: Result<(), _> = redis::cmd("SET")
            .arg(key(team_id, user_id))
            .arg(value)
            .arg("EX")
            .arg(self.ttl_secs)
            .query_async(&mut conn)
            .await;
        if let Err(e) = res {
            tracing::warn!(error = %e, "membership cache write failed");
        }
    }

    pub async fn invalidate(&self, team_id: Uuid, user_ids: &[Uuid]) {
        let Some(mut conn) = self.conn.clone() else {
            return;
        };
        if user_ids.is_empty() {
            return;
        }
        let mut cmd = redis::cmd("DEL");
        for u in user_ids {
            cmd.arg(key(team_id, *u));
        }
        let res: Result<(), _> = cmd.query_async(&mut conn).await;
        if let Err(e) = res {
            // A stale entry would outlive a removal for up to the TTL.
            tracing::error!(error = %e, "membership cache invalidation failed");
        }
    }
}
