//! What operators' commands (`rapport doctor`) ask of the database itself.

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};

use super::{Pool, Store};

impl Store {
    /// How many embedded migrations the database has not applied.
    pub async fn pending_migrations(&self) -> Result<usize> {
        const APPLIED: &str = "SELECT version FROM _sqlx_migrations WHERE success";
        let (embedded, applied): (Vec<i64>, Result<Vec<i64>, sqlx::Error>) = match &self.pool {
            Pool::Sqlite(p, _) => (
                sqlx::migrate!("./migrations/sqlite")
                    .iter()
                    .map(|m| m.version)
                    .collect(),
                sqlx::query_scalar(APPLIED).fetch_all(p).await,
            ),
            Pool::Postgres(p) => (
                sqlx::migrate!("./migrations/postgres")
                    .iter()
                    .map(|m| m.version)
                    .collect(),
                sqlx::query_scalar(APPLIED).fetch_all(p).await,
            ),
        };
        // No migrations table yet: nothing is applied.
        let applied = applied.unwrap_or_default();
        Ok(embedded.iter().filter(|v| !applied.contains(v)).count())
    }

    /// The database server's clock (PostgreSQL; SQLite has none of its own).
    pub async fn server_time(&self) -> Result<DateTime<Utc>> {
        match &self.pool {
            Pool::Postgres(p) => sqlx::query_scalar("SELECT now()")
                .fetch_one(p)
                .await
                .context("reading the server's time"),
            Pool::Sqlite(..) => Ok(self.now()),
        }
    }
}
