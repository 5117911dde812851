// The apply semantics of one committed entry, separated from any storage engine, so the
// RocksDB state machine and the SQLite backup (sqlite_backup.h) compute the very same effect
// from the same command. The rules are documented in rocksdb_state_machine.h.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "kv.pb.h"
#include "kv/record_coding.h"
#include "kv/state_machine.h"

namespace raftkv::kv {

// Read access to a store as it was before the entry being evaluated.
class StoreView {
 public:
  virtual ~StoreView() = default;
  virtual absl::StatusOr<std::optional<coding::KeyRecord>> GetRecord(const std::string& key) = 0;
  // Calls fn(k, record) for every stored key k with begin <= k and (to_end or k < end),
  // ascending.
  virtual absl::Status ForEachRecord(
      const std::string& begin, const std::string& end, bool to_end,
      const std::function<void(std::string, coding::KeyRecord)>& fn) = 0;
  virtual absl::StatusOr<std::optional<coding::SessionRecord>> GetSession(uint64_t client_id) = 0;
  // Calls fn(last_index, client_id) for the sessions with last_index < before_index, in
  // ascending (last_index, client_id) order, at most `max` of them, for the entry at `index`
  // (> before_index; a view may use it: no session stored later has last_index < index).
  virtual absl::Status ForEachIdleSession(
      uint64_t before_index, uint64_t index, size_t max,
      const std::function<void(uint64_t last_index, uint64_t client_id)>& fn) = 0;
};

// Sessions removed by one entry at most (the idlest first): each entry adds at most one
// session, so expiry keeps up, and an entry's cost stays bounded.
inline constexpr size_t kMaxSessionsExpiredPerEntry = 8;
// The window of an entry that carries none (session_window 0).
inline constexpr uint64_t kDefaultSessionWindow = 64;

struct EntryEffect {
  // What Apply returns. result.revision is the store revision after the entry, except for a
  // duplicate, which carries its first application's revision.
  ApplyResult result;
  int64_t store_revision = 0;  // the store revision after the entry
  // Keys the entry changed, ascending: the new record, or nullopt for a deletion.
  std::map<std::string, std::optional<coding::KeyRecord>, std::less<>> writes;
  // Sessions to remove (expired), as (last_index, client_id); removed before `session` is
  // written (which may recreate one of them).
  std::vector<std::pair<uint64_t, uint64_t>> expired_sessions;
  // The session record to store (commands with client_id != 0 that were applied), and the
  // last_index of the record it replaces (nullopt: none, or it is in expired_sessions).
  std::optional<SessionEntry> session;
  std::optional<uint64_t> replaced_session_last_index;
  // What the rows the entry changes held before it, read during the evaluation anyway: the
  // record of every key in `writes` (nullopt: absent), and of every session the entry expires
  // or rewrites (nullopt: none). A follower of the store (the SQLite backup) keeps its
  // checksums from these instead of reading its own rows (it may hold a few keys more, read
  // but not changed).
  std::map<std::string, std::optional<coding::KeyRecord>, std::less<>> writes_before;
  std::map<uint64_t, std::optional<coding::SessionRecord>> sessions_before;
};

// Evaluates cmd as the committed entry `index` against `view`, whose store revision is
// `revision`. Deterministic: a function of the view's contents and the arguments only.
absl::StatusOr<EntryEffect> EvaluateCommand(StoreView& view, uint64_t index, int64_t revision,
                                            const kvpb::Command& cmd);

// True for etcd's "\0" range_end (every key >= key).
inline bool IsAllKeysEnd(std::string_view range_end) {
  return range_end.size() == 1 && range_end[0] == '\0';
}

}  // namespace raftkv::kv
