//! A database per test: a SQLite file in a temporary directory, or a fresh
//! PostgreSQL database dropped afterwards.

use std::time::Duration;

use sqlx::{Connection, Executor};

use crate::{postgres_admin_url, skip, Backend};

/// A database for one test, dropped afterwards.
pub struct TestDb {
    pub url: String,
    pg_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// A database the test manages itself (e.g. in a data directory it owns).
    pub fn external(url: String) -> TestDb {
        TestDb {
            url,
            pg_name: None,
            _dir: None,
        }
    }

    pub async fn new(backend: Backend) -> Option<TestDb> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("tempdir");
                let url = format!("sqlite://{}/convene.db", dir.path().display());
                Some(TestDb {
                    url,
                    pg_name: None,
                    _dir: Some(dir),
                })
            }
            Backend::Postgres => {
                let admin = postgres_admin_url();
                let conn = tokio::time::timeout(
                    Duration::from_secs(3),
                    sqlx::PgConnection::connect(&admin),
                )
                .await;
                let mut conn = match conn {
                    Ok(Ok(c)) => c,
                    _ => {
                        skip(format!(
                            "PostgreSQL not reachable at {admin} (set CONVENE_TEST_POSTGRES_URL)"
                        ))?;
                        unreachable!()
                    }
                };
                let name = format!("convene_t_{}", uuid::Uuid::new_v4().simple());
                conn.execute(format!("CREATE DATABASE {name}").as_str())
                    .await
                    .expect("create test database");
                let _ = conn.close().await;
                let (base, query) = match admin.split_once('?') {
                    Some((b, q)) => (b.to_string(), format!("?{q}")),
                    None => (admin.clone(), String::new()),
                };
                let (server, _) = base.rsplit_once('/').expect("database in URL");
                Some(TestDb {
                    url: format!("{server}/{name}{query}"),
                    pg_name: Some(name),
                    _dir: None,
                })
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.pg_name.take() else {
            return;
        };
        // Drop runs outside async context guarantees: use a private runtime
        // on its own thread.
        let admin = postgres_admin_url();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                    let _ = conn
                        .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                        .await;
                    let _ = conn.close().await;
                }
            });
        })
        .join();
    }
}

impl TestDb {
    /// A placeholder owning nothing (for a replica that shares another's
    /// database).
    pub(crate) fn none() -> TestDb {
        TestDb {
            url: String::new(),
            pg_name: None,
            _dir: None,
        }
    }
}
