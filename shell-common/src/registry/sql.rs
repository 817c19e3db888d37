//! The registry in a SQL database: SQLite, MySQL/MariaDB or PostgreSQL.

use std::time::Duration;

use anpx_core::registry::{
    check_add, parse_rows, service_url_to_proxy_path, BackendKind, Registry, RegistryError,
    RegistryFuture,
};
use anpx_core::ServiceUrl;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use sqlx::{ColumnIndex, ConnectOptions, Connection, Decode, Row, Type};
use tokio::sync::OnceCell;

/// The reference's table name, used unless another is given.
pub const DEFAULT_TABLE: &str = "did_proxy_path";

/// How long to wait for a connection before reporting the database
/// unreachable: long enough for a busy server, short enough that an
/// operator at a prompt or a connecting receiver is not left hanging.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections per registry. Reads happen once per receiver connect and
/// writes come from an operator, so a few suffice.
const MAX_CONNECTIONS: u32 = 4;

/// The service registry in a SQL database, in the reference's table shape:
/// `did_proxy_path(did VARCHAR(255), proxy_path VARCHAR(512), created_at,
/// updated_at, UNIQUE(did, proxy_path))`.
///
/// - An existing table is used as it is: only those four columns are read
///   or written, so the reference's own table (with its `id` column and
///   rows ending in `/ad.json`) works unchanged, and the reference can read
///   the rows written here.
/// - A missing table is created in that shape (with an `id` key, as the
///   reference has), so `sqlite://registry.db?mode=rwc` needs no setup: the
///   file and the table appear on first use. When the table cannot be read
///   nor created (a read-only account, a wrong shape), the error says which.
/// - Writes store the canonical service URL, without `/ad.json`.
/// - [`add`](Registry::add) reads every row and inserts in one transaction
///   that keeps other writers out (SQLite `BEGIN IMMEDIATE`, PostgreSQL
///   `LOCK TABLE ... SHARE ROW EXCLUSIVE`, MySQL `SELECT ... FOR UPDATE`,
///   which locks the whole table under InnoDB's default `REPEATABLE READ`),
///   so two DIDs racing for one URL cannot both get it.
/// - Rows that are not service URLs are skipped with a warning in the log
///   (see [`anpx_core::registry`]).
/// - DIDs and paths compare byte for byte, also where a MySQL column's
///   collation ignores case.
///
/// The connection is made on first use and retried on the next use when it
/// fails, so a gateway starts while its database is still coming up.
pub struct SqlRegistry {
    kind: BackendKind,
    /// The URL without its password, for messages.
    shown_url: String,
    table: String,
    options: Options,
    pool: OnceCell<Pool>,
    statements: Statements,
}

#[derive(Clone)]
enum Options {
    Sqlite(SqliteConnectOptions),
    MySql(MySqlConnectOptions),
    Postgres(PgConnectOptions),
}

enum Pool {
    Sqlite(SqlitePool),
    MySql(MySqlPool),
    Postgres(PgPool),
}

/// Runs `$body` with `$p` bound to whichever concrete pool this is, so one
/// piece of code serves the three drivers.
macro_rules! on_pool {
    ($pool:expr, $p:ident => $body:expr) => {
        match $pool {
            Pool::Sqlite($p) => $body,
            Pool::MySql($p) => $body,
            Pool::Postgres($p) => $body,
        }
    };
}

/// Begins a transaction on a concrete pool: SQLite takes the write lock at
/// once, so a read-then-insert cannot interleave with another writer.
macro_rules! begin {
    ($kind:expr, $p:ident) => {
        if $kind == BackendKind::Sqlite {
            $p.begin_with("BEGIN IMMEDIATE").await
        } else {
            $p.begin().await
        }
    };
}

impl SqlRegistry {
    /// Connects to the registry at `url` (`sqlite:`, `mysql://`,
    /// `mariadb://`, `postgres://`) and makes sure the table
    /// `did_proxy_path` is there, creating it if missing.
    pub async fn connect(url: &str) -> Result<Self, RegistryError> {
        Self::connect_with_table(url, DEFAULT_TABLE).await
    }

