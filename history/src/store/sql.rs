//! Small helpers over `sqlx::Any`: bind values of mixed types and multi-row
//! inserts. The SQL uses `$N` placeholders, which both SQLite and PostgreSQL take.

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, AssertSqlSafe};

/// A value to bind.
#[derive(Debug, Clone)]
pub enum Val {
    /// An integer.
    Int(i64),
    /// A nullable integer.
    OptInt(Option<i64>),
    /// Text.
    Text(String),
    /// Nullable text.
    OptText(Option<String>),
    /// Bytes.
    Bytes(Vec<u8>),
}

/// Binds every value, in order.
pub fn bind_all<'q>(
    mut q: Query<'q, Any, AnyArguments>,
    vals: impl IntoIterator<Item = Val>,
) -> Query<'q, Any, AnyArguments> {
    for v in vals {
        q = match v {
            Val::Int(i) => q.bind(i),
            Val::OptInt(i) => q.bind(i),
            Val::Text(s) => q.bind(s),
            Val::OptText(s) => q.bind(s),
            Val::Bytes(b) => q.bind(b),
        };
    }
    q
}

/// A statement built at run time from our own constant pieces.
pub fn query(sql: String) -> Query<'static, Any, AnyArguments> {
    sqlx::query(AssertSqlSafe(sql))
}

/// Most bound values per statement. Far below the backends' limits (SQLite
/// 32766, PostgreSQL 65535): sqlx binds each value by looking up the names of
/// all parameters before it, so a statement's cost grows with the square of
/// its binds (30,000 binds made an import 30 times slower).
const MAX_BINDS: usize = 999;

/// `INSERT INTO <into> VALUES (...), (...)` for `rows`, in as few statements as
/// the bind limits allow. `into` is e.g. `"moves (history, process, t)"`.
pub async fn insert_rows(
    conn: &mut AnyConnection,
    into: &str,
    rows: Vec<Vec<Val>>,
) -> Result<(), sqlx::Error> {
    insert_rows_then(conn, into, rows, "").await
}

/// [`insert_rows`] with `then` after the values (an `ON CONFLICT` clause).
pub async fn insert_rows_then(
    conn: &mut AnyConnection,
    into: &str,
    rows: Vec<Vec<Val>>,
    then: &str,
) -> Result<(), sqlx::Error> {
    let Some(width) = rows.first().map(Vec::len) else {
        return Ok(());
    };
    let per_statement = (MAX_BINDS / width.max(1)).max(1);
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<Vec<Val>> = rows.by_ref().take(per_statement).collect();
        let mut sql = format!("INSERT INTO {into} VALUES ");
        let mut n = 0;
        for (i, row) in chunk.iter().enumerate() {
            sql.push_str(if i == 0 { "(" } else { ", (" });
            for j in 0..row.len() {
                n += 1;
                sql.push_str(&format!("{}${n}", if j == 0 { "" } else { ", " }));
            }
            sql.push(')');
        }
        sql.push_str(then);
        bind_all(query(sql), chunk.into_iter().flatten())
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Reads column `i` of `row` as an integer.
pub fn int(row: &AnyRow, i: usize) -> Result<i64, sqlx::Error> {
    sqlx::Row::try_get(row, i)
}
