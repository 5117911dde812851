#include "kv/rocksdb_state_machine.h"

#include <algorithm>
#include <filesystem>
#include <functional>
#include <map>
#include <system_error>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/check.h"
#include "base/file_util.h"
#include "kv/command_eval.h"
#include "kv/sqlite_snapshot.h"
#include "rocksdb/filter_policy.h"
#include "rocksdb/options.h"
#include "rocksdb/slice_transform.h"
#include "rocksdb/snapshot.h"
#include "rocksdb/table.h"
#include "rocksdb/utilities/write_batch_with_index.h"
#include "rocksdb/write_batch.h"

namespace raftkv::kv {
namespace {

constexpr char kMetaColumnFamily[] = "meta";

// Maps a RocksDB failure to the error tiers (docs/architecture.md, "Errors"): corruption is
// kDataLoss, transient or I/O trouble kUnavailable, everything else kInternal. The message names
// the path.
absl::Status FromRocks(const rocksdb::Status& s, std::string_view what, const std::string& path) {
  std::string msg = absl::StrFormat("rocksdb %s at %s: %s", what, path, s.ToString());
  if (s.IsCorruption()) return absl::DataLossError(msg);
  if (s.IsIOError() || s.IsBusy() || s.IsTryAgain() || s.IsTimedOut() || s.IsIncomplete()) {
    return absl::UnavailableError(msg);
  }
  return absl::InternalError(msg);
}

absl::Status WithContext(const absl::Status& s, std::string_view context) {
  return absl::Status(s.code(), absl::StrFormat("%s: %s", context, s.message()));
}

// A key for an error message: C-escaped, at most 64 bytes of it.
std::string EscapeKey(std::string_view key) {
  constexpr size_t kMaxBytes = 64;
  std::string out =
      absl::CHexEscape(absl::string_view(key.data(), std::min(key.size(), kMaxBytes)));
  if (key.size() > kMaxBytes) out += "...";
  return out;
}

// A stored record of the data column family, with the store and key in any error.
absl::StatusOr<coding::KeyRecord> DecodeStored(std::string_view key, std::string_view value,
                                               const std::string& db_path) {
  absl::StatusOr<coding::KeyRecord> rec = coding::DecodeKeyRecord(value);
  if (!rec.ok()) {
    return WithContext(rec.status(), absl::StrFormat("%s key \"%s\"", db_path, EscapeKey(key)));
  }
  return rec;
}

KeyValue ToKeyValue(std::string key, coding::KeyRecord rec) {
  KeyValue kv;
  kv.key = std::move(key);
  kv.value = std::move(rec.value);
  kv.create_revision = rec.create_revision;
  kv.mod_revision = rec.mod_revision;
  kv.version = rec.version;
  return kv;
}

// How far past `before_index` a scan for idle sessions looks for the next live expiry key
// (in log entries): far enough that the commands after it skip the scan for a while, near
// enough that one scan walks few deleted keys (each log position holds at most one).
constexpr uint64_t kIdleScanLookahead = 1024;

// StoreView::ForEachIdleSession for the entry at `index`, over the meta column family (the
// store's, or the store's merged with a batch) as `iterate(ro)` gives it: calls
// fn(last_index, client_id) for the session-expiry keys from `*floor` (every live one is at or
// above it) up to `before_index` (excluded), oldest first, at most `max` of them. Then raises
// `*floor` to what it is once the entry that removes what fn was given is written: the last
// one's last_index when `max` were found, else the first live key at or above `before_index`,
// looked for up to kIdleScanLookahead past it and never past `index` (the sessions this entry
// and later ones write have last_index >= index). Until `before_index` passes the floor, a
// command needs no iterator at all. A key under the expiry prefix that does not parse is
// kDataLoss (and `*floor` is unchanged).
absl::Status ScanIdleSessions(
    const std::function<std::unique_ptr<rocksdb::Iterator>(const rocksdb::ReadOptions&)>& iterate,
    uint64_t* floor, uint64_t before_index, uint64_t index, size_t max,
    const std::string& db_path, const std::function<void(uint64_t, uint64_t)>& fn) {
  if (before_index <= *floor) return absl::OkStatus();  // no live key is below the floor
  const uint64_t look_to =
      std::max(before_index, std::min(index, before_index + kIdleScanLookahead));
  const std::string end = coding::SessionExpiryKey(look_to, 0);
  const rocksdb::Slice upper(end);
  // The bound keeps RocksDB from walking every deleted expiry key above the last live one
  // (one per session update, kept until a compaction) on every scan.
  rocksdb::ReadOptions ro;
  ro.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it = iterate(ro);
  size_t n = 0;
  uint64_t last = *floor;
  uint64_t next_live = look_to;  // no live key in [before_index, look_to): all are above it
  // Seeking to the floor, not to the prefix, skips the deleted expiry keys below it.
  for (it->Seek(coding::SessionExpiryKey(*floor, 0)); it->Valid(); it->Next()) {
    if (it->key().compare(upper) >= 0) break;  // the bound is not enough: ForEachStoredRecord
    uint64_t last_index = 0, client_id = 0;
    if (!coding::ParseSessionExpiryKey(std::string_view(it->key().data(), it->key().size()),
                                       &last_index, &client_id)) {
      return absl::DataLossError(absl::StrCat(db_path, ": malformed session expiry key"));
    }
    if (last_index >= before_index) {
      next_live = last_index;
      break;
    }
    if (n == max) break;
    fn(last_index, client_id);
    last = last_index;
    ++n;
  }
  if (!it->status().ok()) return FromRocks(it->status(), "scan", db_path);
  *floor = n == max ? last : std::max(*floor, next_live);
  return absl::OkStatus();
}

// StoreView::ForEachRecord over `it`, an iterator of the data column family whose read
// options are bounded by `upper` (null: to the end).
//
// The loop checks the bound itself: RocksDB's iterator over a batch and the store
// (NewIteratorWithBase) can return one of the batch's deleted keys past the upper bound, with
// an empty value, when the store's side is exhausted (RocksDB issue 11606, in 7.8).
absl::Status ForEachStoredRecord(rocksdb::Iterator* it, const std::string& begin,
                                 const rocksdb::Slice* upper, const std::string& db_path,
                                 const std::function<void(std::string, coding::KeyRecord)>& fn) {
  for (it->Seek(begin); it->Valid(); it->Next()) {
    if (upper != nullptr && it->key().compare(*upper) >= 0) break;
    const std::string_view key(it->key().data(), it->key().size());
    absl::StatusOr<coding::KeyRecord> rec =
        DecodeStored(key, std::string_view(it->value().data(), it->value().size()), db_path);
    if (!rec.ok()) return rec.status();
    fn(std::string(key), *std::move(rec));
  }
  if (!it->status().ok()) return FromRocks(it->status(), "scan", db_path);
  return absl::OkStatus();
}

}  // namespace

// The store as the apply thread sees it (latest state; nobody else writes).
class RocksDbStateMachine::LiveView final : public StoreView {
 public:
  explicit LiveView(RocksDbStateMachine* sm) : sm_(sm), floor_(sm->expiry_floor_) {}