    /// [`connect`](Self::connect) with another table name (letters, digits
    /// and `_`, optionally `schema.table`).
    pub async fn connect_with_table(url: &str, table: &str) -> Result<Self, RegistryError> {
        let registry = Self::new(url, table)?;
        registry.pool().await?;
        Ok(registry)
    }

    /// The registry at `url` in `table`, connected on first use. Fails only
    /// when `url` or `table` cannot be used at all.
    pub fn new(url: &str, table: &str) -> Result<Self, RegistryError> {
        let kind = BackendKind::from_url(url)?;
        check_table_name(table)?;
        let shown_url = without_password(url);
        let bad_url = |e: sqlx::Error| {
            RegistryError::backend(format!("reading the registry URL {shown_url}"), e)
        };
        // The log is the gateway's, not a query trace: statements stay out.
        let options = match kind {
            BackendKind::Sqlite => {
                let mut o: SqliteConnectOptions = url.parse().map_err(bad_url)?;
                // The embedded default creates its file on first run, unless
                // the URL chose a mode itself (`mode=ro`, say).
                if !url.contains("mode=") {
                    o = o.create_if_missing(true);
                }
                Options::Sqlite(o.disable_statement_logging())
            }
            BackendKind::MySql => Options::MySql(
                url.parse::<MySqlConnectOptions>()
                    .map_err(bad_url)?
                    .disable_statement_logging(),
            ),
            BackendKind::Postgres => Options::Postgres(
                url.parse::<PgConnectOptions>()
                    .map_err(bad_url)?
                    .disable_statement_logging(),
            ),
        };
        Ok(SqlRegistry {
            kind,
            statements: Statements::new(kind, table),
            shown_url,
            table: table.to_owned(),
            options,
            pool: OnceCell::new(),
        })
    }

    /// Which database this is.
    pub fn kind(&self) -> BackendKind {
        self.kind
    }

    /// The table read and written.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Closes the connections; later calls reconnect.
    pub async fn close(&mut self) {
        if let Some(pool) = self.pool.take() {
            on_pool!(pool, p => p.close().await);
        }
    }

    async fn pool(&self) -> Result<&Pool, RegistryError> {
        self.pool.get_or_try_init(|| self.open()).await
    }

    async fn open(&self) -> Result<Pool, RegistryError> {
        let unreachable = |e: sqlx::Error| {
            RegistryError::backend(
                format!(
                    "connecting to the {} registry at {}",
                    self.kind, self.shown_url
                ),
                e,
            )
        };
        // A pool that cannot connect only says it timed out; one direct
        // connection first tells the operator why ("connection refused",
        // "access denied", "unknown database").
        let direct = async {
            // The connection's work is done once it opened; failing to say
            // goodbye politely changes nothing.
            match &self.options {
                Options::Sqlite(o) => drop(o.connect().await?.close().await),
                Options::MySql(o) => drop(o.connect().await?.close().await),
                Options::Postgres(o) => drop(o.connect().await?.close().await),
            }
            Ok::<(), sqlx::Error>(())
        };
        match tokio::time::timeout(ACQUIRE_TIMEOUT, direct).await {
            Ok(connected) => connected.map_err(unreachable)?,
            Err(_) => return Err(unreachable(sqlx::Error::PoolTimedOut)),
        }
        let pool = match &self.options {
            Options::Sqlite(o) => {
                let mut pool = SqlitePoolOptions::new()
                    .max_connections(MAX_CONNECTIONS)
                    .acquire_timeout(ACQUIRE_TIMEOUT);
                if self.shown_url.contains(":memory:") || self.shown_url.contains("mode=memory") {
                    // An in-memory database lives as long as a connection to
                    // it: keep exactly one, for ever.
                    pool = pool
                        .max_connections(1)
                        .min_connections(1)
                        .idle_timeout(None)
                        .max_lifetime(None);
                }
                Pool::Sqlite(pool.connect_with(o.clone()).await.map_err(unreachable)?)
            }
            Options::MySql(o) => Pool::MySql(
                MySqlPoolOptions::new()
                    .max_connections(MAX_CONNECTIONS)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .connect_with(o.clone())
                    .await
                    .map_err(unreachable)?,
            ),
            Options::Postgres(o) => Pool::Postgres(
                PgPoolOptions::new()
                    .max_connections(MAX_CONNECTIONS)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .connect_with(o.clone())
                    .await
                    .map_err(unreachable)?,
            ),
        };
        self.ensure_table(&pool).await?;
        Ok(pool)
    }

