#include "kv/sqlite_util.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <system_error>
#include <vector>

#include "absl/strings/str_format.h"
#include "base/file_util.h"

namespace raftkv::kv::sqlite_internal {

// An SQLite failure on `path`. While reading a snapshot every failure means the file is bad
// (kDataLoss); while writing, a full disk or I/O error is kUnavailable, the rest kInternal.
absl::Status SqlError(sqlite3* db, int rc, const std::string& path, std::string_view what,
                      bool reading) {
  std::string msg = absl::StrFormat("snapshot %s: %s: %s (sqlite %d)", path, what,
                                    db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc), rc);
  if (reading) return absl::DataLossError(msg);
  const int primary = rc & 0xff;
  if (primary == SQLITE_FULL || primary == SQLITE_IOERR) return absl::UnavailableError(msg);
  return absl::InternalError(msg);
}

absl::Status Exec(sqlite3* db, const char* sql, const std::string& path, bool reading) {
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql, nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    std::string what = absl::StrFormat("%s: %s", sql, err != nullptr ? err : "");
    sqlite3_free(err);
    return SqlError(db, rc, path, what, reading);
  }
  return absl::OkStatus();
}

absl::StatusOr<StmtPtr> Prepare(sqlite3* db, const char* sql, const std::string& path,
                                bool reading) {
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr);
  if (rc != SQLITE_OK) return SqlError(db, rc, path, sql, reading);
  return StmtPtr(stmt);
}

absl::Status FsyncFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return base::IoError("open", path, errno);
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return base::IoError("fsync", path, err);
  return absl::OkStatus();
}

std::string_view ColumnBytes(sqlite3_stmt* stmt, int col) {
  const void* p = sqlite3_column_blob(stmt, col);
  int n = sqlite3_column_bytes(stmt, col);
  if (p == nullptr || n <= 0) return {};
  return std::string_view(static_cast<const char*>(p), static_cast<size_t>(n));
}

bool IsBytes(sqlite3_stmt* stmt, int col) {
  int t = sqlite3_column_type(stmt, col);
  return t == SQLITE_BLOB || t == SQLITE_TEXT;
}

bool IsInt(sqlite3_stmt* stmt, int col) { return sqlite3_column_type(stmt, col) == SQLITE_INTEGER; }


namespace {

uint32_t BigEndian(const unsigned char* p, int n) {
  uint32_t v = 0;
  for (int i = 0; i < n; ++i) v = (v << 8) | p[i];
  return v;
}

}  // namespace

// Checks the 100-byte SQLite header before SQLite sees the file: SQLite treats a short or
// empty file as an empty database, and reads missing pages of a truncated one as zeros.
// Per the SQLite file format: magic "SQLite format 3\0" at 0, page size (big-endian u16,
// 1 = 65536) at 16, change counter at 24, page count at 28, valid only if the
// "version-valid-for" number at 92 equals the change counter.
absl::Status CheckHeader(const std::string& path, bool check_size) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return absl::NotFoundError(absl::StrFormat("snapshot %s: no such file", path));
  }
  const uintmax_t size = std::filesystem::file_size(path, ec);
  if (ec) return base::IoError("stat", path, ec.value());
  unsigned char h[100];
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return base::IoError("open", path, errno);
  ssize_t n = ::pread(fd, h, sizeof(h), 0);
  int err = errno;
  ::close(fd);
  if (n < 0) return base::IoError("read", path, err);
  static constexpr char kMagic[] = "SQLite format 3";  // 16 bytes with the NUL
  if (static_cast<size_t>(n) < sizeof(h) || std::memcmp(h, kMagic, sizeof(kMagic)) != 0) {
    return absl::DataLossError(absl::StrFormat(
        "snapshot %s: not an SQLite 3 file, or truncated (%d bytes)", path, size));
  }
  const uint32_t raw_page = BigEndian(h + 16, 2);
  const uint64_t page_bytes = raw_page == 1 ? 65536 : raw_page;
  const uint32_t pages = BigEndian(h + 28, 4);
  const bool pages_valid = pages != 0 && BigEndian(h + 24, 4) == BigEndian(h + 92, 4);
  if (page_bytes < 512 || (page_bytes & (page_bytes - 1)) != 0) {
    return absl::DataLossError(
        absl::StrFormat("snapshot %s: corrupt SQLite header (page size %d)", path, page_bytes));
  }
  // A WAL-mode file (read/write versions 2 at offsets 18/19, as a live backup.db) may hold
  // newer pages in its -wal companion: its main file need not match the header yet.
  const bool wal_mode = h[18] == 2 || h[19] == 2;
  if (check_size && !wal_mode && pages_valid && size != pages * page_bytes) {
    return absl::DataLossError(absl::StrFormat(
        "snapshot %s: file is %d bytes but its header says %d pages of %d bytes (%d bytes): "
        "truncated or corrupt",
        path, size, pages, page_bytes, pages * page_bytes));
  }
  return absl::OkStatus();
}