  absl::StatusOr<std::optional<coding::KeyRecord>> GetRecord(const std::string& key) override {
    return sm_->GetRecordForEvaluation(key, nullptr);
  }

  absl::Status ForEachRecord(
      const std::string& begin, const std::string& end, bool to_end,
      const std::function<void(std::string, coding::KeyRecord)>& fn) override {
    rocksdb::ReadOptions ro;
    rocksdb::Slice upper(end);
    if (!to_end) ro.iterate_upper_bound = &upper;
    std::unique_ptr<rocksdb::Iterator> it(sm_->db_->NewIterator(ro, sm_->data_cf_));
    return ForEachStoredRecord(it.get(), begin, ro.iterate_upper_bound, sm_->options_.db_path,
                               fn);
  }

  absl::StatusOr<std::optional<coding::SessionRecord>> GetSession(uint64_t client_id) override {
    return sm_->GetSessionForEvaluation(client_id, nullptr);
  }

  absl::Status ForEachIdleSession(
      uint64_t before_index, uint64_t index, size_t max,
      const std::function<void(uint64_t, uint64_t)>& fn) override {
    return ScanIdleSessions(
        [&](const rocksdb::ReadOptions& ro) {
          return std::unique_ptr<rocksdb::Iterator>(sm_->db_->NewIterator(ro, sm_->meta_cf_));
        },
        &floor_, before_index, index, max, sm_->options_.db_path, fn);
  }

  // The session-expiry floor once the entry evaluated against this view is written.
  uint64_t floor() const { return floor_; }

 private:
  RocksDbStateMachine* sm_;
  uint64_t floor_;
};

// The store plus the entries of an ApplyBatch evaluated so far (their writes are in
// `written`, by key), as the next entry of the batch must see it.
class RocksDbStateMachine::BatchView final : public StoreView {
 public:
  BatchView(RocksDbStateMachine* sm, const Written* written)
      : sm_(sm), written_(written), floor_(sm->expiry_floor_) {}

  absl::StatusOr<std::optional<coding::KeyRecord>> GetRecord(const std::string& key) override {
    return sm_->GetRecordForEvaluation(key, written_);
  }

  absl::Status ForEachRecord(
      const std::string& begin, const std::string& end, bool to_end,
      const std::function<void(std::string, coding::KeyRecord)>& fn) override {
    rocksdb::ReadOptions ro;
    const rocksdb::Slice upper(end);
    if (!to_end) ro.iterate_upper_bound = &upper;
    std::unique_ptr<rocksdb::Iterator> it = Iterate(sm_->data_cf_, ro);
    return ForEachStoredRecord(it.get(), begin, ro.iterate_upper_bound, sm_->options_.db_path,
                               fn);
  }

  absl::StatusOr<std::optional<coding::SessionRecord>> GetSession(uint64_t client_id) override {
    return sm_->GetSessionForEvaluation(client_id, written_);
  }

  absl::Status ForEachIdleSession(
      uint64_t before_index, uint64_t index, size_t max,
      const std::function<void(uint64_t, uint64_t)>& fn) override {
    // The bound ScanIdleSessions sets matters here as in LiveView: without it, the store's
    // iterator seeks through every deleted expiry key (one per session update) up to the first
    // live one, on every scan (a leader went from 14,000 to 700 writes/s after a few hundred
    // thousand forwarded writes).
    return ScanIdleSessions(
        [&](const rocksdb::ReadOptions& ro) { return Iterate(sm_->meta_cf_, ro); }, &floor_,
        before_index, index, max, sm_->options_.db_path, fn);
  }

  // The session-expiry floor once the entries evaluated so far are written.
  uint64_t floor() const { return floor_; }

  // The batch's writes to the data (meta) column family indexed (a WriteBatchWithIndex),
  // once a scan of that family needed them; null before. ApplyBatchWithEffects adds every
  // later entry's writes of that family to it too.
  rocksdb::WriteBatchWithIndex* data_index() { return indexed_data_ ? index_.get() : nullptr; }
  rocksdb::WriteBatchWithIndex* meta_index() { return indexed_meta_ ? index_.get() : nullptr; }