    /// Uses the table if it can be read; creates it only when it cannot, so
    /// an account that may read but not create still works.
    async fn ensure_table(&self, pool: &Pool) -> Result<(), RegistryError> {
        let st = &self.statements;
        let probe = on_pool!(pool, p => sqlx::query(&st.probe).execute(p).await.map(drop));
        let Err(missing) = probe else {
            return Ok(());
        };
        let created = on_pool!(pool, p => sqlx::query(&st.create).execute(p).await.map(drop));
        if let Err(e) = created {
            return Err(RegistryError::backend(
                format!(
                    "table {} cannot be read ({missing}) nor created",
                    self.table
                ),
                e,
            ));
        }
        let probe = on_pool!(pool, p => sqlx::query(&st.probe).execute(p).await.map(drop));
        probe.map_err(|e| {
            RegistryError::backend(
                format!(
                    "table {} lacks the columns did, proxy_path, created_at, updated_at",
                    self.table
                ),
                e,
            )
        })
    }

    fn context(&self, what: &str) -> String {
        format!("{what} (table {} at {})", self.table, self.shown_url)
    }

    async fn grants_for_now(&self, did: &str) -> Result<Vec<ServiceUrl>, RegistryError> {
        let pool = self.pool().await?;
        let sql = &self.statements.select_did;
        let raw = on_pool!(pool, p => {
            let rows = sqlx::query(sql).bind(did.to_owned()).fetch_all(p).await;
            rows.map(|rows| rows.iter().map(decode_row).collect::<Vec<_>>())
        })
        .map_err(|e| {
            RegistryError::backend(self.context(&format!("reading the grants of {did}")), e)
        })?;
        Ok(good_rows(raw)
            .into_iter()
            // A MySQL collation may match other spellings of the DID.
            .filter(|(d, _)| d == did)
            .map(|(_, url)| url)
            .collect())
    }

    async fn list_now(&self) -> Result<Vec<(String, ServiceUrl)>, RegistryError> {
        let pool = self.pool().await?;
        let sql = &self.statements.select_all;
        let raw = on_pool!(pool, p => {
            let rows = sqlx::query(sql).fetch_all(p).await;
            rows.map(|rows| rows.iter().map(decode_row).collect::<Vec<_>>())
        })
        .map_err(|e| RegistryError::backend(self.context("listing the registry"), e))?;
        Ok(good_rows(raw))
    }

    async fn add_now(&self, did: &str, url: &ServiceUrl) -> Result<(), RegistryError> {
        anpx_core::registry::check_entry(did, url)?;
        let failed = |e: sqlx::Error| {
            RegistryError::backend(self.context(&format!("adding {url} for {did}")), e)
        };
        let pool = self.pool().await?;
        let mut attempt = 1;
        loop {
            match self.try_add(pool, did, url).await {
                Ok(decided) => return decided,
                // Two writers that both found the table empty can deadlock
                // on MySQL's gap locks; the database rolls one back, and
                // that one simply tries again (and now sees the other's row).
                Err(e) if attempt < ADD_ATTEMPTS && is_transient(&e) => attempt += 1,
                Err(e) => return Err(failed(e)),
            }
        }
    }

    /// One locked read-check-insert. The outer `Result` is the database's,
    /// the inner one the ownership rule's verdict.
    async fn try_add(
        &self,
        pool: &Pool,
        did: &str,
        url: &ServiceUrl,
    ) -> Result<Result<(), RegistryError>, sqlx::Error> {
        let st = &self.statements;
        let kind = self.kind;
        on_pool!(pool, p => {
            let mut tx = begin!(kind, p)?;
            if let Some(lock) = &st.lock {
                sqlx::query(lock).execute(&mut *tx).await?;
            }
            let rows = sqlx::query(&st.select_all_for_update).fetch_all(&mut *tx).await?;
            let existing = good_rows(rows.iter().map(decode_row).collect());
            if existing.iter().any(|(d, u)| d == did && u == url) {
                // Already there (perhaps in the reference's `/ad.json` form):
                // nothing to write.
                tx.rollback().await?;
                return Ok(Ok(()));
            }
            if let Err(refused) = check_add(&existing, did, url) {
                tx.rollback().await?;
                return Ok(Err(refused));
            }
            sqlx::query(&st.insert)
                .bind(did.to_owned())
                .bind(service_url_to_proxy_path(url))
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(Ok(()))
        })
    }

