//! The service registry against real databases: one table of scenarios run
//! on SQLite (a temporary file), MariaDB and PostgreSQL, through the tokio
//! shell's registry and, in one scenario, the smol shell's.
//!
//! MariaDB and PostgreSQL are throwaway servers this test binary starts from
//! the binaries installed on the machine (one of each, shared by the tests;
//! see `anpx-test-servers`). Every test works in a table of its own,
//! created and dropped by the test, so tests running in parallel do not
//! collide. Where a server is not installed its tests print a skip notice
//! naming the install command (and fail when `CI` is set).

use std::panic::{resume_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anpx_core::registry::{Registry, RegistryError};
use anpx_core::ServiceUrl;
use anpx_test_servers::{MariaDb, Postgres};
use futures_util::FutureExt;
use shell_tokio::registry::SqlRegistry;
use sqlx::mysql::{MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqlitePool, SqlitePoolOptions};
use sqlx::{ColumnIndex, Decode, Row, Type};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    MariaDb,
    Postgres,
}

impl Backend {
    /// The URL of this test binary's server for the backend: `Some(None)`
    /// for SQLite (a file of the test's own), `None` when the server is not
    /// installed (the test is skipped, and says so).
    fn server_url(self) -> Option<Option<String>> {
        match self {
            Backend::Sqlite => Some(None),
            Backend::MariaDb => MariaDb::shared_or_skip().map(|s| Some(s.url())),
            Backend::Postgres => Postgres::shared_or_skip().map(|s| Some(s.url())),
        }
    }
}

/// Direct access to the test's database, for what the reference (or an
/// operator) would do by hand: raw rows, DDL, inspection.
enum Raw {
    Sqlite(SqlitePool),
    MySql(MySqlPool),
    Postgres(PgPool),
}

macro_rules! on_raw {
    ($raw:expr, $p:ident => $body:expr) => {
        match $raw {
            Raw::Sqlite($p) => $body,
            Raw::MySql($p) => $body,
            Raw::Postgres($p) => $body,
        }
    };
}

impl Raw {
    async fn exec(&self, sql: &str) -> Result<u64, sqlx::Error> {
        on_raw!(self, p => sqlx::query(sql).execute(p).await.map(|r| r.rows_affected()))
    }

    async fn rows(&self, sql: &str) -> Vec<(String, String)> {
        on_raw!(self, p => {
            let rows = sqlx::query(sql).fetch_all(p).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
            rows.iter().map(|r| (text_at(r, 0), text_at(r, 1))).collect()
        })
    }
}

/// Column `i` as text. The registry's own MySQL table compares bytes
/// (`utf8mb4_bin`), which the driver hands out as bytes.
fn text_at<R>(row: &R, i: usize) -> String
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
{
    row.try_get::<String, _>(i)
        .or_else(|_| {
            row.try_get::<Vec<u8>, _>(i)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
        })
        .unwrap_or_else(|e| panic!("column {i}: {e}"))
}

/// One test's database and table.
struct Db {
    backend: Backend,
    url: String,
    table: String,
    raw: Raw,
    scratch: Option<PathBuf>,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

impl Db {
    /// The test's database, or `None` when its server is not installed.
    async fn open(backend: Backend, scenario: &str) -> Option<Db> {
        let unique = format!(
            "{}_{}_{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed),
            fastrand::u32(..)
        );
        let table = format!("anpx_reg_{scenario}_{unique}");
        let (url, scratch) = match backend.server_url()? {
            Some(url) => (url, None),
            None => {
                let dir = std::env::temp_dir().join(format!("anpx-registry-{unique}"));
                std::fs::create_dir_all(&dir).unwrap();
                let url = format!("sqlite://{}?mode=rwc", dir.join("registry.db").display());
                (url, Some(dir))
            }
        };
        let timeout = Duration::from_secs(5);
        let raw = match backend {
            Backend::Sqlite => SqlitePoolOptions::new()
                .acquire_timeout(timeout)
                .connect(&url)
                .await
                .map(Raw::Sqlite),
            Backend::MariaDb => MySqlPoolOptions::new()
                .acquire_timeout(timeout)
                .connect(&url)
                .await
                .map(Raw::MySql),
            Backend::Postgres => PgPoolOptions::new()
                .acquire_timeout(timeout)
                .connect(&url)
                .await
                .map(Raw::Postgres),
        };
        let raw = raw.unwrap_or_else(|e| panic!("{backend:?} is not answering at {url}: {e}"));
        Some(Db {
            backend,
            url,
            table,
            raw,
            scratch,
        })
    }

