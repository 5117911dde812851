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

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/file_util.h"
#include "kv/rocksdb_state_machine.h"
#include "kv/record_coding.h"
#include "kv/row_hash.h"
#include "kv/sqlite_util.h"

namespace raftkv::kv {
namespace {

using sqlite_internal::ColumnBytes;
using sqlite_internal::DbPtr;
using sqlite_internal::Exec;
using sqlite_internal::FsyncFile;
using sqlite_internal::IsBytes;
using sqlite_internal::IsInt;
using sqlite_internal::kSchema;
using sqlite_internal::OpenChecked;
using sqlite_internal::Prepare;
using sqlite_internal::QuickCheck;
using sqlite_internal::ReadMeta;
using sqlite_internal::SqlError;
using sqlite_internal::StmtPtr;
using sqlite_internal::WriteMeta;

// ----- Writing -----------------------------------------------------------------------------

class SqliteSink final : public ExportSink {
 public:
  SqliteSink(sqlite3* db, const std::string& path, SnapshotMeta* meta)
      : db_(db), path_(path), meta_(meta) {}

  absl::Status Init() {
    absl::StatusOr<StmtPtr> kv = sqlite_internal::Prepare(
        db_,
        "INSERT INTO kv (key, value, create_revision, mod_revision, version) "
        "VALUES (?1, ?2, ?3, ?4, ?5)",
        path_, false);
    if (!kv.ok()) return kv.status();
    kv_stmt_ = std::move(*kv);
    absl::StatusOr<StmtPtr> s = sqlite_internal::Prepare(
        db_,
        "INSERT INTO sessions (client_id, last_sequence, last_index, record) "
        "VALUES (?1, ?2, ?3, ?4)",
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
    sqlite3_bind_blob64(st, 4, e.record.data(), e.record.size(), SQLITE_STATIC);
    if (absl::Status s = Step(st, "insert session"); !s.ok()) return s;
    meta_->sessions_count++;
    meta_->sessions_checksum +=
        SessionHash(e.client_id, e.last_sequence, e.last_index, e.record);
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
  if (absl::Status s = WriteMeta(db.get(), meta, tmp); !s.ok()) return s;
  if (absl::Status s = Exec(db.get(), "COMMIT", tmp, false); !s.ok()) return s;
  rc = sqlite3_close(db.release());
  if (rc != SQLITE_OK) return SqlError(nullptr, rc, tmp, "close", false);
  return meta;
}

// ----- Reading -----------------------------------------------------------------------------

using KvFn = std::function<absl::Status(KeyValue)>;
using SessionFn = std::function<absl::Status(const SessionEntry&)>;

// Opens, checks and streams every row of the snapshot at `path`, then checks counts and
// checksums against meta. The callbacks see rows before the final check: a caller that keeps
// them must discard them if Scan fails.
absl::StatusOr<SnapshotMeta> Scan(const std::string& path, const KvFn& on_kv,
                                  const SessionFn& on_session) {
  absl::StatusOr<DbPtr> db = OpenChecked(path, SQLITE_OPEN_READONLY, /*check_size=*/true);
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
    // Format 1 had no record column (and never a session row).
    absl::StatusOr<StmtPtr> st = Prepare(
        db->get(),
        meta->format_version == 1
            ? "SELECT client_id, last_sequence, last_index, NULL FROM sessions"
            : "SELECT client_id, last_sequence, last_index, record FROM sessions",
        path, true);
    if (!st.ok()) return st.status();
    sqlite3_stmt* s = st->get();
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
      if (!IsInt(s, 0) || !IsInt(s, 1) || !IsInt(s, 2) || !IsBytes(s, 3)) {
        return absl::DataLossError(absl::StrFormat(
            "snapshot %s: sessions row %d has mistyped columns", path, sessions_count + 1));
      }
      SessionEntry e{static_cast<uint64_t>(sqlite3_column_int64(s, 0)),
                     static_cast<uint64_t>(sqlite3_column_int64(s, 1)),
                     static_cast<uint64_t>(sqlite3_column_int64(s, 2)),
                     std::string(ColumnBytes(s, 3))};
      absl::StatusOr<coding::SessionRecord> rec = coding::DecodeSessionRecord(e.record);
      if (!rec.ok() || rec->last_sequence != e.last_sequence ||
          rec->last_index != e.last_index) {
        return absl::DataLossError(absl::StrFormat(
            "snapshot %s: sessions row %d (client %d): record does not match its columns%s",
            path, sessions_count + 1, e.client_id,
            rec.ok() ? "" : absl::StrCat(": ", rec.status().message())));
      }
      ++sessions_count;
      sessions_sum += SessionHash(e.client_id, e.last_sequence, e.last_index, e.record);
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
  absl::StatusOr<DbPtr> db = OpenChecked(path, SQLITE_OPEN_READONLY, /*check_size=*/true);
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
