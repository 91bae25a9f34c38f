//! Reading rows that a hand edit may have made unreadable.

use rusqlite::{Params, Row, Statement};

use crate::StoreError;

/// Runs `stmt` and keeps every row `read` makes sense of.
///
/// `read` returns `None` for a row it cannot use (a value of the wrong type, an id that does
/// not parse, an unknown state): that row is skipped, so one bad row never hides the others.
/// An error stepping through the rows is SQLite's own (a damaged page, an I/O error) and is
/// returned.
pub(crate) fn readable_rows<T>(
    stmt: &mut Statement<'_>,
    params: impl Params,
    read: impl Fn(&Row<'_>) -> Option<T>,
) -> Result<Vec<T>, StoreError> {
    let mut rows = stmt.query(params)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        if let Some(item) = read(row) {
            out.push(item);
        }
    }
    Ok(out)
}