absl::StatusOr<DbPtr> OpenChecked(const std::string& path, int flags, bool check_size) {
  if (absl::Status h = CheckHeader(path, check_size); !h.ok()) return h;
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
  DbPtr db(raw);
  if (rc != SQLITE_OK) return SqlError(raw, rc, path, "open", true);
  absl::StatusOr<StmtPtr> st = Prepare(db.get(), "PRAGMA application_id", path, true);
  if (!st.ok()) return st.status();
  rc = sqlite3_step(st->get());
  if (rc != SQLITE_ROW) return SqlError(db.get(), rc, path, "read application_id", true);
  const int app_id = sqlite3_column_int(st->get(), 0);
  if (app_id != kSnapshotApplicationId) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "snapshot %s: not a raftkv snapshot (SQLite application_id 0x%x, expected 0x%x)", path,
        static_cast<uint32_t>(app_id), static_cast<uint32_t>(kSnapshotApplicationId)));
  }
  return db;
}

absl::StatusOr<SnapshotMeta> ReadMeta(sqlite3* db, const std::string& path) {
  absl::StatusOr<StmtPtr> st = Prepare(db, "SELECT name, value FROM meta", path, true);
  if (!st.ok()) return st.status();
  std::map<std::string, int64_t> ints;
  std::optional<std::string> members;
  int rc;
  while ((rc = sqlite3_step(st->get())) == SQLITE_ROW) {
    std::string name(ColumnBytes(st->get(), 0));
    if (name == "members") {
      if (!IsBytes(st->get(), 1)) {
        return absl::DataLossError(absl::StrFormat("snapshot %s: meta members is not text", path));
      }
      members = std::string(ColumnBytes(st->get(), 1));
    } else if (IsInt(st->get(), 1)) {
      ints[name] = sqlite3_column_int64(st->get(), 1);
    }
  }
  if (rc != SQLITE_DONE) return SqlError(db, rc, path, "read meta", true);

  auto need = [&](const char* name) -> absl::StatusOr<int64_t> {
    auto it = ints.find(name);
    if (it == ints.end()) {
      return absl::DataLossError(
          absl::StrFormat("snapshot %s: meta %s is missing or not an integer", path, name));
    }
    return it->second;
  };
  SnapshotMeta m;
  absl::StatusOr<int64_t> format = need("format_version");
  if (!format.ok()) return format.status();
  m.format_version = *format;
  if (m.format_version > kSnapshotFormatVersion) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "snapshot %s: format_version %d is newer than this build reads (%d)", path,
        m.format_version, kSnapshotFormatVersion));
  }
  if (m.format_version < 1) {
    return absl::DataLossError(
        absl::StrFormat("snapshot %s: bad format_version %d", path, m.format_version));
  }
  struct Field {
    const char* name;
    std::function<void(int64_t)> set;
  };
  for (const Field& f : std::vector<Field>{
           {"applied_index", [&](int64_t v) { m.applied_index = static_cast<uint64_t>(v); }},
           {"applied_term", [&](int64_t v) { m.applied_term = static_cast<uint64_t>(v); }},
           {"revision", [&](int64_t v) { m.revision = v; }},
           {"created_at", [&](int64_t v) { m.created_at_unix_ms = v; }},
           {"kv_count", [&](int64_t v) { m.kv_count = v; }},
           {"kv_checksum", [&](int64_t v) { m.kv_checksum = static_cast<uint64_t>(v); }},
           {"sessions_count", [&](int64_t v) { m.sessions_count = v; }},
           {"sessions_checksum",
            [&](int64_t v) { m.sessions_checksum = static_cast<uint64_t>(v); }}}) {
    absl::StatusOr<int64_t> v = need(f.name);
    if (!v.ok()) return v.status();
    f.set(*v);
  }
  if (!members.has_value()) {
    return absl::DataLossError(absl::StrFormat("snapshot %s: meta members is missing", path));
  }
  m.members = std::move(*members);
  if (m.revision < 1 || m.kv_count < 0 || m.sessions_count < 0) {
    return absl::DataLossError(absl::StrFormat(
        "snapshot %s: impossible meta (revision %d, kv_count %d, sessions_count %d)", path,
        m.revision, m.kv_count, m.sessions_count));
  }
  return m;
}

