#include "kv/sqlite_backup.h"

#include <sqlite3.h>

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <map>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/file_util.h"
#include "kv/command_eval.h"
#include "kv/row_hash.h"
#include "kv/sqlite_util.h"

namespace raftkv::kv {

using sqlite_internal::ColumnBytes;
using sqlite_internal::DbPtr;
using sqlite_internal::Exec;
using sqlite_internal::FsyncFile;
using sqlite_internal::SqlError;
using sqlite_internal::StmtPtr;

namespace {

int64_t NowUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Creates an empty backup file (the snapshot of an empty store) at `path`, durably.
absl::Status CreateEmpty(const std::string& path, const std::string& members) {
  const std::string tmp = path + ".tmp";
  std::error_code ec;
  std::filesystem::remove(tmp, ec);
  {
    sqlite3* raw = nullptr;
    int rc = sqlite3_open_v2(tmp.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                             nullptr);
    DbPtr db(raw);
    if (rc != SQLITE_OK) return SqlError(raw, rc, tmp, "create", false);
    const std::string setup = absl::StrFormat(
        "PRAGMA application_id=%d; PRAGMA user_version=%d; BEGIN; %s", kSnapshotApplicationId,
        kSnapshotFormatVersion, sqlite_internal::kSchema);
    if (absl::Status s = Exec(db.get(), setup.c_str(), tmp, false); !s.ok()) return s;
    SnapshotMeta meta;
    meta.format_version = kSnapshotFormatVersion;
    meta.revision = 1;
    meta.members = members;
    meta.created_at_unix_ms = NowUnixMs();
    if (absl::Status s = sqlite_internal::WriteMeta(db.get(), meta, tmp); !s.ok()) return s;
    if (absl::Status s = Exec(db.get(), "COMMIT", tmp, false); !s.ok()) return s;
    rc = sqlite3_close(db.release());
    if (rc != SQLITE_OK) return SqlError(nullptr, rc, tmp, "close", false);
  }
  if (absl::Status s = FsyncFile(tmp); !s.ok()) return s;
  if (::rename(tmp.c_str(), path.c_str()) != 0) return base::IoError("rename", tmp, errno);
  return base::SyncDir(base::DirName(path));
}

}  // namespace

struct SqliteBackup::Statements {
  StmtPtr get_kv, scan_to_end, scan_range, get_session, idle_sessions, delete_session, put_kv,
      delete_kv, put_session;
};

// The backup's state inside the open transaction, for EvaluateCommand (commands that came
// without an effect): earlier entries of the same Apply call are written before it reads.
class SqliteBackup::View final : public StoreView {
 public:
  explicit View(SqliteBackup* b) : b_(b) {}

  absl::StatusOr<std::optional<coding::KeyRecord>> GetRecord(const std::string& key) override {
    return ReadRecord(key);
  }

  absl::StatusOr<std::optional<coding::SessionRecord>> GetSession(uint64_t client_id) override {
    return ReadSession(client_id);
  }

  absl::Status ForEachRecord(
      const std::string& begin, const std::string& end, bool to_end,
      const std::function<void(std::string, coding::KeyRecord)>& fn) override {
    sqlite3_stmt* st = to_end ? b_->st_->scan_to_end.get() : b_->st_->scan_range.get();
    sqlite3_bind_blob64(st, 1, begin.data(), begin.size(), SQLITE_STATIC);
    if (!to_end) sqlite3_bind_blob64(st, 2, end.data(), end.size(), SQLITE_STATIC);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
      fn(std::string(ColumnBytes(st, 0)), RecordAt(st, 1));
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) return SqlError(b_->db_, rc, b_->options_.path, "scan kv", true);
    return absl::OkStatus();
  }

