//! Keyset pagination: lists are ordered by `(timestamp, id)` and the cursor
//! is the last item's key, so pages stay stable while rows are inserted.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use convene_proto::control::Page;
use serde::Deserialize;
use sqlx::any::AnyRow;
use sqlx::AnyPool;
use utoipa::IntoParams;

use crate::error::ApiError;

/// `?cursor=&limit=` of every list endpoint.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Opaque cursor from a previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Page size; capped at the configured maximum.
    pub limit: Option<u32>,
}

/// Position after which the next page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub ts: i64,
    pub id: String,
}

impl Cursor {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}:{}", self.ts, self.id))
    }

    pub fn decode(s: &str) -> Result<Cursor, ApiError> {
        let bad = || ApiError::BadRequest("invalid cursor".into());
        let raw = URL_SAFE_NO_PAD.decode(s).map_err(|_| bad())?;
        let raw = String::from_utf8(raw).map_err(|_| bad())?;
        let (ts, id) = raw.split_once(':').ok_or_else(bad)?;
        Ok(Cursor {
            ts: ts.parse().map_err(|_| bad())?,
            id: id.to_string(),
        })
    }
}

/// Resolved page request: where to start and how many rows to return.
#[derive(Debug, Clone)]
pub struct PageRequest {
    /// `(i64::MIN, "")` for the first page, so one SQL shape serves all pages.
    pub after: Cursor,
    pub limit: u32,
}

impl PageRequest {
    pub fn new(params: &PageParams, default_limit: u32, max_limit: u32) -> Result<Self, ApiError> {
        let after = match params.cursor.as_deref() {
            None | Some("") => Cursor {
                ts: i64::MIN,
                id: String::new(),
            },
            Some(c) => Cursor::decode(c)?,
        };
        let limit = params
            .limit
            .unwrap_or(default_limit)
            .clamp(1, max_limit.max(1));
        Ok(PageRequest { after, limit })
    }

    /// Rows to fetch: one more than the page size tells whether a next page exists.
    pub fn fetch_limit(&self) -> i64 {
        i64::from(self.limit) + 1
    }

    /// Trims the extra row and derives the next cursor from the last item.
    pub fn finish<T>(
        &self,
        mut items: Vec<T>,
        key: impl Fn(&T) -> Cursor,
    ) -> (Vec<T>, Option<String>) {
        let more = items.len() > self.limit as usize;
        items.truncate(self.limit as usize);
        let next = if more {
            items.last().map(|i| key(i).encode())
        } else {
            None
        };
        (items, next)
    }
}

impl PageRequest {
    /// Runs a keyset query whose binds are `$1` = the scope (team, post or
    /// user id), `$2`/`$3` = `bound` (cursor timestamp and id), `$4` = the
    /// fetch limit; maps the rows and cuts the page.
    pub async fn fetch<T>(
        &self,
        pool: &AnyPool,
        sql: &str,
        scope: String,
        bound: (i64, String),
        from_row: impl Fn(&AnyRow) -> Result<T, ApiError>,
        key: impl Fn(&T) -> Cursor,
    ) -> Result<Page<T>, ApiError> {
        let rows = sqlx::query(sql)
            .bind(scope)
            .bind(bound.0)
            .bind(bound.1)
            .bind(self.fetch_limit())
            .fetch_all(pool)
            .await?;
        let items = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
        let (items, next_cursor) = self.finish(items, key);
        Ok(Page { items, next_cursor })
    }

    /// The cursor bound for ascending lists.
    pub fn asc_bound(&self) -> (i64, String) {
        (self.after.ts, self.after.id.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_roundtrip() {
        let c = Cursor {
            ts: 1_700_000_000_000,
            id: "abc".into(),
        };
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        assert!(Cursor::decode("%%%").is_err());
    }
}