 private:
  // The store's keys of `cf` merged with the batch's (its deletes hide keys of the store).
  // Scans are rare (range deletes; idle sessions, once per kIdleScanLookahead entries at
  // most), so the batch's writes are indexed when the first scan needs them, not on every
  // write (indexing them was 4-8% of a node's CPU), and only those of the family scanned:
  // the idle-session scan of a large batch indexed all of its data keys, which nothing
  // scanned (3% of a leader's CPU under RESP SETs).
  // ro.iterate_upper_bound, if set, bounds both: the batch's part too, which otherwise walks
  // every deleted key of the batch above the bound to find a live one (each entry of a
  // Ready deletes its session's previous expiry key, so each command's scan walked the whole
  // batch: quadratic in the Ready's size). `ro` and its bound must outlive the iterator,
  // which lasts until the next call.
  std::unique_ptr<rocksdb::Iterator> Iterate(rocksdb::ColumnFamilyHandle* cf,
                                             const rocksdb::ReadOptions& ro) {
    if (index_ == nullptr) {
      // overwrite_key: the batch's iterator gives each key once.
      index_ = std::make_unique<rocksdb::WriteBatchWithIndex>(rocksdb::BytewiseComparator(), 0,
                                                              /*overwrite_key=*/true);
    }
    auto add = [&](rocksdb::ColumnFamilyHandle* in, const std::string& key,
                   const std::optional<std::string>& value) {
      if (value.has_value()) {
        index_->Put(in, key, *value);
      } else {
        index_->Delete(in, key);
      }
    };
    if (cf == sm_->data_cf_ && !indexed_data_) {
      for (const auto& [key, value] : written_->records) add(sm_->data_cf_, key, value);
      indexed_data_ = true;
    }
    if (cf == sm_->meta_cf_ && !indexed_meta_) {
      for (const auto& [key, value] : written_->sessions) add(sm_->meta_cf_, key, value);
      for (const auto& [key, value] : written_->expiry_keys) add(sm_->meta_cf_, key, value);
      indexed_meta_ = true;
    }
    return std::unique_ptr<rocksdb::Iterator>(
        index_->NewIteratorWithBase(cf, sm_->db_->NewIterator(ro, cf), &ro));
  }

  RocksDbStateMachine* sm_;
  const Written* written_;
  std::unique_ptr<rocksdb::WriteBatchWithIndex> index_;
  bool indexed_data_ = false;  // index_ holds the batch's data writes (and gets the later ones)
  bool indexed_meta_ = false;  // the same for the meta family
  uint64_t floor_;
};

absl::StatusOr<std::unique_ptr<StateMachine>> StateMachine::Open(
    const StateMachineOptions& options) {
  absl::StatusOr<std::unique_ptr<RocksDbStateMachine>> sm =
      RocksDbStateMachine::OpenRocksDb(options);
  if (!sm.ok()) return sm.status();
  return std::unique_ptr<StateMachine>(std::move(*sm));
}

namespace {

// Finishes or undoes an InstallSnapshot that a crash interrupted (see InstallSnapshot):
//   <db>.old and <db>.install, no <db>: the swap had begun, so <db>.install is complete: use it;
//   <db>.old alone, no <db>: put it back;
//   <db> present: any <db>.install is unfinished or was never swapped in, any <db>.old is
//   the store a finished swap replaced: remove both (and RestoreSnapshot's scratch dir).
absl::Status RecoverInterruptedInstall(const std::string& db_path) {
  const std::string install = db_path + ".install";
  const std::string old = db_path + ".old";
  std::error_code ec;
  if (!std::filesystem::exists(db_path, ec) && std::filesystem::exists(old, ec)) {
    const std::string& from = std::filesystem::exists(install, ec) ? install : old;
    if (::rename(from.c_str(), db_path.c_str()) != 0) return base::IoError("rename", from, errno);
    if (absl::Status s = base::SyncDir(base::DirName(db_path)); !s.ok()) return s;
  }
  for (const std::string& leftover : {install, old, install + ".restore-tmp"}) {
    std::filesystem::remove_all(leftover, ec);
    if (ec) return base::IoError("remove", leftover, ec.value());
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<RocksDbStateMachine>> RocksDbStateMachine::OpenRocksDb(
    const StateMachineOptions& options) {
  if (options.db_path.empty()) return absl::InvalidArgumentError("state machine db_path is empty");
  if (options.sync_writes && options.disable_wal) {
    return absl::InvalidArgumentError("state machine: sync_writes needs RocksDB's WAL");
  }
  if (absl::Status s = RecoverInterruptedInstall(options.db_path); !s.ok()) return s;
  std::unique_ptr<RocksDbStateMachine> sm(new RocksDbStateMachine(options));
  if (absl::Status s = sm->OpenDb(); !s.ok()) return s;
  return sm;
}

absl::Status RocksDbStateMachine::OpenDb() {
  const std::string& path = options_.db_path;
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrFormat("cannot create state machine directory %s: %s", path, ec.message()));
  }
  rocksdb::DBOptions db_options;
  db_options.create_if_missing = true;
  db_options.create_missing_column_families = true;
  db_options.paranoid_checks = true;
  // Flush "default" and "meta" together: a data flush without the matching applied record
  // (or the reverse) would leave SSTs at different entries, and if RocksDB's unsynced WAL is
  // then lost, replaying the Raft log would re-apply an entry whose data is already there.
  db_options.atomic_flush = true;
  db_options.keep_log_file_num = 4;
  db_options.db_write_buffer_size = options_.memtable_bytes;
  rocksdb::ColumnFamilyOptions cf_options;
  // One insert hint for every key (an empty prefix): the memtable's skiplist starts each
  // insert from where the previous one went and climbs only as far as it must, so a batch
  // written in key order (AddWritten) costs a fraction of the key comparisons of searching
  // from the top for each key. Without a hint, RocksDB reuses the last position only when
  // the next key falls right after it.
  cf_options.memtable_insert_with_hint_prefix_extractor.reset(
      rocksdb::NewCappedPrefixTransform(0));
  // Point look-ups (every GET, and every write's read of its key's record and session):
  // - a whole-key bloom filter per SST (10 bits per key, about 1% false positives): a Get
  //   skips the files that do not hold its key instead of searching each one's index and
  //   data block;
  // - the same in front of each memtable (2% of its size), so a key that is not in the
  //   memtable costs a few hashes instead of a skiplist search;
  // - a hash index in each data block: the key's entry is found without a binary search
  //   through the block's restart points.
  // None of them changes what is stored: files written without them stay readable.
  rocksdb::BlockBasedTableOptions table_options;
  table_options.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  table_options.whole_key_filtering = true;
  table_options.data_block_index_type =
      rocksdb::BlockBasedTableOptions::kDataBlockBinaryAndHash;
  cf_options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table_options));
  cf_options.memtable_whole_key_filtering = true;
  cf_options.memtable_prefix_bloom_size_ratio = 0.02;
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors = {
      {rocksdb::kDefaultColumnFamilyName, cf_options}, {kMetaColumnFamily, cf_options}};
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(db_options, path, descriptors, &handles, &raw);
  if (!s.ok()) return FromRocks(s, "open", path);
  db_.reset(raw);
  handles_ = std::move(handles);
  RAFTKV_CHECK(handles_.size() == 2);
  data_cf_ = handles_[0];
  meta_cf_ = handles_[1];
  expiry_floor_ = 0;  // a new or swapped store: nothing known about its sessions
  record_cache_.Clear();
  session_cache_.Clear();
  cache_bytes_.store(0, std::memory_order_relaxed);
  return Init();
}

