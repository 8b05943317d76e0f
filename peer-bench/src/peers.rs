//! The peer stores, each set up for the same workloads: one 64-byte value to read and to replace,
//! and one counter to increment.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use heed::types::Bytes;
use heed::{CommitOrAbort, Database, Env, EnvFlags, EnvOpenOptions};
use rusqlite::{params, Connection};

use crate::Obj64;

// ---- LMDB through heed ----

/// An LMDB environment with one database holding the value (key `v`) and the counter (key `n`).
///
/// heed ties a database handle to a borrow of its environment, so the environment is leaked to
/// live as long as the process: a bench process opens only a few.
pub struct Lmdb {
    pub env: &'static Env,
    pub db: Database<'static, Bytes, Bytes>,
}

impl Lmdb {
    /// Opens (creating if needed) the environment in `dir`; `no_sync` turns off the sync at commit.
    pub fn open(dir: &Path, no_sync: bool) -> Lmdb {
        std::fs::create_dir_all(dir).unwrap();
        let mut options = EnvOpenOptions::new();
        options.map_size(64 << 20).max_dbs(1);
        if no_sync {
            // SAFETY: `NO_SYNC` only weakens durability after an OS crash, which this bench
            // does not rely on; every process of a run opens the environment with the same flags.
            unsafe { options.flags(EnvFlags::NO_SYNC) };
        }
        // SAFETY: the environment's files are this bench's own, opened once per process and not
        // truncated or changed by anything else while it is open.
        let env: &'static Env = Box::leak(Box::new(unsafe { options.open(dir) }.unwrap()));
        let wtxn = env.write_txn().unwrap();
        let db: Database<'static, Bytes, Bytes> = env
            .create_databases_and_commit(wtxn, |opener, wtxn| {
                opener.create_database(wtxn, None).map(CommitOrAbort::<_, ()>::Commit)
            })
            .unwrap()
            .unwrap_commit();
        let lmdb = Lmdb { env, db };
        let mut wtxn = lmdb.env.write_txn().unwrap();
        if lmdb.db.get(&wtxn, b"v").unwrap().is_none() {
            lmdb.db.put(&mut wtxn, b"v", &[0u8; 64]).unwrap();
            lmdb.db.put(&mut wtxn, b"n", &0u64.to_ne_bytes()).unwrap();
        }
        wtxn.commit().unwrap();
        lmdb
    }

    /// A read transaction, the value copied out, the transaction ended.
    pub fn get(&self) -> Obj64 {
        let rtxn = self.env.read_txn().unwrap();
        let bytes = self.db.get(&rtxn, b"v").unwrap().unwrap();
        Obj64::from_bytes(bytes)
    }

    /// A write transaction replacing the value, committed.
    pub fn put(&self, value: &Obj64) {
        let mut wtxn = self.env.write_txn().unwrap();
        self.db.put(&mut wtxn, b"v", &value.as_bytes()).unwrap();
        wtxn.commit().unwrap();
    }

    /// A write transaction incrementing the counter, committed.
    pub fn increment(&self) {
        let mut wtxn = self.env.write_txn().unwrap();
        let n = self.count_in(&wtxn);
        self.db.put(&mut wtxn, b"n", &(n + 1).to_ne_bytes()).unwrap();
        wtxn.commit().unwrap();
    }

    fn count_in(&self, txn: &heed::RoTxn) -> u64 {
        u64::from_ne_bytes(self.db.get(txn, b"n").unwrap().unwrap().try_into().unwrap())
    }

    /// The counter.
    pub fn count(&self) -> u64 {
        let rtxn = self.env.read_txn().unwrap();
        self.count_in(&rtxn)
    }
}

// ---- SQLite through rusqlite ----

/// A SQLite connection in WAL mode with a table holding the value and one holding the counter.
pub struct Sqlite {
    conn: Connection,
}

