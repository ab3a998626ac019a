//! Test databases: a fresh SQLite file in a unique directory, or a fresh
//! database on the PostgreSQL server that `scripts/test-postgres.sh` starts
//! (its URL in `$OPENMOSIX_TEST_PG`). Both are removed when the guard drops,
//! even when the test failed.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use history::store::Location;

/// Which backend a test runs on.
#[derive(Debug, Clone, Copy)]
pub enum Backend {
    /// SQLite file.
    Sqlite,
    /// PostgreSQL server.
    Postgres,
}

/// A throw-away history database.
pub struct TestDb {
    /// Where it is.
    pub location: Location,
    dir: Option<PathBuf>,
    pg: Option<(String, String)>,
}

static N: AtomicU32 = AtomicU32::new(0);

fn unique(label: &str) -> String {
    format!(
        "{label}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The admin URL of the test server.
pub fn pg_url() -> String {
    std::env::var("OPENMOSIX_TEST_PG").unwrap_or_else(|_| {
        panic!(
            "OPENMOSIX_TEST_PG is not set: run scripts/test.sh, or start the test server with \
             `scripts/test-postgres.sh start` and export the URL it prints"
        )
    })
}

fn with_database(url: &str, db: &str) -> String {
    match url.rfind('/') {
        Some(i) => format!("{}/{db}", &url[..i]),
        None => panic!("bad URL {url}"),
    }
}

async fn admin(sql: &str) {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(&pg_url())
        .await
        .expect("connect to the test PostgreSQL server");
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&mut c)
        .await
        .expect(sql);
}

impl TestDb {
    /// A fresh database on `backend`.
    pub async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(unique("history"));
                std::fs::create_dir_all(&dir).expect("mkdir");
                Self {
                    location: Location::Sqlite(dir.join("current.db")),
                    dir: Some(dir),
                    pg: None,
                }
            }
            Backend::Postgres => {
                let name = unique("omtest");
                admin(&format!("CREATE DATABASE {name}")).await;
                let url = with_database(&pg_url(), &name);
                Self {
                    location: Location::Postgres(url),
                    dir: None,
                    pg: Some((pg_url(), name)),
                }
            }
        }
    }

    /// The SQLite directory (for SQLite databases).
    pub fn dir(&self) -> Option<&PathBuf> {
        self.dir.as_ref()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
        if let Some((_, name)) = self.pg.take() {
            let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
            let _ = std::thread::spawn(move || {
                if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    rt.block_on(admin(&sql));
                }
            })
            .join();
        }
    }
}