void RocksDbStateMachine::CloseDb() {
  if (!db_) return;
  // A clean close makes everything applied durable, whatever sync_writes says (without the
  // WAL: by a flush, so the next start replays nothing). Best effort: there is no one to
  // report a failure to, and the Raft log still holds the entries.
  if (options_.disable_wal) {
    FlushUnlocked().IgnoreError();
  } else {
    db_->SyncWAL().PermitUncheckedError();
  }
  for (rocksdb::ColumnFamilyHandle* h : handles_) {
    db_->DestroyColumnFamilyHandle(h).PermitUncheckedError();
  }
  handles_.clear();
  data_cf_ = meta_cf_ = nullptr;
  db_->Close().PermitUncheckedError();
  db_.reset();
}

RocksDbStateMachine::RocksDbStateMachine(StateMachineOptions options)
    : options_(std::move(options)),
      record_cache_(options_.record_cache_bytes / 4 * 3),
      session_cache_(options_.record_cache_bytes / 4) {}

RocksDbStateMachine::~RocksDbStateMachine() { CloseDb(); }

absl::Status RocksDbStateMachine::CheckOpen() const {
  if (db_) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrFormat(
      "state machine at %s is closed after a failed snapshot install", options_.db_path));
}

absl::Status RocksDbStateMachine::InstallSnapshot(const std::string& path) {
  const std::string& db_path = options_.db_path;
  const std::string install = db_path + ".install";
  const std::string old = db_path + ".old";
  std::error_code ec;
  std::filesystem::remove_all(install, ec);
  if (ec) return base::IoError("remove", install, ec.value());
  // Verified row by row and flushed before anything of the live store changes.
  absl::StatusOr<SnapshotMeta> meta = RestoreSnapshot(path, install);
  if (!meta.ok()) return meta.status();

  absl::WriterMutexLock lock(&mu_);
  CloseDb();
  // Two renames; RecoverInterruptedInstall finishes the job if we crash between them.
  if (::rename(db_path.c_str(), old.c_str()) != 0) {
    absl::Status s = base::IoError("rename", db_path, errno);
    if (absl::Status r = OpenDb(); !r.ok()) CloseDb();  // back to the old store if possible
    return s;
  }
  if (::rename(install.c_str(), db_path.c_str()) != 0) {
    return base::IoError("rename", install, errno);
  }
  if (absl::Status s = base::SyncDir(base::DirName(db_path)); !s.ok()) return s;
  std::filesystem::remove_all(old, ec);  // best effort; Open removes it otherwise
  if (absl::Status s = OpenDb(); !s.ok()) {
    CloseDb();
    return s;
  }
  return absl::OkStatus();
}

absl::Status RocksDbStateMachine::Init() {
  const std::string& path = options_.db_path;
  std::string format_value;
  rocksdb::Status s =
      db_->Get(rocksdb::ReadOptions(), meta_cf_, std::string(coding::kMetaFormatKey),
               &format_value);
  if (s.IsNotFound()) {
    // A new store, unless something is already in it (a foreign RocksDB, or a lost record).
    std::string applied_value;
    rocksdb::Status a = db_->Get(rocksdb::ReadOptions(), meta_cf_,
                                 std::string(coding::kMetaAppliedKey), &applied_value);
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), data_cf_));
    it->SeekToFirst();
    if (!it->status().ok()) return FromRocks(it->status(), "scan", path);
    if (!a.IsNotFound() || it->Valid()) {
      return absl::DataLossError(absl::StrFormat(
          "state machine at %s has data but no format record: not a raftkv store, or corrupt",
          path));
    }
    rocksdb::WriteBatch batch;
    batch.Put(meta_cf_, std::string(coding::kMetaFormatKey),
              coding::EncodeStoreFormat(coding::kStoreFormat));
    batch.Put(meta_cf_, std::string(coding::kMetaAppliedKey),
              coding::EncodeAppliedRecord(coding::AppliedRecord{0, 0, 1}));
    rocksdb::WriteOptions wo;
    wo.sync = true;
    s = db_->Write(wo, &batch);
    if (!s.ok()) return FromRocks(s, "initialise", path);
    format_value = coding::EncodeStoreFormat(coding::kStoreFormat);
  } else if (!s.ok()) {
    return FromRocks(s, "read format", path);
  }
  absl::StatusOr<uint32_t> format = coding::DecodeStoreFormat(format_value);
  if (!format.ok()) return WithContext(format.status(), path);
  if (*format != coding::kStoreFormat) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "state machine at %s has store format %d; this build reads only %d", path, *format,
        coding::kStoreFormat));
  }

  std::string applied_value;
  s = db_->Get(rocksdb::ReadOptions(), meta_cf_, std::string(coding::kMetaAppliedKey),
               &applied_value);
  if (s.IsNotFound()) {
    return absl::DataLossError(
        absl::StrFormat("state machine at %s has no applied record", path));
  }
  if (!s.ok()) return FromRocks(s, "read applied record", path);
  absl::StatusOr<coding::AppliedRecord> applied = coding::DecodeAppliedRecord(applied_value);
  if (!applied.ok()) return WithContext(applied.status(), path);
  revision_.store(applied->revision, std::memory_order_release);
  applied_term_.store(applied->applied_term, std::memory_order_release);
  applied_index_.store(applied->applied_index, std::memory_order_release);
  return absl::OkStatus();
}

