// SnapshotStore: the Raft snapshot files of one node -- how they are named, which is the newest,
// which are deleted (retention) -- in two directories: the node's own (<data-dir>/snapshots,
// cut from its backup) and the ones streamed in from a leader (<data-dir>/snapshots/received,
// peer/snapshot_receiver.h). Both count alike: an installed snapshot from the leader is this
// node's newest until it cuts a newer one of its own.
//
// A snapshot file is snap-<index, 20 digits>-<term>.db (a kv/sqlite_snapshot.h file), so
// names sort by index. A transfer in progress (or broken off) is <snapshot name>.<size>.part
// in the received directory. Other files (export-*.db copies, *.tmp files of a copy in
// progress) are not snapshots here and are never touched.
//
// No state of its own beyond the directories: every call looks at the files. Creating and
// pruning may run on two threads at once (the backup worker cuts and prunes; the raft loop
// prunes after installing a snapshot): pruning only unlinks, and never a file either may
// still need (Prune's rules).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "kv/sqlite_snapshot.h"

namespace raftkv::server {

struct SnapshotFile {
  kv::SnapshotMeta meta;  // as read from the file
  std::string path;
};

class SnapshotStore {
 public:
  // `dir`: the node's own snapshots. `received_dir`: snapshots from a leader; empty: none
  // (a caller that only names files in `dir`).
  explicit SnapshotStore(std::string dir, std::string received_dir = "")
      : dir_(std::move(dir)), received_dir_(std::move(received_dir)) {}

  // snap-<20-digit index>-<term>.db.
  static std::string FileName(uint64_t index, uint64_t term);
  // Whether `name` (no directory) is a snapshot file name.
  static bool IsSnapshotName(const std::string& name);

  const std::string& dir() const { return dir_; }
  const std::string& received_dir() const { return received_dir_; }
  std::string PathFor(uint64_t index, uint64_t term) const;
  absl::Status CreateDir() const;

  // The snapshot file names in dir() (own snapshots), oldest (lowest index) first. A missing
  // directory has none.
  std::vector<std::string> Names() const;
  // The highest index among the snapshot names of both directories, without opening any file
  // (0: none).
  uint64_t NewestIndexByName() const;
  // The newest snapshot of either directory whose meta can be read and whose index is at
  // most `max_index`.
  std::optional<SnapshotFile> Newest(uint64_t max_index = UINT64_MAX) const;
  // Retention, given the state machine's applied index:
  //   - of the snapshots (both directories) at or below `applied_index`, all but the newest
  //     `keep` are deleted;
  //   - snapshots above it (received, not installed yet: a restart may still need them to
  //     finish an install) are kept;
  //   - partial received files (.part) at or below it are deleted: the node already holds
  //     that state, so nothing will resume them; those above it may still be resumed.
  // Fsyncs each directory it deleted from. Errors are ignored (the next call retries).
  void Prune(size_t keep, uint64_t applied_index) const;

 private:
  struct Listed {
    uint64_t index = 0;
    std::string path;
    bool partial = false;   // a .part file of a transfer
    bool received = false;  // in received_dir_
  };
  // Snapshot and .part files of both directories, lowest index first.
  std::vector<Listed> List() const;

  std::string dir_;
  std::string received_dir_;
};

}  // namespace raftkv::server