  absl::Status ForEachIdleSession(
      uint64_t before_index, uint64_t /*index*/, size_t max,
      const std::function<void(uint64_t, uint64_t)>& fn) override {
    sqlite3_stmt* st = b_->st_->idle_sessions.get();
    sqlite3_bind_int64(st, 1, static_cast<int64_t>(before_index));
    sqlite3_bind_int64(st, 2, static_cast<int64_t>(max));
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
      fn(static_cast<uint64_t>(sqlite3_column_int64(st, 0)),
         static_cast<uint64_t>(sqlite3_column_int64(st, 1)));
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) return SqlError(b_->db_, rc, b_->options_.path, "scan sessions", true);
    return absl::OkStatus();
  }

 private:
  // The record in the columns (value, create_revision, mod_revision, version) from `first`.
  static coding::KeyRecord RecordAt(sqlite3_stmt* st, int first) {
    coding::KeyRecord rec;
    rec.value = std::string(ColumnBytes(st, first));
    rec.create_revision = sqlite3_column_int64(st, first + 1);
    rec.mod_revision = sqlite3_column_int64(st, first + 2);
    rec.version = sqlite3_column_int64(st, first + 3);
    return rec;
  }

  absl::StatusOr<std::optional<coding::KeyRecord>> ReadRecord(const std::string& key) {
    sqlite3_stmt* st = b_->st_->get_kv.get();
    sqlite3_bind_blob64(st, 1, key.data(), key.size(), SQLITE_STATIC);
    int rc = sqlite3_step(st);
    std::optional<coding::KeyRecord> rec;
    if (rc == SQLITE_ROW) {
      rec = RecordAt(st, 0);
      rc = sqlite3_step(st);  // key is the primary key: at most one row
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) return SqlError(b_->db_, rc, b_->options_.path, "read kv", true);
    return rec;
  }

  absl::StatusOr<std::optional<coding::SessionRecord>> ReadSession(uint64_t client_id) {
    sqlite3_stmt* st = b_->st_->get_session.get();
    sqlite3_bind_int64(st, 1, static_cast<int64_t>(client_id));
    int rc = sqlite3_step(st);
    std::optional<coding::SessionRecord> rec;
    absl::Status bad;
    if (rc == SQLITE_ROW) {
      absl::StatusOr<coding::SessionRecord> r = coding::DecodeSessionRecord(ColumnBytes(st, 0));
      if (r.ok()) {
        rec = *std::move(r);
      } else {
        bad = r.status();
      }
      rc = sqlite3_step(st);
    }
    sqlite3_reset(st);
    if (!bad.ok()) return bad;
    if (rc != SQLITE_DONE) return SqlError(b_->db_, rc, b_->options_.path, "read session", true);
    return rec;
  }

 private:
  SqliteBackup* b_;
};

absl::StatusOr<std::unique_ptr<SqliteBackup>> SqliteBackup::Open(const BackupOptions& options) {
  std::error_code ec;
  if (!std::filesystem::exists(options.path, ec)) {
    if (absl::Status s = CreateEmpty(options.path, options.members); !s.ok()) return s;
  }
  // No size check: in WAL mode the main file legitimately lags the header until a checkpoint.
  absl::StatusOr<DbPtr> db =
      sqlite_internal::OpenChecked(options.path, SQLITE_OPEN_READWRITE, /*check_size=*/false);
  if (!db.ok()) return db.status();
  // WAL: readers (sqlite3, CopyTo) never block the writer. FULL: a commit is durable.
  if (absl::Status s = Exec(db->get(), "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;",
                            options.path, false);
      !s.ok()) {
    return s;
  }
  absl::StatusOr<SnapshotMeta> meta = sqlite_internal::ReadMeta(db->get(), options.path);
  if (!meta.ok()) return meta.status();
  if (meta->format_version == 1) {
    if (absl::Status s = Exec(db->get(),
                              absl::StrCat("BEGIN; ", sqlite_internal::kMigrateFormat1,
                                           " PRAGMA user_version = 2; COMMIT;")
                                  .c_str(),
                              options.path, false);
        !s.ok()) {
      return s;
    }
    meta->format_version = kSnapshotFormatVersion;
  }
  std::unique_ptr<SqliteBackup> b(new SqliteBackup(options, db->release(), std::move(*meta)));
  if (absl::Status s = b->Prepare(); !s.ok()) return s;
  return b;
}

absl::StatusOr<std::unique_ptr<SqliteBackup>> SqliteBackup::CreateFrom(
    const StateMachine& sm, const BackupOptions& options) {
  // The old file's WAL must not be replayed over the new file.
  std::error_code ec;
  std::filesystem::remove(options.path + "-wal", ec);
  std::filesystem::remove(options.path + "-shm", ec);
  absl::StatusOr<SnapshotMeta> meta = WriteSnapshot(sm, options.path, {.members = options.members});
  if (!meta.ok()) return meta.status();
  return Open(options);
}