absl::Status RocksDbStateMachine::CheckNext(uint64_t index) const {
  const uint64_t applied = applied_index();
  if (index != applied + 1) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "entry %d applied out of order: state machine at %s has applied %d", index,
        options_.db_path, applied));
  }
  return absl::OkStatus();
}

absl::Status RocksDbStateMachine::Commit(rocksdb::WriteBatch* batch, uint64_t index,
                                         uint64_t term, int64_t revision) {
  batch->Put(meta_cf_, std::string(coding::kMetaAppliedKey),
             coding::EncodeAppliedRecord(coding::AppliedRecord{index, term, revision}));
  rocksdb::WriteOptions wo;
  wo.sync = options_.sync_writes;
  wo.disableWAL = options_.disable_wal;
  entry_writes_.fetch_add(1, std::memory_order_relaxed);
  keys_written_.fetch_add(batch->Count(), std::memory_order_relaxed);
  rocksdb::Status s = db_->Write(wo, batch);
  if (!s.ok()) return FromRocks(s, "write", options_.db_path);
  revision_.store(revision, std::memory_order_release);
  applied_term_.store(term, std::memory_order_release);
  applied_index_.store(index, std::memory_order_release);
  return absl::OkStatus();
}

absl::Status RocksDbStateMachine::ApplyEmpty(uint64_t index, uint64_t term) {
  absl::ReaderMutexLock lock(&mu_);
  if (absl::Status open = CheckOpen(); !open.ok()) return open;
  if (index <= applied_index()) return absl::OkStatus();
  if (absl::Status s = CheckNext(index); !s.ok()) return s;
  rocksdb::WriteBatch batch;
  return Commit(&batch, index, term, revision());
}

absl::StatusOr<ApplyResult> RocksDbStateMachine::Apply(uint64_t index, uint64_t term,
                                                       const kvpb::Command& cmd) {
  absl::ReaderMutexLock lock(&mu_);
  if (absl::Status open = CheckOpen(); !open.ok()) return open;
  if (index <= applied_index()) {
    ApplyResult result;
    result.revision = revision();
    result.duplicate = true;
    return result;
  }
  if (absl::Status s = CheckNext(index); !s.ok()) return s;
  // Reads go to the live DB: only this (the apply) thread writes it.
  LiveView view(this);
  absl::StatusOr<EntryEffect> effect = EvaluateCommand(view, index, revision(), cmd);
  if (!effect.ok()) return effect.status();

  Written written;
  AddEffect(*effect, nullptr, nullptr, &written);
  rocksdb::WriteBatch batch;
  AddWritten(written, &batch);
  if (absl::Status s = Commit(&batch, index, term, effect->store_revision); !s.ok()) return s;
  expiry_floor_ = view.floor();
  Remember(std::move(written));
  return std::move(effect->result);
}

void RocksDbStateMachine::AddEffect(const EntryEffect& effect,
                                    rocksdb::WriteBatchBase* data_index,
                                    rocksdb::WriteBatchBase* meta_index,
                                    Written* written) const {
  auto index_of = [&](rocksdb::ColumnFamilyHandle* cf) {
    return cf == data_cf_ ? data_index : meta_index;
  };
  auto put = [&](rocksdb::ColumnFamilyHandle* cf, WrittenKeys* keys, std::string key,
                 std::string bytes) {
    if (rocksdb::WriteBatchBase* index = index_of(cf)) index->Put(cf, key, bytes);
    if (keys != nullptr) keys->insert_or_assign(std::move(key), std::move(bytes));
  };
  auto del = [&](rocksdb::ColumnFamilyHandle* cf, WrittenKeys* keys, std::string key) {
    if (rocksdb::WriteBatchBase* index = index_of(cf)) index->Delete(cf, key);
    if (keys != nullptr) keys->insert_or_assign(std::move(key), std::nullopt);
  };
  WrittenKeys* records = written != nullptr ? &written->records : nullptr;
  WrittenKeys* sessions = written != nullptr ? &written->sessions : nullptr;
  WrittenKeys* expiry_keys = written != nullptr ? &written->expiry_keys : nullptr;
  // An expiry key names the entry that wrote it, so one this write put was not in the store
  // before it: deleting it again leaves nothing to write.
  auto del_expiry = [&](std::string key) {
    if (expiry_keys != nullptr) {
      auto it = expiry_keys->find(key);
      if (it != expiry_keys->end() && it->second.has_value()) {
        expiry_keys->erase(it);
        if (meta_index != nullptr) meta_index->Delete(meta_cf_, key);
        return;
      }
    }
    del(meta_cf_, expiry_keys, std::move(key));
  };
  for (const auto& [key, rec] : effect.writes) {
    if (rec.has_value()) {
      put(data_cf_, records, key, coding::EncodeKeyRecord(*rec));
    } else {
      del(data_cf_, records, key);
    }
  }
  for (const auto& [last_index, client_id] : effect.expired_sessions) {
    del(meta_cf_, sessions, coding::SessionKey(client_id));
    del_expiry(coding::SessionExpiryKey(last_index, client_id));
  }
  if (effect.session.has_value()) {
    const SessionEntry& e = *effect.session;
    if (effect.replaced_session_last_index) {
      del_expiry(coding::SessionExpiryKey(*effect.replaced_session_last_index, e.client_id));
    }
    put(meta_cf_, sessions, coding::SessionKey(e.client_id), e.record);
    put(meta_cf_, expiry_keys, coding::SessionExpiryKey(e.last_index, e.client_id), "");
  }
}

