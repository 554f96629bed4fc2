//! Who is online, across signaling nodes.
//!
//! Each node counts its own connections per user. With Redis, a user's
//! presence is a sorted set `convene:online:{user}` of node ids scored by
//! expiry time: nodes refresh their members periodically, so a node that dies
//! stops counting once its scores pass (no ghost "online" users), and a user
//! connected to two nodes stays online until both let go.

use std::time::Duration;

use dashmap::DashMap;
use redis::aio::ConnectionManager;
use uuid::Uuid;

pub(crate) struct Presence {
    local: DashMap<Uuid, usize>,
    redis: Option<RedisPresence>,
}

struct RedisPresence {
    conn: ConnectionManager,
    node: String,
    ttl: Duration,
}

fn key(user: Uuid) -> String {
    format!("convene:online:{user}")
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Presence {
    pub(crate) fn in_process() -> Self {
        Presence {
            local: DashMap::new(),
            redis: None,
        }
    }

    pub(crate) fn redis(conn: ConnectionManager, node: String, ttl: Duration) -> Self {
        Presence {
            local: DashMap::new(),
            redis: Some(RedisPresence { conn, node, ttl }),
        }
    }

    /// A connection of `user` opened here; true when it is the user's first
    /// on this node.
    pub(crate) async fn connect(&self, user: Uuid) -> bool {
        let first = {
            let mut n = self.local.entry(user).or_insert(0);
            *n += 1;
            *n == 1
        };
        if first {
            if let Some(r) = &self.redis {
                r.claim(&[user]).await;
            }
        }
        first
    }

    /// A connection of `user` closed here; true when the user is now offline
    /// everywhere.
    pub(crate) async fn disconnect(&self, user: Uuid) -> bool {
        let last = match self.local.get_mut(&user) {
            Some(mut n) => {
                *n = n.saturating_sub(1);
                *n == 0
            }
            None => true,
        };
        if !last {
            return false;
        }
        self.local.remove_if(&user, |_, n| *n == 0);
        match &self.redis {
            None => true,
            Some(r) => {
                let mut conn = r.conn.clone();
                let _ = redis::cmd("ZREM")
                    .arg(key(user))
                    .arg(&r.node)
                    .query_async::<i64>(&mut conn)
                    .await;
                !r.any_alive(&[user]).await.contains(&user)
            }
        }
    }

    /// The users among `users` who are online on any node.
    pub(crate) async fn online(&self, users: &[Uuid]) -> Vec<Uuid> {
        match &self.redis {
            None => users
                .iter()
                .copied()
                .filter(|u| self.local.get(u).is_some_and(|n| *n > 0))
                .collect(),
            Some(r) => r.any_alive(users).await,
        }
    }

    /// Renews this node's claims; run several times per TTL.
    pub(crate) async fn refresh(&self) {
        if let Some(r) = &self.redis {
            let users: Vec<Uuid> = self.local.iter().map(|e| *e.key()).collect();
            if !users.is_empty() {
                r.claim(&users).await;
            }
        }
    }
}

impl RedisPresence {
    async fn claim(&self, users: &[Uuid]) {
        let expires = now_ms() + self.ttl.as_millis() as i64;
        let mut pipe = redis::pipe();
        for u in users {
            pipe.cmd("ZADD")
                .arg(key(*u))
                .arg(expires)
                .arg(&self.node)
                .ignore();
            // The key itself outlives every claim in it, then goes.
            pipe.cmd("PEXPIRE")
                .arg(key(*u))
                .arg(2 * self.ttl.as_millis() as i64)
                .ignore();
        }
        let mut conn = self.conn.clone();
        if let Err(e) = pipe.query_async::<()>(&mut conn).await {
            tracing::warn!(error = %e, "presence claim failed");
        }
    }

    async fn any_alive(&self, users: &[Uuid]) -> Vec<Uuid> {
        if users.is_empty() {
            return Vec::new();
        }
        let now = now_ms();
        let mut pipe = redis::pipe();
        for u in users {
            pipe.cmd("ZCOUNT").arg(key(*u)).arg(now).arg("+inf");
        }
        let mut conn = self.conn.clone();
        match pipe.query_async::<Vec<i64>>(&mut conn).await {
            Ok(counts) => users
                .iter()
                .zip(counts)
                .filter(|(_, n)| *n > 0)
                .map(|(u, _)| *u)
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "presence lookup failed");
                Vec::new()
            }
        }
    }
}