absl::Status QuickCheck(sqlite3* db, const std::string& path) {
  absl::StatusOr<StmtPtr> st = Prepare(db, "PRAGMA quick_check", path, true);
  if (!st.ok()) return st.status();
  int rc = sqlite3_step(st->get());
  if (rc != SQLITE_ROW) return SqlError(db, rc, path, "quick_check", true);
  std::string first(ColumnBytes(st->get(), 0));
  if (first != "ok") {
    return absl::DataLossError(
        absl::StrFormat("snapshot %s: SQLite quick_check failed: %s", path, first));
  }
  return absl::OkStatus();
}


absl::Status WriteMeta(sqlite3* db, const SnapshotMeta& m, const std::string& path) {
  absl::StatusOr<StmtPtr> st =
      Prepare(db, "INSERT OR REPLACE INTO meta (name, value) VALUES (?1, ?2)", path, false);
  if (!st.ok()) return st.status();
  auto put_int = [&](const char* name, int64_t v) -> absl::Status {
    sqlite3_bind_text(st->get(), 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st->get(), 2, v);
    int rc = sqlite3_step(st->get());
    sqlite3_reset(st->get());
    if (rc != SQLITE_DONE) return SqlError(db, rc, path, "insert meta", false);
    return absl::OkStatus();
  };
  for (const auto& [name, v] : std::vector<std::pair<const char*, int64_t>>{
           {"format_version", m.format_version},
           {"applied_index", static_cast<int64_t>(m.applied_index)},
           {"applied_term", static_cast<int64_t>(m.applied_term)},
           {"revision", m.revision},
           {"created_at", m.created_at_unix_ms},
           {"kv_count", m.kv_count},
           {"kv_checksum", static_cast<int64_t>(m.kv_checksum)},
           {"sessions_count", m.sessions_count},
           {"sessions_checksum", static_cast<int64_t>(m.sessions_checksum)}}) {
    if (absl::Status s = put_int(name, v); !s.ok()) return s;
  }
  sqlite3_bind_text(st->get(), 1, "members", -1, SQLITE_STATIC);
  sqlite3_bind_text(st->get(), 2, m.members.data(), static_cast<int>(m.members.size()),
                    SQLITE_STATIC);
  int rc = sqlite3_step(st->get());
  if (rc != SQLITE_DONE) return SqlError(db, rc, path, "insert meta", false);
  return absl::OkStatus();
}

}  // namespace raftkv::kv::sqlite_internal