void RocksDbStateMachine::AddWritten(const Written& written, rocksdb::WriteBatch* batch) const {
  // In key order: the memtable's skiplist starts each insert from where the last one went,
  // so sorted keys are placed from its lowest levels instead of searched for from the top
  // (a fraction of the key comparisons for a batch of random keys).
  std::vector<const WrittenKeys::value_type*> sorted;
  auto add = [&](rocksdb::ColumnFamilyHandle* cf, const WrittenKeys& keys) {
    sorted.clear();
    sorted.reserve(keys.size());
    for (const auto& kv : keys) sorted.push_back(&kv);
    std::sort(sorted.begin(), sorted.end(),
              [](const auto* a, const auto* b) { return a->first < b->first; });
    for (const auto* kv : sorted) {
      if (kv->second.has_value()) {
        batch->Put(cf, kv->first, *kv->second);
      } else {
        batch->Delete(cf, kv->first);
      }
    }
  };
  add(data_cf_, written.records);
  add(meta_cf_, written.sessions);
  add(meta_cf_, written.expiry_keys);
}

absl::StatusOr<std::optional<std::string>> RocksDbStateMachine::ReadForEvaluation(
    rocksdb::ColumnFamilyHandle* cf, const std::string& key, const Written* written) {
  const bool data = cf == data_cf_;
  if (written != nullptr) {
    const auto& map = data ? written->records : written->sessions;
    if (auto it = map.find(key); it != map.end()) {
      cache_hits_.fetch_add(1, std::memory_order_relaxed);
      return it->second;
    }
  }
  RecordCache& cache = data ? record_cache_ : session_cache_;
  if (const std::optional<std::string>* cached = cache.Find(key)) {
    cache_hits_.fetch_add(1, std::memory_order_relaxed);
    return *cached;
  }
  cache_misses_.fetch_add(1, std::memory_order_relaxed);
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), cf, key, &value);
  std::optional<std::string> found;
  if (s.ok()) {
    found = std::move(value);
  } else if (!s.IsNotFound()) {
    return FromRocks(s, data ? "get" : "get session", options_.db_path);
  }
  // The store without the batch: the key is not in it (`written` said so).
  cache.Put(key, found);
  cache_bytes_.store(record_cache_.bytes() + session_cache_.bytes(), std::memory_order_relaxed);
  return found;
}

absl::StatusOr<std::optional<coding::KeyRecord>> RocksDbStateMachine::GetRecordForEvaluation(
    const std::string& key, const Written* written) {
  absl::StatusOr<std::optional<std::string>> bytes = ReadForEvaluation(data_cf_, key, written);
  if (!bytes.ok()) return bytes.status();
  if (!bytes->has_value()) return std::optional<coding::KeyRecord>();
  absl::StatusOr<coding::KeyRecord> rec = DecodeStored(key, **bytes, options_.db_path);
  if (!rec.ok()) return rec.status();
  return std::optional<coding::KeyRecord>(*std::move(rec));
}

absl::StatusOr<std::optional<coding::SessionRecord>>
RocksDbStateMachine::GetSessionForEvaluation(uint64_t client_id, const Written* written) {
  absl::StatusOr<std::optional<std::string>> bytes =
      ReadForEvaluation(meta_cf_, coding::SessionKey(client_id), written);
  if (!bytes.ok()) return bytes.status();
  if (!bytes->has_value()) return std::optional<coding::SessionRecord>();
  absl::StatusOr<coding::SessionRecord> rec = coding::DecodeSessionRecord(**bytes);
  if (!rec.ok()) return WithContext(rec.status(), options_.db_path);
  return std::optional<coding::SessionRecord>(*std::move(rec));
}

void RocksDbStateMachine::Remember(Written written) {
  for (auto& [key, bytes] : written.records) record_cache_.Put(key, std::move(bytes));
  for (auto& [key, bytes] : written.sessions) session_cache_.Put(key, std::move(bytes));
  cache_bytes_.store(record_cache_.bytes() + session_cache_.bytes(), std::memory_order_relaxed);
}

StateMachine::RecordCacheStats RocksDbStateMachine::record_cache_stats() const {
  RecordCacheStats s;
  s.hits = cache_hits_.load(std::memory_order_relaxed);
  s.misses = cache_misses_.load(std::memory_order_relaxed);
  s.bytes = cache_bytes_.load(std::memory_order_relaxed);
  return s;
}

absl::StatusOr<std::vector<ApplyResult>> RocksDbStateMachine::ApplyBatch(
    const std::vector<BatchEntry>& entries) {
  return ApplyBatchWithEffects(entries, nullptr);
}

absl::StatusOr<std::vector<ApplyResult>> RocksDbStateMachine::ApplyBatchWithEffects(
    const std::vector<BatchEntry>& entries, std::vector<std::unique_ptr<EntryEffect>>* effects) {
  absl::ReaderMutexLock lock(&mu_);
  if (absl::Status open = CheckOpen(); !open.ok()) return open;
  std::vector<ApplyResult> results;
  results.reserve(entries.size());
  if (effects != nullptr) {
    effects->clear();
    effects->reserve(entries.size());
  }
  Written written;
  BatchView view(this, &written);
  uint64_t applied = applied_index();
  uint64_t applied_term = this->applied_term();
  int64_t revision = this->revision();
  for (const BatchEntry& e : entries) {
    if (e.index <= applied) {  // a replay: as Apply / ApplyEmpty
      ApplyResult r;
      if (e.cmd != nullptr) {
        r.revision = revision;
        r.duplicate = true;
      }
      results.push_back(std::move(r));
      if (effects != nullptr) effects->emplace_back();
      continue;
    }
    if (e.index != applied + 1) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "entry %d applied out of order: state machine at %s has applied %d", e.index,
          options_.db_path, applied));
    }
    if (e.cmd == nullptr) {
      results.emplace_back();
      if (effects != nullptr) effects->emplace_back();
    } else {
      absl::StatusOr<EntryEffect> effect = EvaluateCommand(view, e.index, revision, *e.cmd);
      if (!effect.ok()) return effect.status();
      AddEffect(*effect, view.data_index(), view.meta_index(), &written);
      revision = effect->store_revision;
      results.push_back(std::move(effect->result));
      if (effects != nullptr) effects->push_back(std::make_unique<EntryEffect>(*std::move(effect)));
    }
    applied = e.index;
    applied_term = e.term;
  }
  if (applied == applied_index()) return results;  // all replays: nothing to write
  // Each key once, as the batch left it (a lane's session record, rewritten by each of its
  // commands, is one insert instead of one per command).
  rocksdb::WriteBatch batch;
  AddWritten(written, &batch);
  if (absl::Status s = Commit(&batch, applied, applied_term, revision); !s.ok()) {
    return s;
  }
  expiry_floor_ = view.floor();
  Remember(std::move(written));
  return results;
}