    async fn registry(&self) -> Arc<SqlRegistry> {
        Arc::new(
            SqlRegistry::connect_with_table(&self.url, &self.table)
                .await
                .unwrap_or_else(|e| panic!("{:?}: {e}", self.backend)),
        )
    }

    /// Inserts a row as the reference does, with an explicit creation time
    /// so that the order of grants is known.
    async fn insert_raw(&self, did: &str, proxy_path: &str, created_at: &str) {
        let sql = format!(
            "INSERT INTO {} (did, proxy_path, created_at, updated_at) VALUES ('{did}', '{proxy_path}', '{created_at}', '{created_at}')",
            self.table
        );
        self.raw
            .exec(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    async fn stored(&self) -> Vec<(String, String)> {
        let mut rows = self
            .raw
            .rows(&format!("SELECT did, proxy_path FROM {}", self.table))
            .await;
        rows.sort();
        rows
    }

    async fn drop_table(self) {
        let _ = self
            .raw
            .exec(&format!("DROP TABLE IF EXISTS {}", self.table))
            .await;
        on_raw!(self.raw, p => p.close().await);
        if let Some(dir) = self.scratch {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn u(s: &str) -> ServiceUrl {
    s.parse().unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

fn entries(list: &[(&str, &str)]) -> Vec<(String, ServiceUrl)> {
    let mut v: Vec<_> = list.iter().map(|(d, s)| (d.to_string(), u(s))).collect();
    v.sort_by_key(|(d, s)| (d.clone(), s.to_string()));
    v
}

async fn listed(reg: &SqlRegistry) -> Vec<(String, ServiceUrl)> {
    let mut v = reg.list().await.unwrap();
    v.sort_by_key(|(d, s)| (d.clone(), s.to_string()));
    v
}

fn assert_conflict(result: Result<(), RegistryError>, owner: &str, what: &str) {
    match result {
        Err(RegistryError::Conflict { owner: o, .. }) => assert_eq!(o, owner, "{what}"),
        other => panic!("{what}: expected a conflict with {owner}, got {other:?}"),
    }
}

// ----- the scenarios -----

async fn add_list_remove_round_trip(db: &Db) {
    let reg = db.registry().await;
    assert!(reg.list().await.unwrap().is_empty());
    reg.add("did:wba:a", &u("api.agent.com/anpproxy1"))
        .await
        .unwrap();
    reg.add("did:wba:a", &u("https://API.agent.com/tools/"))
        .await
        .unwrap();
    reg.add("did:wba:b", &u("other.com/x")).await.unwrap();
    // Adding what is there already changes nothing.
    reg.add("did:wba:a", &u("api.agent.com/anpproxy1"))
        .await
        .unwrap();
    let want = entries(&[
        ("did:wba:a", "api.agent.com/anpproxy1"),
        ("did:wba:a", "api.agent.com/tools"),
        ("did:wba:b", "other.com/x"),
    ]);
    assert_eq!(listed(&reg).await, want);
    // Stored as canonical text, without `/ad.json`.
    assert_eq!(
        db.stored().await,
        vec![
            ("did:wba:a".into(), "api.agent.com/anpproxy1".into()),
            ("did:wba:a".into(), "api.agent.com/tools".into()),
            ("did:wba:b".into(), "other.com/x".into()),
        ]
    );
    assert!(reg
        .remove("did:wba:a", &u("api.agent.com/tools"))
        .await
        .unwrap());
    assert!(!reg
        .remove("did:wba:a", &u("api.agent.com/tools"))
        .await
        .unwrap());
    // Someone else's entry is not removed on their behalf.
    assert!(!reg.remove("did:wba:a", &u("other.com/x")).await.unwrap());
    assert_eq!(
        listed(&reg).await,
        entries(&[
            ("did:wba:a", "api.agent.com/anpproxy1"),
            ("did:wba:b", "other.com/x"),
        ])
    );
    // A second registry on the same table sees the same entries: nothing is
    // held only in memory.
    let again = db.registry().await;
    assert_eq!(listed(&again).await, listed(&reg).await);
}

async fn reference_rows_read_as_the_stripped_prefix(db: &Db) {
    let reg = db.registry().await;
    db.insert_raw(
        "did:wba:didhost.cc:anpproxy1",
        "api.agent.com/anpproxy1/ad.json",
        "2024-01-01 00:00:02",
    )
    .await;
    db.insert_raw(
        "did:wba:didhost.cc:anpproxy1",
        "api.agent.com/older",
        "2024-01-01 00:00:01",
    )
    .await;
    // Not a service URL: skipped (with a warning), never fatal.
    db.insert_raw(
        "did:wba:didhost.cc:anpproxy1",
        "api.agent.com/a b",
        "2024-01-01 00:00:03",
    )
    .await;
    db.insert_raw(
        "did:wba:didhost.cc:anpproxy2",
        "api.agent.com/anpproxy2/ad.json",
        "2024-01-01 00:00:04",
    )
    .await;
    assert_eq!(
        reg.grants_for("did:wba:didhost.cc:anpproxy1")
            .await
            .unwrap(),
        vec![u("api.agent.com/older"), u("api.agent.com/anpproxy1")],
        "oldest first, /ad.json stripped, the bad row skipped"
    );
    assert_eq!(
        listed(&reg).await,
        entries(&[
            ("did:wba:didhost.cc:anpproxy1", "api.agent.com/anpproxy1"),
            ("did:wba:didhost.cc:anpproxy1", "api.agent.com/older"),
            ("did:wba:didhost.cc:anpproxy2", "api.agent.com/anpproxy2"),
        ])
    );
    // The reference's row counts as the URL: adding it again writes nothing,
    // and another DID cannot slip under it.
    reg.add(
        "did:wba:didhost.cc:anpproxy1",
        &u("api.agent.com/anpproxy1"),
    )
    .await
    .unwrap();
    assert_eq!(db.stored().await.len(), 4);
    assert_conflict(
        reg.add(
            "did:wba:didhost.cc:anpproxy2",
            &u("api.agent.com/anpproxy1/x"),
        )
        .await,
        "did:wba:didhost.cc:anpproxy1",
        "nested under a reference row",
    );
    // Removing the URL removes the reference's row.
    assert!(reg
        .remove(
            "did:wba:didhost.cc:anpproxy1",
            &u("api.agent.com/anpproxy1")
        )
        .await
        .unwrap());
    assert!(!db
        .stored()
        .await
        .iter()
        .any(|(_, p)| p == "api.agent.com/anpproxy1/ad.json"));
}

async fn no_takeover_of_another_dids_url(db: &Db) {
    let reg = db.registry().await;
    reg.add("did:wba:owner", &u("api.agent.com/anpproxy1"))
        .await
        .unwrap();
    for (taken, what) in [
        ("api.agent.com/anpproxy1", "equal"),
        ("API.agent.com:443/anpproxy1/", "equal, spelled differently"),
        ("api.agent.com/anpproxy1/admin", "nested below"),
        ("api.agent.com", "nested above"),
        ("*/anpproxy1/x", "wildcard host below"),
        ("*", "wildcard host above"),
    ] {
        assert_conflict(
            reg.add("did:wba:thief", &u(taken)).await,
            "did:wba:owner",
            what,
        );
    }
    assert_eq!(
        db.stored().await,
        vec![("did:wba:owner".into(), "api.agent.com/anpproxy1".into())],
        "nothing was written for the refused adds"
    );
    // Neighbours are fine, and the owner may nest its own.
    reg.add("did:wba:thief", &u("api.agent.com/anpproxy10"))
        .await
        .unwrap();
    reg.add("did:wba:thief", &u("other.agent.com/anpproxy1"))
        .await
        .unwrap();
    reg.add("did:wba:owner", &u("api.agent.com/anpproxy1/v2"))
        .await
        .unwrap();

    // Racing DIDs: exactly one gets a free URL.
    let racers: Vec<_> = (0..4)
        .map(|i| {
            let reg = reg.clone();
            tokio::spawn(async move {
                reg.add(&format!("did:wba:racer{i}"), &u("race.agent.com/x"))
                    .await
            })
        })
        .collect();
    let mut won = 0;
    for racer in racers {
        match racer.await.unwrap() {
            Ok(()) => won += 1,
            Err(RegistryError::Conflict { .. }) => {}
            Err(e) => panic!("a racer failed otherwise: {e}"),
        }
    }
    assert_eq!(won, 1);
    let stored = db.stored().await;
    assert_eq!(
        stored
            .iter()
            .filter(|(_, p)| p == "race.agent.com/x")
            .count(),
        1,
        "{stored:?}"
    );
}

async fn grants_for_returns_only_the_dids_own_rows(db: &Db) {
    let reg = db.registry().await;
    reg.add("did:wba:a", &u("h.com/a1")).await.unwrap();
    reg.add("did:wba:b", &u("h.com/b")).await.unwrap();
    reg.add("did:wba:a", &u("h.com/a2")).await.unwrap();
    let mut a = reg.grants_for("did:wba:a").await.unwrap();
    a.sort_by_key(ToString::to_string);
    assert_eq!(a, vec![u("h.com/a1"), u("h.com/a2")]);
    assert_eq!(
        reg.grants_for("did:wba:b").await.unwrap(),
        vec![u("h.com/b")]
    );
    assert!(reg.grants_for("did:wba:c").await.unwrap().is_empty());
    // Another spelling is another DID, whatever the column's collation.
    assert!(reg.grants_for("did:wba:A").await.unwrap().is_empty());
    assert!(reg.grants_for("did:wba:").await.unwrap().is_empty());
}

/// The reference's own DDL, per database: MySQL's is the reference's
/// statement; the others keep only the four columns the facts name, with no
/// defaults, to show nothing more is needed.
fn reference_ddl(backend: Backend, t: &str) -> String {
    match backend {
        Backend::MariaDb => format!(
            "CREATE TABLE IF NOT EXISTS {t} (
                id INT AUTO_INCREMENT PRIMARY KEY,
                did VARCHAR(255) NOT NULL,
                proxy_path VARCHAR(512) NOT NULL,
                created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
                updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
                INDEX idx_did (did),
                UNIQUE KEY unique_did_service (did, proxy_path)
            ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
        ),
        Backend::Postgres | Backend::Sqlite => format!(
            "CREATE TABLE {t} (
                did VARCHAR(255) NOT NULL,
                proxy_path VARCHAR(512) NOT NULL,
                created_at TIMESTAMP,
                updated_at TIMESTAMP,
                UNIQUE (did, proxy_path)
            )"
        ),
    }
}

async fn the_reference_table_works_as_is(db: &Db) {
    db.raw
        .exec(&reference_ddl(db.backend, &db.table))
        .await
        .unwrap();
    db.insert_raw(
        "did:wba:didhost.cc:test:public",
        "agents.example.com/agents/ad.json",
        "2024-01-01 00:00:00",
    )
    .await;
    let reg = db.registry().await;
    assert_eq!(
        reg.grants_for("did:wba:didhost.cc:test:public")
            .await
            .unwrap(),
        vec![u("agents.example.com/agents")]
    );
    reg.add("did:wba:new", &u("api.agent.com/new"))
        .await
        .unwrap();
    assert_conflict(
        reg.add("did:wba:new", &u("agents.example.com/agents/x"))
            .await,
        "did:wba:didhost.cc:test:public",
        "under the reference's row",
    );
    // The row written has its timestamps, as the reference expects.
    let written = db
        .raw
        .rows(&format!(
            "SELECT did, proxy_path FROM {} WHERE did = 'did:wba:new' AND created_at IS NOT NULL AND updated_at IS NOT NULL",
            db.table
        ))
        .await;
    assert_eq!(
        written,
        vec![("did:wba:new".into(), "api.agent.com/new".into())]
    );
    // The reference's query reads it back as the same prefix.
    let reference_view = db
        .raw
        .rows(&format!(
            "SELECT did, proxy_path FROM {} WHERE did = 'did:wba:new' ORDER BY created_at",
            db.table
        ))
        .await;
    assert_eq!(reference_view[0].1, "api.agent.com/new");
    // The table's own unique key is still in force: the shape was not changed.
    let dup = db
        .raw
        .exec(&format!(
            "INSERT INTO {} (did, proxy_path, created_at, updated_at) VALUES ('did:wba:new', 'api.agent.com/new', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
            db.table
        ))
        .await;
    assert!(
        dup.is_err(),
        "the reference's UNIQUE(did, proxy_path) holds"
    );

    if db.backend == Backend::MariaDb {
        // The reference's columns compare case-insensitively; DIDs must not.
        db.insert_raw("did:wba:CASE", "case.example.com/x", "2024-01-01 00:00:00")
            .await;
        assert!(reg.grants_for("did:wba:case").await.unwrap().is_empty());
        assert!(!reg
            .remove("did:wba:case", &u("case.example.com/x"))
            .await
            .unwrap());
        assert_eq!(
            reg.grants_for("did:wba:CASE").await.unwrap(),
            vec![u("case.example.com/x")]
        );
    }
    assert!(reg
        .remove("did:wba:new", &u("api.agent.com/new"))
        .await
        .unwrap());
}

async fn a_table_that_is_not_the_registry_is_reported(db: &Db) {
    db.raw
        .exec(&format!("CREATE TABLE {} (name VARCHAR(10))", db.table))
        .await
        .unwrap();
    let err = SqlRegistry::connect_with_table(&db.url, &db.table)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&db.table) && err.contains("lacks the columns"),
        "{err}"
    );
}

/// The smol shell's registry ([`shell_smol::registry::OnTokio`]) driven
/// from a smol executor on a thread with no tokio runtime: sqlx's futures
/// only run there because async-compat lends them one, so a registry call
/// that escaped the wrapper would panic here rather than pass.
async fn the_smol_shell_drives_it_from_a_smol_executor(db: &Db) {
    let (url, table) = (db.url.clone(), db.table.clone());
    let on_smol = std::thread::spawn(move || {
        smol::block_on(async move {
            let sql = SqlRegistry::new(&url, &table).unwrap_or_else(|e| panic!("{url}: {e}"));
            let reg = shell_smol::registry::OnTokio(Arc::new(sql));
            assert!(reg.list().await.unwrap().is_empty());
            reg.add("did:wba:a", &u("api.agent.com/anpproxy1"))
                .await
                .unwrap();
            reg.add("did:wba:a", &u("api.agent.com/tools"))
                .await
                .unwrap();
            reg.add("did:wba:b", &u("other.com/x")).await.unwrap();
            assert_conflict(
                reg.add("did:wba:b", &u("api.agent.com/tools")).await,
                "did:wba:a",
                "another DID's URL",
            );
            let mut grants = reg.grants_for("did:wba:a").await.unwrap();
            grants.sort_by_key(|s| s.to_string());
            assert_eq!(
                grants,
                [u("api.agent.com/anpproxy1"), u("api.agent.com/tools")]
            );
            assert_eq!(
                reg.grants_for("did:wba:b").await.unwrap(),
                [u("other.com/x")]
            );
            assert!(reg
                .remove("did:wba:a", &u("api.agent.com/tools"))
                .await
                .unwrap());
            assert!(!reg
                .remove("did:wba:a", &u("api.agent.com/tools"))
                .await
                .unwrap());
            let mut v = reg.list().await.unwrap();
            v.sort_by_key(|(d, s)| (d.clone(), s.to_string()));
            assert_eq!(
                v,
                entries(&[
                    ("did:wba:a", "api.agent.com/anpproxy1"),
                    ("did:wba:b", "other.com/x"),
                ])
            );
        })
    });
    let outcome = tokio::task::spawn_blocking(move || on_smol.join())
        .await
        .expect("joining the smol thread");
    if let Err(panic) = outcome {
        resume_unwind(panic);
    }
    // What smol wrote is in the database, as the tokio side reads it.
    assert_eq!(
        db.stored().await,
        vec![
            ("did:wba:a".into(), "api.agent.com/anpproxy1".into()),
            ("did:wba:b".into(), "other.com/x".into()),
        ]
    );
}

/// Runs each scenario on each database, in a table of its own that is
/// dropped afterwards, pass or fail.
macro_rules! on_every_backend {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite { $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $scenario() { super::run(super::Backend::Sqlite, stringify!($scenario)).await }
        )* }
        mod mariadb { $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $scenario() { super::run(super::Backend::MariaDb, stringify!($scenario)).await }
        )* }
        mod postgres { $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $scenario() { super::run(super::Backend::Postgres, stringify!($scenario)).await }
        )* }

        async fn run(backend: Backend, scenario: &str) {
            let Some(db) = Db::open(backend, short(scenario)).await else {
                return;
            };
            let outcome = match scenario {
                $(stringify!($scenario) => AssertUnwindSafe($scenario(&db)).catch_unwind().await,)*
                other => unreachable!("{other}"),
            };
            db.drop_table().await;
            if let Err(panic) = outcome {
                resume_unwind(panic);
            }
        }
    };
}

/// Table names stay within MySQL's 64 characters.
fn short(scenario: &str) -> &str {
    &scenario[..scenario.len().min(24)]
}

on_every_backend!(
    add_list_remove_round_trip,
    reference_rows_read_as_the_stripped_prefix,
    no_takeover_of_another_dids_url,
    grants_for_returns_only_the_dids_own_rows,
    the_reference_table_works_as_is,
    a_table_that_is_not_the_registry_is_reported,
    the_smol_shell_drives_it_from_a_smol_executor,
);