SqliteBackup::SqliteBackup(BackupOptions options, sqlite3* db, SnapshotMeta meta)
    : options_(std::move(options)), db_(db), meta_(std::move(meta)) {}

SqliteBackup::~SqliteBackup() {
  st_.reset();  // statements first, or close fails with SQLITE_BUSY
  sqlite3_close_v2(db_);
}

absl::Status SqliteBackup::Prepare() {
  st_ = std::make_unique<Statements>();
  const std::string& path = options_.path;
  struct {
    StmtPtr* out;
    const char* sql;
  } all[] = {
      {&st_->get_kv,
       "SELECT value, create_revision, mod_revision, version FROM kv WHERE key = ?1"},
      {&st_->scan_to_end,
       "SELECT key, value, create_revision, mod_revision, version FROM kv WHERE key >= ?1 "
       "ORDER BY key"},
      {&st_->scan_range,
       "SELECT key, value, create_revision, mod_revision, version FROM kv "
       "WHERE key >= ?1 AND key < ?2 ORDER BY key"},
      {&st_->get_session, "SELECT record FROM sessions WHERE client_id = ?1"},
      {&st_->idle_sessions,
       "SELECT last_index, client_id FROM sessions WHERE last_index < ?1 "
       "ORDER BY last_index, client_id LIMIT ?2"},
      {&st_->delete_session, "DELETE FROM sessions WHERE client_id = ?1"},
      {&st_->put_kv,
       "INSERT OR REPLACE INTO kv (key, value, create_revision, mod_revision, version) "
       "VALUES (?1, ?2, ?3, ?4, ?5)"},
      {&st_->delete_kv, "DELETE FROM kv WHERE key = ?1"},
      {&st_->put_session,
       "INSERT OR REPLACE INTO sessions (client_id, last_sequence, last_index, record) "
       "VALUES (?1, ?2, ?3, ?4)"},
  };
  for (auto& s : all) {
    absl::StatusOr<StmtPtr> stmt = sqlite_internal::Prepare(db_, s.sql, path, false);
    if (!stmt.ok()) return stmt.status();
    *s.out = std::move(*stmt);
  }
  return absl::OkStatus();
}

// The rows changed by the effects added since the last WriteChanges, each with what it held
// before the first of them (what the backup holds now) and after the last (what it must
// hold). Pointers into the effects, which outlive it until WriteChanges.
struct SqliteBackup::Changes {
  struct Row {
    const std::optional<coding::KeyRecord>* before;
    const std::optional<coding::KeyRecord>* after;
  };
  struct Session {
    const std::optional<coding::SessionRecord>* before;
    const SessionEntry* after;  // null: removed
  };
  std::map<std::string_view, Row> rows;  // key order: SQLite writes neighbouring pages
  std::map<uint64_t, Session> sessions;
};