absl::StatusOr<std::optional<coding::SessionRecord>> RocksDbStateMachine::GetSession(
    uint64_t client_id) const {
  absl::ReaderMutexLock lock(&mu_);
  if (absl::Status open = CheckOpen(); !open.ok()) return open;
  return GetSessionUnlocked(client_id);
}

absl::StatusOr<std::optional<coding::SessionRecord>> RocksDbStateMachine::GetSessionUnlocked(
    uint64_t client_id) const {
  std::string value;
  rocksdb::Status s =
      db_->Get(rocksdb::ReadOptions(), meta_cf_, coding::SessionKey(client_id), &value);
  if (s.IsNotFound()) return std::optional<coding::SessionRecord>();
  if (!s.ok()) return FromRocks(s, "get session", options_.db_path);
  absl::StatusOr<coding::SessionRecord> rec = coding::DecodeSessionRecord(value);
  if (!rec.ok()) return WithContext(rec.status(), options_.db_path);
  return std::optional<coding::SessionRecord>(*rec);
}

absl::StatusOr<std::optional<KeyValue>> RocksDbStateMachine::Get(std::string_view key) const {
  absl::ReaderMutexLock lock(&mu_);
  if (absl::Status open = CheckOpen(); !open.ok()) return open;
  std::string value;
  rocksdb::Status s =
      db_->Get(rocksdb::ReadOptions(), data_cf_, rocksdb::Slice(key.data(), key.size()), &value);
  if (s.IsNotFound()) return std::optional<KeyValue>();
  if (!s.ok()) return FromRocks(s, "get", options_.db_path);
  absl::StatusOr<coding::KeyRecord> rec = DecodeStored(key, value, options_.db_path);
  if (!rec.ok()) return rec.status();
  return std::optional<KeyValue>(ToKeyValue(std::string(key), std::move(*rec)));
}

absl::StatusOr<RangeResult> RocksDbStateMachine::Range(std::string_view key,
                                                       std::string_view range_end, int64_t limit,
                                                       bool keys_only, bool count_only) const {
  absl::ReaderMutexLock lock(&mu_);
  if (absl::Status open = CheckOpen(); !open.ok()) return open;
  const std::string& path = options_.db_path;
  rocksdb::ManagedSnapshot snapshot(db_.get());
  rocksdb::ReadOptions ro;
  ro.snapshot = snapshot.snapshot();

  RangeResult result;
  std::string applied_value;
  rocksdb::Status s =
      db_->Get(ro, meta_cf_, std::string(coding::kMetaAppliedKey), &applied_value);
  if (!s.ok()) return FromRocks(s, "read applied record", path);
  absl::StatusOr<coding::AppliedRecord> applied = coding::DecodeAppliedRecord(applied_value);
  if (!applied.ok()) return WithContext(applied.status(), path);
  result.revision = applied->revision;

  auto add = [&](std::string_view k, std::string_view v) -> absl::Status {
    ++result.count;
    if (count_only) return absl::OkStatus();
    if (limit > 0 && static_cast<int64_t>(result.kvs.size()) >= limit) {
      result.more = true;
      return absl::OkStatus();
    }
    absl::StatusOr<coding::KeyRecord> rec = coding::DecodeKeyRecord(v, keys_only);
    if (!rec.ok()) {
      return WithContext(rec.status(),
                         absl::StrFormat("%s key \"%s\"", path, EscapeKey(k)));
    }
    result.kvs.push_back(ToKeyValue(std::string(k), std::move(*rec)));
    return absl::OkStatus();
  };

  if (range_end.empty()) {
    std::string value;
    s = db_->Get(ro, data_cf_, rocksdb::Slice(key.data(), key.size()), &value);
    if (s.IsNotFound()) return result;
    if (!s.ok()) return FromRocks(s, "get", path);
    if (absl::Status a = add(key, value); !a.ok()) return a;
    return result;
  }
  const bool to_end = IsAllKeysEnd(range_end);
  if (!to_end && range_end <= key) return result;
  rocksdb::Slice upper(range_end.data(), range_end.size());
  if (!to_end) ro.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, data_cf_));
  for (it->Seek(rocksdb::Slice(key.data(), key.size())); it->Valid(); it->Next()) {
    if (absl::Status a = add(std::string_view(it->key().data(), it->key().size()),
                             std::string_view(it->value().data(), it->value().size()));
        !a.ok()) {
      return a;
    }
  }
  if (!it->status().ok()) return FromRocks(it->status(), "scan", path);
  return result;
}

