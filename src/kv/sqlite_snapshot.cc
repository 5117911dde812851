#include "kv/sqlite_snapshot.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/strings/str_format.h"
#include "base/file_util.h"
#include "kv/rocksdb_state_machine.h"
#include "kv/row_hash.h"

namespace raftkv::kv {
namespace {

struct DbCloser {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
using DbPtr = std::unique_ptr<sqlite3, DbCloser>;

struct StmtFinalizer {
  void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
};
using StmtPtr = std::unique_ptr<sqlite3_stmt, StmtFinalizer>;

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

// ----- Writing -----------------------------------------------------------------------------

constexpr const char* kSchema =
    "CREATE TABLE kv (key BLOB PRIMARY KEY, value BLOB NOT NULL,"
    " create_revision INTEGER, mod_revision INTEGER, version INTEGER);"
    "CREATE TABLE meta (name TEXT PRIMARY KEY, value);"
    "CREATE TABLE sessions (client_id INTEGER PRIMARY KEY, last_sequence INTEGER NOT NULL,"
    " last_index INTEGER NOT NULL);";

class SqliteSink final : public ExportSink {
 public:
  SqliteSink(sqlite3* db, const std::string& path, SnapshotMeta* meta)
      : db_(db), path_(path), meta_(meta) {}

  absl::Status Init() {
    absl::StatusOr<StmtPtr> kv = kv::Prepare(
        db_,
        "INSERT INTO kv (key, value, create_revision, mod_revision, version) "
        "VALUES (?1, ?2, ?3, ?4, ?5)",
        path_, false);
    if (!kv.ok()) return kv.status();
    kv_stmt_ = std::move(*kv);
    absl::StatusOr<StmtPtr> s = kv::Prepare(
        db_, "INSERT INTO sessions (client_id, last_sequence, last_index) VALUES (?1, ?2, ?3)",
        path_, false);
    if (!s.ok()) return s.status();
    session_stmt_ = std::move(*s);
    return absl::OkStatus();
  }

  absl::Status OnBegin(uint64_t applied_index, uint64_t applied_term, int64_t revision) override {
    meta_->applied_index = applied_index;
    meta_->applied_term = applied_term;
    meta_->revision = revision;
    return absl::OkStatus();
  }

  absl::Status OnKeyValue(const KeyValue& kv) override {
    sqlite3_stmt* st = kv_stmt_.get();
    sqlite3_bind_blob64(st, 1, kv.key.data(), kv.key.size(), SQLITE_STATIC);
    sqlite3_bind_blob64(st, 2, kv.value.data(), kv.value.size(), SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, kv.create_revision);
    sqlite3_bind_int64(st, 4, kv.mod_revision);
    sqlite3_bind_int64(st, 5, kv.version);
    if (absl::Status s = Step(st, "insert kv"); !s.ok()) return s;
    meta_->kv_count++;
    meta_->kv_checksum +=
        RowHash(kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version);
    return absl::OkStatus();
  }

  absl::Status OnSession(const SessionEntry& e) override {
    sqlite3_stmt* st = session_stmt_.get();
    sqlite3_bind_int64(st, 1, static_cast<int64_t>(e.client_id));
    sqlite3_bind_int64(st, 2, static_cast<int64_t>(e.last_sequence));
    sqlite3_bind_int64(st, 3, static_cast<int64_t>(e.last_index));
    if (absl::Status s = Step(st, "insert session"); !s.ok()) return s;
    meta_->sessions_count++;
    meta_->sessions_checksum += SessionHash(e.client_id, e.last_sequence, e.last_index);
    return absl::OkStatus();
  }

 private:
  absl::Status Step(sqlite3_stmt* st, std::string_view what) {
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_DONE) return SqlError(db_, rc, path_, what, false);
    return absl::OkStatus();
  }