    async fn remove_now(&self, did: &str, url: &ServiceUrl) -> Result<bool, RegistryError> {
        let pool = self.pool().await?;
        let st = &self.statements;
        let kind = self.kind;
        let failed = |e: sqlx::Error| {
            RegistryError::backend(self.context(&format!("removing {url} from {did}")), e)
        };
        on_pool!(pool, p => {
            let mut tx = begin!(kind, p).map_err(failed)?;
            let rows = sqlx::query(&st.select_did)
                .bind(did.to_owned())
                .fetch_all(&mut *tx)
                .await
                .map_err(failed)?;
            // Every stored spelling of `url` goes: the canonical text, the
            // reference's `/ad.json` form, a pasted `https://` URL.
            let doomed: Vec<String> = rows
                .iter()
                .map(decode_row)
                .filter_map(Result::ok)
                .filter(|(d, stored)| {
                    d == did
                        && anpx_core::registry::proxy_path_to_service_url(stored).as_ref() == Ok(url)
                })
                .map(|(_, stored)| stored)
                .collect();
            let mut removed = false;
            for stored in doomed {
                let mut q = sqlx::query(&st.delete).bind(did.to_owned()).bind(stored.clone());
                if kind == BackendKind::MySql {
                    q = q.bind(did.to_owned()).bind(stored);
                }
                removed |= q.execute(&mut *tx).await.map_err(failed)?.rows_affected() > 0;
            }
            tx.commit().await.map_err(failed)?;
            Ok(removed)
        })
    }
}

impl std::fmt::Debug for SqlRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlRegistry")
            .field("kind", &self.kind)
            .field("url", &self.shown_url)
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

impl Registry for SqlRegistry {
    fn grants_for<'a>(&'a self, did: &'a str) -> RegistryFuture<'a, Vec<ServiceUrl>> {
        Box::pin(self.grants_for_now(did))
    }

    fn add<'a>(&'a self, did: &'a str, url: &'a ServiceUrl) -> RegistryFuture<'a, ()> {
        Box::pin(self.add_now(did, url))
    }

    fn remove<'a>(&'a self, did: &'a str, url: &'a ServiceUrl) -> RegistryFuture<'a, bool> {
        Box::pin(self.remove_now(did, url))
    }

    fn list(&self) -> RegistryFuture<'_, Vec<(String, ServiceUrl)>> {
        Box::pin(self.list_now())
    }
}

/// Tries of one [`SqlRegistry::add`] when the database rolls it back for
/// a deadlock or a serialization conflict.
const ADD_ATTEMPTS: u32 = 3;

/// Deadlocks and serialization failures (SQLSTATE class 40), which a retry
/// resolves.
fn is_transient(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().is_some_and(|c| c.starts_with("40")))
}

/// One stored row as `(did, proxy_path)` text, or why it is not text.
fn decode_row<R>(row: &R) -> Result<(String, String), RegistryError>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
{
    let did = text(row, "did");
    let path = text(row, "proxy_path");
    match (did, path) {
        (Ok(Some(did)), Ok(Some(path))) => Ok((did, path)),
        (did, path) => {
            let show = |v: &Result<Option<String>, String>| match v {
                Ok(Some(s)) => s.clone(),
                Ok(None) => "NULL".to_owned(),
                Err(_) => "?".to_owned(),
            };
            let reason = match (&did, &path) {
                (Err(e), _) => format!("did cannot be read as text: {e}"),
                (_, Err(e)) => format!("proxy_path cannot be read as text: {e}"),
                _ => "a column is NULL".to_owned(),
            };
            Err(RegistryError::BadRow {
                did: show(&did),
                proxy_path: show(&path),
                reason,
            })
        }
    }
}

