// Internal helpers shared by the SQLite snapshot code (sqlite_snapshot.cc) and the backup
// (sqlite_backup.cc): RAII handles, error mapping, the schema, and the meta table. Not an API
// for other modules. The file format itself is documented in sqlite_snapshot.h.
#pragma once

#include <sqlite3.h>

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kv/sqlite_snapshot.h"

namespace raftkv::kv::sqlite_internal {

struct DbCloser {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
using DbPtr = std::unique_ptr<sqlite3, DbCloser>;

struct StmtFinalizer {
  void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
};
using StmtPtr = std::unique_ptr<sqlite3_stmt, StmtFinalizer>;

inline constexpr const char* kSchema =
    "CREATE TABLE kv (key BLOB PRIMARY KEY, value BLOB NOT NULL,"
    " create_revision INTEGER, mod_revision INTEGER, version INTEGER);"
    "CREATE TABLE meta (name TEXT PRIMARY KEY, value);"
    "CREATE TABLE sessions (client_id INTEGER PRIMARY KEY, last_sequence INTEGER NOT NULL,"
    " last_index INTEGER NOT NULL, record BLOB NOT NULL DEFAULT x'');"
    "CREATE INDEX sessions_by_last_index ON sessions (last_index, client_id);";

// Brings a format 1 file (sessions without `record`, no expiry index) to the current format,
// in place. Format 1 files never held session rows (nothing set a session then).
inline constexpr const char* kMigrateFormat1 =
    "ALTER TABLE sessions ADD COLUMN record BLOB NOT NULL DEFAULT x'';"
    "CREATE INDEX IF NOT EXISTS sessions_by_last_index ON sessions (last_index, client_id);"
    "UPDATE meta SET value = 2 WHERE name = 'format_version';";

// An SQLite failure on `path`. reading=true: the file is bad (kDataLoss). reading=false: a
// full disk or I/O error is kUnavailable, anything else kInternal.
absl::Status SqlError(sqlite3* db, int rc, const std::string& path, std::string_view what,
                      bool reading);
absl::Status Exec(sqlite3* db, const char* sql, const std::string& path, bool reading);
absl::StatusOr<StmtPtr> Prepare(sqlite3* db, const char* sql, const std::string& path,
                                bool reading);
absl::Status FsyncFile(const std::string& path);

// Column accessors: the bytes of a BLOB/TEXT column (empty for a zero-length blob).
std::string_view ColumnBytes(sqlite3_stmt* stmt, int col);
bool IsBytes(sqlite3_stmt* stmt, int col);
bool IsInt(sqlite3_stmt* stmt, int col);

// Checks the SQLite header (magic, page size, and, if check_size, that the file holds every
// page the header counts). kNotFound if there is no file, kDataLoss otherwise.
absl::Status CheckHeader(const std::string& path, bool check_size);
// CheckHeader, sqlite3_open_v2(flags), and the raftkv application_id (kInvalidArgument if not).
absl::StatusOr<DbPtr> OpenChecked(const std::string& path, int flags, bool check_size);
// Reads and validates the meta table (errors as sqlite_snapshot.h).
absl::StatusOr<SnapshotMeta> ReadMeta(sqlite3* db, const std::string& path);
// Writes (inserts or replaces) every meta row.
absl::Status WriteMeta(sqlite3* db, const SnapshotMeta& meta, const std::string& path);
// PRAGMA quick_check; kDataLoss with SQLite's first complaint.
absl::Status QuickCheck(sqlite3* db, const std::string& path);

}  // namespace raftkv::kv::sqlite_internal