  sqlite3* db_;
  const std::string& path_;
  SnapshotMeta* meta_;
  StmtPtr kv_stmt_;
  StmtPtr session_stmt_;
};

absl::Status InsertMeta(sqlite3* db, const SnapshotMeta& m, const std::string& path) {
  absl::StatusOr<StmtPtr> st =
      Prepare(db, "INSERT INTO meta (name, value) VALUES (?1, ?2)", path, false);
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

absl::StatusOr<SnapshotMeta> WriteTemp(const StateMachine& sm, const std::string& tmp,
                                       const SnapshotWriteOptions& options) {
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(tmp.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
  DbPtr db(raw);
  if (rc != SQLITE_OK) return SqlError(raw, rc, tmp, "create", false);

  SnapshotMeta meta;
  meta.format_version = kSnapshotFormatVersion;
  meta.members = options.members;
  meta.created_at_unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count();
  // No journal and no SQLite syncs: a half-written temporary file is thrown away, never
  // read; durability comes from the fsync + rename + directory fsync that follow.
  const std::string setup = absl::StrFormat(
      "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA application_id=%d;"
      " PRAGMA user_version=%d; BEGIN; %s",
      kSnapshotApplicationId, kSnapshotFormatVersion, kSchema);
  if (absl::Status s = Exec(db.get(), setup.c_str(), tmp, false); !s.ok()) return s;
  {
    SqliteSink sink(db.get(), tmp, &meta);
    if (absl::Status s = sink.Init(); !s.ok()) return s;
    if (absl::Status s = sm.Export(sink); !s.ok()) return s;
  }
  if (absl::Status s = InsertMeta(db.get(), meta, tmp); !s.ok()) return s;
  if (absl::Status s = Exec(db.get(), "COMMIT", tmp, false); !s.ok()) return s;
  rc = sqlite3_close(db.release());
  if (rc != SQLITE_OK) return SqlError(nullptr, rc, tmp, "close", false);
  return meta;
}

// ----- Reading -----------------------------------------------------------------------------

uint32_t BigEndian(const unsigned char* p, int n) {
  uint32_t v = 0;
  for (int i = 0; i < n; ++i) v = (v << 8) | p[i];
  return v;
}

// Checks the 100-byte SQLite header before SQLite sees the file: SQLite treats a short or
// empty file as an empty database, and reads missing pages of a truncated one as zeros.
// Per the SQLite file format: magic "SQLite format 3\0" at 0, page size (big-endian u16,
// 1 = 65536) at 16, change counter at 24, page count at 28, valid only if the
// "version-valid-for" number at 92 equals the change counter.
absl::Status CheckHeader(const std::string& path) {
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
  if (pages_valid && size != pages * page_bytes) {
    return absl::DataLossError(absl::StrFormat(
        "snapshot %s: file is %d bytes but its header says %d pages of %d bytes (%d bytes): "
        "truncated or corrupt",
        path, size, pages, page_bytes, pages * page_bytes));
  }
  return absl::OkStatus();
}

absl::StatusOr<DbPtr> OpenForRead(const std::string& path) {
  if (absl::Status h = CheckHeader(path); !h.ok()) return h;
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READONLY, nullptr);
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
  if (m.format_version != kSnapshotFormatVersion) {
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

using KvFn = std::function<absl::Status(KeyValue)>;
using SessionFn = std::function<absl::Status(const SessionEntry&)>;

// Opens, checks and streams every row of the snapshot at `path`, then checks counts and
// checksums against meta. The callbacks see rows before the final check: a caller that keeps
// them must discard them if Scan fails.
absl::StatusOr<SnapshotMeta> Scan(const std::string& path, const KvFn& on_kv,
                                  const SessionFn& on_session) {
  absl::StatusOr<DbPtr> db = OpenForRead(path);
  if (!db.ok()) return db.status();
  absl::StatusOr<SnapshotMeta> meta = ReadMeta(db->get(), path);
  if (!meta.ok()) return meta.status();
  if (absl::Status s = QuickCheck(db->get(), path); !s.ok()) return s;

  int64_t kv_count = 0;
  uint64_t kv_sum = 0;
  {
    absl::StatusOr<StmtPtr> st = Prepare(
        db->get(), "SELECT key, value, create_revision, mod_revision, version FROM kv", path,
        true);
    if (!st.ok()) return st.status();
    sqlite3_stmt* s = st->get();
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
      if (!IsBytes(s, 0) || !IsBytes(s, 1) || !IsInt(s, 2) || !IsInt(s, 3) || !IsInt(s, 4)) {
        return absl::DataLossError(
            absl::StrFormat("snapshot %s: kv row %d has mistyped columns", path, kv_count + 1));
      }
      KeyValue kv;
      kv.key = std::string(ColumnBytes(s, 0));
      kv.value = std::string(ColumnBytes(s, 1));
      kv.create_revision = sqlite3_column_int64(s, 2);
      kv.mod_revision = sqlite3_column_int64(s, 3);
      kv.version = sqlite3_column_int64(s, 4);
      if (kv.create_revision < 1 || kv.mod_revision < kv.create_revision || kv.version < 1 ||
          kv.mod_revision > meta->revision) {
        return absl::DataLossError(absl::StrFormat(
            "snapshot %s: kv row %d has impossible revisions (create %d, mod %d, version %d, "
            "store revision %d)",
            path, kv_count + 1, kv.create_revision, kv.mod_revision, kv.version,
            meta->revision));
      }
      ++kv_count;
      kv_sum += RowHash(kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version);
      if (on_kv) {
        if (absl::Status c = on_kv(std::move(kv)); !c.ok()) return c;
      }
    }
    if (rc != SQLITE_DONE) return SqlError(db->get(), rc, path, "read kv", true);
  }

  int64_t sessions_count = 0;
  uint64_t sessions_sum = 0;
  {
    absl::StatusOr<StmtPtr> st = Prepare(
        db->get(), "SELECT client_id, last_sequence, last_index FROM sessions", path, true);
    if (!st.ok()) return st.status();
    sqlite3_stmt* s = st->get();
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
      if (!IsInt(s, 0) || !IsInt(s, 1) || !IsInt(s, 2)) {
        return absl::DataLossError(absl::StrFormat(
            "snapshot %s: sessions row %d has mistyped columns", path, sessions_count + 1));
      }
      SessionEntry e{static_cast<uint64_t>(sqlite3_column_int64(s, 0)),
                     static_cast<uint64_t>(sqlite3_column_int64(s, 1)),
                     static_cast<uint64_t>(sqlite3_column_int64(s, 2))};
      ++sessions_count;
      sessions_sum += SessionHash(e.client_id, e.last_sequence, e.last_index);
      if (on_session) {
        if (absl::Status c = on_session(e); !c.ok()) return c;
      }
    }
    if (rc != SQLITE_DONE) return SqlError(db->get(), rc, path, "read sessions", true);
  }

  if (kv_count != meta->kv_count || kv_sum != meta->kv_checksum) {
    return absl::DataLossError(absl::StrFormat(
        "snapshot %s: kv table does not match meta: %d rows with checksum %016x, meta says "
        "%d rows with checksum %016x",
        path, kv_count, kv_sum, meta->kv_count, meta->kv_checksum));
  }
  if (sessions_count != meta->sessions_count || sessions_sum != meta->sessions_checksum) {
    return absl::DataLossError(absl::StrFormat(
        "snapshot %s: sessions table does not match meta: %d rows with checksum %016x, meta "
        "says %d rows with checksum %016x",
        path, sessions_count, sessions_sum, meta->sessions_count, meta->sessions_checksum));
  }
  return meta;
}

}  // namespace

absl::StatusOr<SnapshotMeta> WriteSnapshot(const StateMachine& sm, const std::string& path,
                                           const SnapshotWriteOptions& options) {
  const std::string tmp = path + ".tmp";
  std::error_code ec;
  std::filesystem::remove(tmp, ec);  // a leftover from a crashed writer
  if (ec) return base::IoError("remove", tmp, ec.value());
  absl::StatusOr<SnapshotMeta> meta = WriteTemp(sm, tmp, options);
  absl::Status s = meta.status();
  if (s.ok()) s = FsyncFile(tmp);
  if (s.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) s = base::IoError("rename", tmp, errno);
  if (!s.ok()) {
    std::filesystem::remove(tmp, ec);
    return s;
  }
  if (absl::Status d = base::SyncDir(base::DirName(path)); !d.ok()) return d;
  return meta;
}

absl::StatusOr<SnapshotMeta> ReadSnapshotMeta(const std::string& path) {
  absl::StatusOr<DbPtr> db = OpenForRead(path);
  if (!db.ok()) return db.status();
  return ReadMeta(db->get(), path);
}

absl::StatusOr<SnapshotMeta> VerifySnapshot(const std::string& path) {
  return Scan(path, nullptr, nullptr);
}

absl::StatusOr<SnapshotMeta> RestoreSnapshot(const std::string& path, const std::string& db_path,
                                             const RestoreOptions& options) {
  std::error_code ec;
  if (std::filesystem::exists(db_path, ec) && !std::filesystem::is_empty(db_path, ec)) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "cannot restore snapshot %s: %s already exists and is not empty", path, db_path));
  }
  const std::string tmp = db_path + ".restore-tmp";
  std::filesystem::remove_all(tmp, ec);  // a leftover from a crashed restore
  if (ec) return base::IoError("remove", tmp, ec.value());

  absl::StatusOr<SnapshotMeta> meta;
  {
    StateMachineOptions sm_options;
    sm_options.db_path = tmp;
    absl::StatusOr<std::unique_ptr<RocksDbStateMachine>> sm =
        RocksDbStateMachine::OpenRocksDb(sm_options);
    if (!sm.ok()) return sm.status();

    std::vector<KeyValue> batch;
    std::vector<SessionEntry> sessions;
    size_t batch_bytes = 0;
    auto flush = [&]() -> absl::Status {
      absl::Status s = (*sm)->ImportBatch(batch, sessions);
      batch.clear();
      sessions.clear();
      batch_bytes = 0;
      return s;
    };
    meta = Scan(
        path,
        [&](KeyValue kv) -> absl::Status {
          batch_bytes += kv.key.size() + kv.value.size() + 32;
          batch.push_back(std::move(kv));
          return batch_bytes >= options.batch_max_bytes ? flush() : absl::OkStatus();
        },
        [&](const SessionEntry& e) -> absl::Status {
          batch_bytes += 32;
          sessions.push_back(e);
          return batch_bytes >= options.batch_max_bytes ? flush() : absl::OkStatus();
        });
    absl::Status s = meta.status();
    if (s.ok()) s = flush();
    if (s.ok()) s = (*sm)->FinishImport(meta->applied_index, meta->applied_term, meta->revision);
    if (!s.ok()) {
      sm->reset();
      std::filesystem::remove_all(tmp, ec);
      return s;
    }
  }  // closes the store before the rename

  if (std::filesystem::exists(db_path, ec)) std::filesystem::remove(db_path, ec);  // empty dir
  if (::rename(tmp.c_str(), db_path.c_str()) != 0) {
    absl::Status s = base::IoError("rename", tmp, errno);
    std::filesystem::remove_all(tmp, ec);
    return s;
  }
  if (absl::Status d = base::SyncDir(base::DirName(db_path)); !d.ok()) return d;
  return meta;
}

}  // namespace raftkv::kv