/// A text column, also where the driver reports it as bytes: MySQL
/// columns with a `_bin` collation (which this module creates) or of a
/// binary type, as another tool may have made them.
fn text<R>(row: &R, column: &'static str) -> Result<Option<String>, String>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
{
    match row.try_get::<Option<String>, _>(column) {
        Ok(v) => Ok(v),
        Err(as_text) => match row.try_get::<Option<Vec<u8>>, _>(column) {
            Ok(None) => Ok(None),
            Ok(Some(bytes)) => String::from_utf8(bytes)
                .map(Some)
                .map_err(|e| format!("not UTF-8: {e}")),
            Err(_) => Err(as_text.to_string()),
        },
    }
}

/// The rows that read as service URLs; the others are logged and skipped.
fn good_rows(raw: Vec<Result<(String, String), RegistryError>>) -> Vec<(String, ServiceUrl)> {
    let mut text = Vec::with_capacity(raw.len());
    for row in raw {
        match row {
            Ok(row) => text.push(row),
            Err(e) => tracing::warn!(error = %e, "skipping a registry row"),
        }
    }
    let (good, bad) = parse_rows(text);
    for e in bad {
        tracing::warn!(error = %e, "skipping a registry row");
    }
    good
}

/// The SQL for one backend and table. Built once: only the placeholders and
/// the locking differ between databases.
struct Statements {
    probe: String,
    create: String,
    select_all: String,
    select_all_for_update: String,
    select_did: String,
    insert: String,
    delete: String,
    /// Taken before reading in [`SqlRegistry::add`], where the database
    /// needs a statement of its own for it.
    lock: Option<String>,
}

impl Statements {
    fn new(kind: BackendKind, t: &str) -> Self {
        let (p1, p2) = match kind {
            BackendKind::Postgres => ("$1", "$2"),
            BackendKind::Sqlite | BackendKind::MySql => ("?", "?"),
        };
        let select_all =
            format!("SELECT did, proxy_path FROM {t} ORDER BY did, created_at, proxy_path");
        Statements {
            probe: format!("SELECT did, proxy_path, created_at, updated_at FROM {t} WHERE 1 = 0"),
            create: create_table(kind, t),
            select_all_for_update: match kind {
                BackendKind::MySql => format!("{select_all} FOR UPDATE"),
                _ => select_all.clone(),
            },
            select_all,
            select_did: format!(
                "SELECT did, proxy_path FROM {t} WHERE did = {p1} ORDER BY created_at, proxy_path"
            ),
            insert: format!(
                "INSERT INTO {t} (did, proxy_path, created_at, updated_at) \
                 VALUES ({p1}, {p2}, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            ),
            delete: match kind {
                // The plain comparison can use the index; the binary one
                // keeps a case-insensitive collation from matching other
                // DIDs' rows.
                BackendKind::MySql => format!(
                    "DELETE FROM {t} WHERE did = ? AND proxy_path = ? \
                     AND CAST(did AS BINARY) = CAST(? AS BINARY) \
                     AND CAST(proxy_path AS BINARY) = CAST(? AS BINARY)"
                ),
                _ => format!("DELETE FROM {t} WHERE did = {p1} AND proxy_path = {p2}"),
            },
            lock: match kind {
                // Readers go on; a second writer waits for the first.
                BackendKind::Postgres => {
                    Some(format!("LOCK TABLE {t} IN SHARE ROW EXCLUSIVE MODE"))
                }
                _ => None,
            },
        }
    }
}

/// The reference's table shape in each dialect. The MySQL columns compare
/// byte for byte (`utf8mb4_bin`), as DIDs and URL paths do.
fn create_table(kind: BackendKind, t: &str) -> String {
    // Index names are per table in MySQL; PostgreSQL's are per schema, so
    // there the database names them after the table.
    match kind {
        BackendKind::MySql => format!(
            "CREATE TABLE IF NOT EXISTS {t} (\n\
             \x20 id INT AUTO_INCREMENT PRIMARY KEY,\n\
             \x20 did VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,\n\
             \x20 proxy_path VARCHAR(512) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,\n\
             \x20 created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,\n\
             \x20 updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,\n\
             \x20 INDEX idx_did (did),\n\
             \x20 UNIQUE KEY unique_did_path (did, proxy_path)\n\
             ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
        ),
        BackendKind::Postgres => format!(
            "CREATE TABLE IF NOT EXISTS {t} (\n\
             \x20 id BIGSERIAL PRIMARY KEY,\n\
             \x20 did VARCHAR(255) NOT NULL,\n\
             \x20 proxy_path VARCHAR(512) NOT NULL,\n\
             \x20 created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,\n\
             \x20 updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,\n\
             \x20 UNIQUE (did, proxy_path)\n\
             )"
        ),
        BackendKind::Sqlite => format!(
            "CREATE TABLE IF NOT EXISTS {t} (\n\
             \x20 id INTEGER PRIMARY KEY AUTOINCREMENT,\n\
             \x20 did VARCHAR(255) NOT NULL,\n\
             \x20 proxy_path VARCHAR(512) NOT NULL,\n\
             \x20 created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,\n\
             \x20 updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,\n\
             \x20 UNIQUE (did, proxy_path)\n\
             )"
        ),
    }
}

/// Table names go into SQL text, so only plain identifiers are accepted.
fn check_table_name(table: &str) -> Result<(), RegistryError> {
    let ident = |s: &str| {
        let mut bytes = s.bytes();
        bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && s.len() <= 64
    };
    let parts: Vec<&str> = table.split('.').collect();
    if parts.len() <= 2 && parts.iter().all(|p| ident(p)) {
        Ok(())
    } else {
        Err(RegistryError::Invalid {
            field: "table name",
            value: table.to_owned(),
            reason: "expected letters, digits and _ (optionally schema.table)".to_owned(),
        })
    }
}

/// `url` with any password replaced, for messages and logs.
fn without_password(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let authority_end = url[start..]
        .find(['/', '?'])
        .map_or(url.len(), |i| start + i);
    let authority = &url[start..authority_end];
    match (authority.rfind('@'), authority.find(':')) {
        (Some(at), Some(colon)) if colon < at => format!(
            "{}{}:***{}",
            &url[..start],
            &authority[..colon],
            &url[start + at..]
        ),
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(
            without_password("mysql://anp:s3cret@db:3306/anp"),
            "mysql://anp:***@db:3306/anp"
        );
        assert_eq!(
            without_password("postgres://u@h/db?x=a:b@c"),
            "postgres://u@h/db?x=a:b@c"
        );
        assert_eq!(
            without_password("sqlite://r.db?mode=rwc"),
            "sqlite://r.db?mode=rwc"
        );
        assert_eq!(without_password("sqlite:r.db"), "sqlite:r.db");
    }

    #[test]
    fn table_names_are_plain_identifiers() {
        for ok in ["did_proxy_path", "anpx.did_proxy_path", "_t1"] {
            assert!(check_table_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1t", "t;drop", "a.b.c", "t-1", "\"t\"", "a."] {
            assert!(check_table_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn statements_use_each_dialects_placeholders_and_locks() {
        let pg = Statements::new(BackendKind::Postgres, "t");
        assert!(pg.select_did.contains("did = $1"));
        assert!(pg.lock.is_some());
        let my = Statements::new(BackendKind::MySql, "t");
        assert!(my.select_all_for_update.ends_with("FOR UPDATE"));
        assert!(my.delete.contains("CAST(did AS BINARY)"));
        let lite = Statements::new(BackendKind::Sqlite, "t");
        assert_eq!(lite.select_all, lite.select_all_for_update);
        assert!(lite.lock.is_none());
    }

    #[test]
    fn unsupported_urls_and_tables_are_refused_before_connecting() {
        assert!(matches!(
            SqlRegistry::new("https://r.example/grants", DEFAULT_TABLE),
            Err(RegistryError::UnsupportedUrl(_))
        ));
        assert!(matches!(
            SqlRegistry::new("sqlite::memory:", "x y"),
            Err(RegistryError::Invalid { .. })
        ));
    }
}