impl Sqlite {
    /// Opens (creating if needed) the database at `path` with `synchronous` set to `sync`
    /// (`OFF` or `NORMAL`).
    pub fn open(path: &Path, sync: &str) -> Sqlite {
        let conn = Connection::open(path).unwrap();
        conn.busy_timeout(Duration::from_secs(120)).unwrap();
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)).unwrap();
        assert_eq!(mode.to_lowercase(), "wal");
        conn.pragma_update(None, "synchronous", sync).unwrap();
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS kv (k INTEGER PRIMARY KEY, v BLOB NOT NULL);
             CREATE TABLE IF NOT EXISTS counter (k INTEGER PRIMARY KEY, n INTEGER NOT NULL);
             INSERT OR IGNORE INTO kv VALUES (1, zeroblob(64));
             INSERT OR IGNORE INTO counter VALUES (1, 0);",
        )
        .unwrap();
        Sqlite { conn }
    }

    /// `SELECT` of the value (a prepared, cached statement), copied out.
    pub fn get(&self) -> Obj64 {
        let mut stmt = self.conn.prepare_cached("SELECT v FROM kv WHERE k = 1").unwrap();
        stmt.query_row([], |r| Ok(Obj64::from_bytes(r.get_ref(0)?.as_blob()?))).unwrap()
    }

    /// `UPDATE` of the value, in its own (autocommit) transaction.
    pub fn put(&self, value: &Obj64) {
        let mut stmt = self.conn.prepare_cached("UPDATE kv SET v = ?1 WHERE k = 1").unwrap();
        assert_eq!(stmt.execute(params![value.as_bytes()]).unwrap(), 1);
    }

    /// `UPDATE counter SET n = n + 1`, in its own transaction.
    pub fn increment(&self) {
        let mut stmt = self.conn.prepare_cached("UPDATE counter SET n = n + 1 WHERE k = 1").unwrap();
        assert_eq!(stmt.execute([]).unwrap(), 1);
    }

    /// The counter.
    pub fn count(&self) -> u64 {
        self.conn.query_row("SELECT n FROM counter WHERE k = 1", [], |r| r.get::<_, i64>(0)).unwrap() as u64
    }
}

// ---- mmap-sync ----

/// The value as mmap-sync stores it (serialised with rkyv).
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[archive_attr(derive(bytecheck::CheckBytes))]
pub struct SyncValue {
    pub a: [u64; 8],
}

/// A writer and a reader `Synchronizer` on the files `prefix_state`, `prefix_data_0/1`.
pub struct MmapSync {
    writer: mmap_sync::synchronizer::Synchronizer,
    reader: mmap_sync::synchronizer::Synchronizer,
}

impl MmapSync {
    /// Opens both ends on `prefix` and writes a first value (a read needs one).
    pub fn open(prefix: &Path) -> MmapSync {
        let mut writer = mmap_sync::synchronizer::Synchronizer::new(prefix.as_os_str());
        let reader = mmap_sync::synchronizer::Synchronizer::new(prefix.as_os_str());
        writer.write(&SyncValue { a: [0; 8] }, Duration::from_secs(1)).unwrap();
        MmapSync { writer, reader }
    }

    /// A read: the current value, copied out of the mapping.
    pub fn read(&mut self) -> Obj64 {
        // SAFETY: the files hold values this bench wrote as `SyncValue` (mmap-sync's contract for
        // reading without `check_bytes`).
        let value = unsafe { self.reader.read::<SyncValue>(false) }.unwrap();
        Obj64 { a: value.a }
    }

    /// A write: the value serialised into the inactive data file, then published.
    pub fn write(&mut self, value: &Obj64) {
        self.writer.write(&SyncValue { a: value.a }, Duration::from_secs(1)).unwrap();
    }
}

// ---- Redis over loopback ----

/// A `redis-server` this bench started on 127.0.0.1, stopped (killed) when dropped.
pub struct RedisServer {
    child: Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts `redis-server` on a free loopback port, with no persistence, and waits (at most
    /// 10 s) until it answers `PING`. `None`, with the reason, when it is not installed or does
    /// not come up.
    pub fn start() -> Result<RedisServer, String> {
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("`redis-server` is not on PATH ({e}); install it to measure Redis"))?;
        let server = RedisServer { child, url: format!("redis://127.0.0.1:{port}/"), _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut con) = server.connect() {
                if redis::cmd("PING").query::<String>(&mut con).is_ok() {
                    return Ok(server);
                }
            }
            if Instant::now() > deadline {
                return Err("redis-server did not answer PING within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A new connection.
    pub fn connect(&self) -> redis::RedisResult<redis::Connection> {
        connect(&self.url)
    }
}

/// A connection to the server at `url`.
pub fn connect(url: &str) -> redis::RedisResult<redis::Connection> {
    redis::Client::open(url)?.get_connection()
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET` of the value, copied out.
pub fn redis_get(con: &mut redis::Connection) -> Obj64 {
    let bytes: Vec<u8> = redis::cmd("GET").arg("v").query(con).unwrap();
    Obj64::from_bytes(&bytes)
}

/// `SET` of the value.
pub fn redis_set(con: &mut redis::Connection, value: &Obj64) {
    redis::cmd("SET").arg("v").arg(&value.as_bytes()[..]).query::<()>(con).unwrap();
}

/// `INCR` of the counter.
pub fn redis_incr(con: &mut redis::Connection) {
    redis::cmd("INCR").arg("n").query::<u64>(con).unwrap();
}

/// The counter.
pub fn redis_count(con: &mut redis::Connection) -> u64 {
    redis::cmd("GET").arg("n").query::<Option<u64>>(con).unwrap().unwrap_or(0)
}

/// Where each peer keeps its files under a run's directory.
pub fn lmdb_dir(dir: &Path, no_sync: bool) -> PathBuf {
    dir.join(if no_sync { "lmdb-nosync" } else { "lmdb-sync" })
}