absl::Status RocksDbStateMachine::Export(ExportSink& sink) const {
  absl::ReaderMutexLock lock(&mu_);
  if (absl::Status open = CheckOpen(); !open.ok()) return open;
  const std::string& path = options_.db_path;
  rocksdb::ManagedSnapshot snapshot(db_.get());
  rocksdb::ReadOptions ro;
  ro.snapshot = snapshot.snapshot();
  // A full scan should not evict the working set from the block cache.
  ro.fill_cache = false;

  std::string applied_value;
  rocksdb::Status s =
      db_->Get(ro, meta_cf_, std::string(coding::kMetaAppliedKey), &applied_value);
  if (!s.ok()) return FromRocks(s, "read applied record", path);
  absl::StatusOr<coding::AppliedRecord> applied = coding::DecodeAppliedRecord(applied_value);
  if (!applied.ok()) return WithContext(applied.status(), path);
  if (absl::Status b = sink.OnBegin(applied->applied_index, applied->applied_term,
                                    applied->revision);
      !b.ok()) {
    return b;
  }

  {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, data_cf_));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      std::string_view key(it->key().data(), it->key().size());
      absl::StatusOr<coding::KeyRecord> rec =
          coding::DecodeKeyRecord(std::string_view(it->value().data(), it->value().size()));
      if (!rec.ok()) {
        return WithContext(rec.status(), absl::StrFormat("%s key \"%s\"", path, EscapeKey(key)));
      }
      if (absl::Status k = sink.OnKeyValue(ToKeyValue(std::string(key), std::move(*rec)));
          !k.ok()) {
        return k;
      }
    }
    if (!it->status().ok()) return FromRocks(it->status(), "scan", path);
  }

  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, meta_cf_));
  const std::string prefix(1, coding::kMetaSessionPrefix);
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    SessionEntry entry;
    if (!coding::ParseSessionKey(std::string_view(it->key().data(), it->key().size()),
                                 &entry.client_id)) {
      continue;  // not a session key (none exist today; future meta records may start with 's')
    }
    absl::StatusOr<coding::SessionRecord> rec = coding::DecodeSessionRecord(
        std::string_view(it->value().data(), it->value().size()));
    if (!rec.ok()) return WithContext(rec.status(), path);
    entry.last_sequence = rec->last_sequence;
    entry.last_index = rec->last_index;
    entry.record.assign(it->value().data(), it->value().size());
    if (absl::Status e = sink.OnSession(entry); !e.ok()) return e;
  }
  if (!it->status().ok()) return FromRocks(it->status(), "scan", path);
  return absl::OkStatus();
}

absl::Status RocksDbStateMachine::ImportBatch(const std::vector<KeyValue>& kvs,
                                              const std::vector<SessionEntry>& sessions) {
  absl::ReaderMutexLock lock(&mu_);
  if (absl::Status open = CheckOpen(); !open.ok()) return open;
  RAFTKV_CHECK(applied_index() == 0);
  expiry_floor_ = 0;  // imported sessions may have any last_index
  record_cache_.Clear();
  session_cache_.Clear();
  cache_bytes_.store(0, std::memory_order_relaxed);
  rocksdb::WriteBatch batch;
  for (const KeyValue& kv : kvs) {
    batch.Put(data_cf_, kv.key,
              coding::EncodeKeyRecord(coding::KeyRecord{kv.create_revision, kv.mod_revision,
                                                        kv.version, kv.value}));
  }
  for (const SessionEntry& e : sessions) {
    // The record is the authority; the caller (RestoreSnapshot) checked it decodes and
    // agrees with the entry's columns.
    batch.Put(meta_cf_, coding::SessionKey(e.client_id), e.record);
    batch.Put(meta_cf_, coding::SessionExpiryKey(e.last_index, e.client_id), "");
  }
  rocksdb::WriteOptions wo;
  wo.disableWAL = true;  // FinishImport flushes; an unfinished import is thrown away
  rocksdb::Status s = db_->Write(wo, &batch);
  if (!s.ok()) return FromRocks(s, "import", options_.db_path);
  return absl::OkStatus();
}

absl::Status RocksDbStateMachine::FinishImport(uint64_t applied_index, uint64_t applied_term,
                                               int64_t revision) {
  absl::ReaderMutexLock lock(&mu_);
  if (absl::Status open = CheckOpen(); !open.ok()) return open;
  RAFTKV_CHECK(this->applied_index() == 0);
  if (revision < 1) {
    return absl::InvalidArgumentError(absl::StrFormat("import revision %d < 1", revision));
  }
  rocksdb::WriteBatch batch;
  batch.Put(meta_cf_, std::string(coding::kMetaAppliedKey),
            coding::EncodeAppliedRecord(
                coding::AppliedRecord{applied_index, applied_term, revision}));
  rocksdb::WriteOptions wo;
  wo.disableWAL = true;
  rocksdb::Status s = db_->Write(wo, &batch);
  if (!s.ok()) return FromRocks(s, "import", options_.db_path);
  if (absl::Status f = FlushUnlocked(); !f.ok()) return f;
  revision_.store(revision, std::memory_order_release);
  applied_term_.store(applied_term, std::memory_order_release);
  applied_index_.store(applied_index, std::memory_order_release);
  return absl::OkStatus();
}

absl::Status RocksDbStateMachine::Flush() {
  absl::ReaderMutexLock lock(&mu_);
  if (absl::Status open = CheckOpen(); !open.ok()) return open;
  return FlushUnlocked();
}

uint64_t RocksDbStateMachine::ApproximateSizeBytes() const {
  absl::ReaderMutexLock lock(&mu_);
  if (!CheckOpen().ok()) return 0;
  uint64_t total = 0;
  for (rocksdb::ColumnFamilyHandle* cf : {data_cf_, meta_cf_}) {
    for (const char* property :
         {"rocksdb.total-sst-files-size", "rocksdb.cur-size-all-mem-tables"}) {
      uint64_t value = 0;
      if (db_->GetIntProperty(cf, property, &value)) total += value;
    }
  }
  return total;
}

absl::Status RocksDbStateMachine::FlushUnlocked() {
  rocksdb::FlushOptions fo;
  fo.wait = true;
  rocksdb::Status s = db_->Flush(fo, {data_cf_, meta_cf_});
  if (!s.ok()) return FromRocks(s, "flush", options_.db_path);
  return absl::OkStatus();
}

}  // namespace raftkv::kv