absl::Status SqliteBackup::AddEffect(const EntryEffect& effect, Changes& changes) const {
  auto missing = [&](std::string_view what) {
    return absl::InternalError(absl::StrFormat(
        "backup %s: an entry's effect lacks the previous record of a %s it changes",
        options_.path, what));
  };
  for (const auto& [key, rec] : effect.writes) {
    auto before = effect.writes_before.find(key);
    if (before == effect.writes_before.end()) return missing("key");
    auto [it, added] = changes.rows.try_emplace(key, Changes::Row{&before->second, &rec});
    if (!added) it->second.after = &rec;
  }
  // Expired sessions go before the entry's own session is written (which may recreate one).
  auto change_session = [&](uint64_t client_id, const SessionEntry* after) -> absl::Status {
    auto before = effect.sessions_before.find(client_id);
    if (before == effect.sessions_before.end()) return missing("session");
    auto [it, added] =
        changes.sessions.try_emplace(client_id, Changes::Session{&before->second, after});
    if (!added) it->second.after = after;
    return absl::OkStatus();
  };
  for (const auto& [last_index, client_id] : effect.expired_sessions) {
    if (absl::Status s = change_session(client_id, nullptr); !s.ok()) return s;
  }
  if (effect.session.has_value()) {
    if (absl::Status s = change_session(effect.session->client_id, &*effect.session); !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

absl::Status SqliteBackup::WriteChanges(Changes& changes) {
  const std::string& path = options_.path;
  auto step = [&](sqlite3_stmt* st, std::string_view what) -> absl::Status {
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_DONE) return SqlError(db_, rc, path, what, false);
    ++rows_written_;
    return absl::OkStatus();
  };
  for (const auto& [key, row] : changes.rows) {
    if (const std::optional<coding::KeyRecord>& old = *row.before; old.has_value()) {
      meta_.kv_checksum -=
          RowHash(key, old->value, old->create_revision, old->mod_revision, old->version);
      meta_.kv_count--;
    }
    if (const std::optional<coding::KeyRecord>& rec = *row.after; rec.has_value()) {
      sqlite3_stmt* st = st_->put_kv.get();
      sqlite3_bind_blob64(st, 1, key.data(), key.size(), SQLITE_STATIC);
      sqlite3_bind_blob64(st, 2, rec->value.data(), rec->value.size(), SQLITE_STATIC);
      sqlite3_bind_int64(st, 3, rec->create_revision);
      sqlite3_bind_int64(st, 4, rec->mod_revision);
      sqlite3_bind_int64(st, 5, rec->version);
      if (absl::Status s = step(st, "write kv"); !s.ok()) return s;
      meta_.kv_checksum +=
          RowHash(key, rec->value, rec->create_revision, rec->mod_revision, rec->version);
      meta_.kv_count++;
    } else if (row.before->has_value()) {
      sqlite3_stmt* st = st_->delete_kv.get();
      sqlite3_bind_blob64(st, 1, key.data(), key.size(), SQLITE_STATIC);
      if (absl::Status s = step(st, "delete kv"); !s.ok()) return s;
    }
  }
  for (const auto& [client_id, session] : changes.sessions) {
    if (const std::optional<coding::SessionRecord>& old = *session.before; old.has_value()) {
      meta_.sessions_checksum -= SessionHash(client_id, old->last_sequence, old->last_index,
                                             coding::EncodeSessionRecord(*old));
      meta_.sessions_count--;
    }
    if (const SessionEntry* e = session.after; e != nullptr) {
      sqlite3_stmt* st = st_->put_session.get();
      sqlite3_bind_int64(st, 1, static_cast<int64_t>(e->client_id));
      sqlite3_bind_int64(st, 2, static_cast<int64_t>(e->last_sequence));
      sqlite3_bind_int64(st, 3, static_cast<int64_t>(e->last_index));
      sqlite3_bind_blob64(st, 4, e->record.data(), e->record.size(), SQLITE_STATIC);
      if (absl::Status s = step(st, "write session"); !s.ok()) return s;
      meta_.sessions_checksum +=
          SessionHash(e->client_id, e->last_sequence, e->last_index, e->record);
      meta_.sessions_count++;
    } else if (session.before->has_value()) {
      sqlite3_stmt* st = st_->delete_session.get();
      sqlite3_bind_int64(st, 1, static_cast<int64_t>(client_id));
      if (absl::Status s = step(st, "delete session"); !s.ok()) return s;
    }
  }
  changes.rows.clear();
  changes.sessions.clear();
  return absl::OkStatus();
}

absl::Status SqliteBackup::Apply(const std::vector<BackupEntry>& entries) {
  const std::string& path = options_.path;
  bool any_new = false;
  for (const BackupEntry& e : entries) any_new = any_new || e.index > meta_.applied_index;
  if (!any_new) return absl::OkStatus();  // all replays: no transaction, no fsync
  const SnapshotMeta committed = meta_;
  if (absl::Status s = Exec(db_, "BEGIN IMMEDIATE", path, false); !s.ok()) return s;
  Changes changes;
  absl::Status status;
  for (const BackupEntry& e : entries) {
    if (e.index <= meta_.applied_index) continue;
    if (e.index != meta_.applied_index + 1) {
      status = absl::FailedPreconditionError(absl::StrFormat(
          "backup %s: entry %d applied out of order (backup has applied %d)", path, e.index,
          meta_.applied_index));
      break;
    }
    if (e.effect != nullptr) {
      status = AddEffect(*e.effect, changes);
      meta_.revision = e.effect->store_revision;
    } else if (e.command != nullptr) {
      // Evaluated against the rows as they are: what earlier entries changed is written first.
      status = WriteChanges(changes);
      if (!status.ok()) break;
      View view(this);
      absl::StatusOr<EntryEffect> effect =
          EvaluateCommand(view, e.index, meta_.revision, *e.command);
      if (!effect.ok()) {
        status = effect.status();
        break;
      }
      ++evaluated_entries_;
      status = AddEffect(*effect, changes);
      if (status.ok()) status = WriteChanges(changes);  // before `effect` goes
      meta_.revision = effect->store_revision;
    }
    if (!status.ok()) break;
    meta_.applied_index = e.index;
    meta_.applied_term = e.term;
  }
  if (status.ok()) status = WriteChanges(changes);
  if (status.ok()) {
    meta_.members = options_.members;
    status = sqlite_internal::WriteMeta(db_, meta_, path);
  }
  if (status.ok()) status = Exec(db_, "COMMIT", path, false);
  if (!status.ok()) {
    Exec(db_, "ROLLBACK", path, false).IgnoreError();  // fails harmlessly if COMMIT did not start
    meta_ = committed;
  }
  return status;
}

absl::StatusOr<SnapshotMeta> SqliteBackup::CopyTo(const std::string& path) const {
  const std::string tmp = path + ".tmp";
  std::error_code ec;
  std::filesystem::remove(tmp, ec);
  auto fail = [&](absl::Status s) {
    std::filesystem::remove(tmp, ec);
    return s;
  };
  SnapshotMeta meta;
  {
    sqlite3* raw = nullptr;
    int rc = sqlite3_open_v2(tmp.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                             nullptr);
    DbPtr dst(raw);
    if (rc != SQLITE_OK) return fail(SqlError(raw, rc, tmp, "create", false));
    sqlite3_backup* copy = sqlite3_backup_init(dst.get(), "main", db_, "main");
    if (copy == nullptr) {
      return fail(SqlError(dst.get(), sqlite3_errcode(dst.get()), tmp, "backup init", false));
    }
    // One step copies every page under one read transaction: a commit-consistent copy. Only
    // SQLITE_DONE means it did; BUSY/LOCKED (another connection's lock) is retried, bounded,
    // and anything else fails the copy, so a partial copy is never published.
    auto step = options_.backup_step != nullptr ? options_.backup_step : &sqlite3_backup_step;
    uint32_t retries = 0;
    int step_rc = step(copy, -1);
    while ((step_rc == SQLITE_BUSY || step_rc == SQLITE_LOCKED) &&
           retries < options_.copy_busy_retries) {
      ++retries;
      sqlite3_sleep(static_cast<int>(options_.copy_busy_retry_ms));
      step_rc = step(copy, -1);
    }
    rc = sqlite3_backup_finish(copy);
    if (step_rc != SQLITE_DONE) {
      return fail(SqlError(nullptr, step_rc, tmp,
                           absl::StrFormat("backup copy (after %d retries)", retries), false));
    }
    if (rc != SQLITE_OK) return fail(SqlError(dst.get(), rc, tmp, "backup copy", false));
    // A standalone file: rollback journal (no -wal/-shm companions), its own creation time.
    if (absl::Status s = Exec(dst.get(), "PRAGMA journal_mode=DELETE", tmp, false); !s.ok()) {
      return fail(s);
    }
    absl::StatusOr<SnapshotMeta> m = sqlite_internal::ReadMeta(dst.get(), tmp);
    if (!m.ok()) return fail(m.status());
    meta = std::move(*m);
    meta.created_at_unix_ms = NowUnixMs();
    if (absl::Status s = sqlite_internal::WriteMeta(dst.get(), meta, tmp); !s.ok()) {
      return fail(s);
    }
    rc = sqlite3_close(dst.release());
    if (rc != SQLITE_OK) return fail(SqlError(nullptr, rc, tmp, "close", false));
  }
  if (absl::Status s = FsyncFile(tmp); !s.ok()) return fail(s);
  if (::rename(tmp.c_str(), path.c_str()) != 0) return fail(base::IoError("rename", tmp, errno));
  if (absl::Status s = base::SyncDir(base::DirName(path)); !s.ok()) return s;
  return meta;
}

}  // namespace raftkv::kv
