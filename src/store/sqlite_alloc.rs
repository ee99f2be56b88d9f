//! SQLite's memory from mimalloc, the allocator the rest of the process uses (see `lib.rs`).
//!
//! SQLite allocates through the C library's `malloc` unless told otherwise, and glibc's
//! allocator cost the mail backfill 5% of its instructions (callgrind, `_int_malloc`,
//! `_int_free` and their helpers, called by SQLite for bound values, statement journals and
//! statements). SQLite accepts other allocation functions through `sqlite3_config` before it is
//! initialised; [`use_mimalloc`] does that once, before the first connection is opened.
#![allow(unsafe_code)]

use std::os::raw::{c_int, c_void};

use rusqlite::ffi;

// In the mimalloc that libmimalloc-sys links; declared only with its `extended` feature, which
// would pull in one more crate for this one function.
unsafe extern "C" {
    fn mi_usable_size(p: *const c_void) -> usize;
}

unsafe extern "C" fn x_malloc(n: c_int) -> *mut c_void {
    // SAFETY: any size is valid for mi_malloc; SQLite never asks for a negative one.
    unsafe { libmimalloc_sys::mi_malloc(usize::try_from(n).unwrap_or(0)) }
}

unsafe extern "C" fn x_free(p: *mut c_void) {
    // SAFETY: SQLite frees only what x_malloc or x_realloc returned.
    unsafe { libmimalloc_sys::mi_free(p) }
}

unsafe extern "C" fn x_realloc(p: *mut c_void, n: c_int) -> *mut c_void {
    // SAFETY: as for x_malloc and x_free.
    unsafe { libmimalloc_sys::mi_realloc(p, usize::try_from(n).unwrap_or(0)) }
}

unsafe extern "C" fn x_size(p: *mut c_void) -> c_int {
    // SAFETY: as for x_free. The usable size is at least what was asked for, as SQLite needs.
    let size = unsafe { mi_usable_size(p) };
    c_int::try_from(size).unwrap_or(c_int::MAX)
}

unsafe extern "C" fn x_roundup(n: c_int) -> c_int {
    (n + 7) & !7
}

unsafe extern "C" fn x_init(_: *mut c_void) -> c_int {
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_shutdown(_: *mut c_void) {}

/// Makes SQLite allocate with mimalloc, if SQLite has not been initialised yet in this process
/// (it then keeps the C library's allocator, which works the same, only slower). Every SQLite
/// connection Rapport opens goes through `Store::connect`, which calls this first; code that
/// opens SQLite otherwise (a test) must call it first too: `sqlite3_config` must not run while
/// another thread initialises SQLite.
pub(super) fn use_mimalloc() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let methods = ffi::sqlite3_mem_methods {
            xMalloc: Some(x_malloc),
            xFree: Some(x_free),
            xRealloc: Some(x_realloc),
            xSize: Some(x_size),
            xRoundup: Some(x_roundup),
            xInit: Some(x_init),
            xShutdown: Some(x_shutdown),
            pAppData: std::ptr::null_mut(),
        };
        // SAFETY: SQLITE_CONFIG_MALLOC takes a pointer to a sqlite3_mem_methods, which SQLite
        // copies. It must not race with SQLite's initialisation: this runs before the first
        // connection of the process is opened, and Once holds back any other caller meanwhile.
        let rc = unsafe { ffi::sqlite3_config(ffi::SQLITE_CONFIG_MALLOC, &raw const methods) };
        if rc != ffi::SQLITE_OK {
            tracing::debug!(rc, "SQLite was initialised before its allocator could be set");
        }
    });
}

#[cfg(test)]
mod tests {
    /// SQLite works on the allocator it is given: a connection writes, grows and frees values
    /// of every size. (Which allocator that is depends on what opened SQLite first in this test
    /// process; tests/store.rs checks that `Store::connect` gets mimalloc.)
    #[test]
    fn sqlite_runs_after_the_switch() {
        super::use_mimalloc();
        let db = rusqlite::Connection::open_in_memory().unwrap();
        db.execute_batch("CREATE TABLE t (v TEXT); BEGIN;").unwrap();
        for n in [0usize, 1, 100, 10_000, 1_000_000] {
            db.execute("INSERT INTO t VALUES (?1)", ["x".repeat(n)]).unwrap();
        }
        db.execute_batch("COMMIT; UPDATE t SET v = v || v; DELETE FROM t WHERE length(v) < 10;")
            .unwrap();
        let total: i64 = db.query_row("SELECT sum(length(v)) FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(total, 2 * (100 + 10_000 + 1_000_000));
    }
}
