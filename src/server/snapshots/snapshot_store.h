// SnapshotStore: the Raft snapshot files of one node, in one directory
// (<data-dir>/snapshots): how they are named, which is the newest, which are pruned.
//
// A snapshot file is snap-<index, 20 digits>-<term>.db (a kv/sqlite_snapshot.h file), so
// names sort by index. Other files in the directory (export-*.db copies, the received/
// subdirectory, *.tmp files of a copy in progress) are not snapshots here.
//
// No state of its own beyond the directory: every call looks at the files, so it is safe from
// any thread as long as one writer (the backup worker) creates and prunes.
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
  explicit SnapshotStore(std::string dir) : dir_(std::move(dir)) {}

  // snap-<20-digit index>-<term>.db.
  static std::string FileName(uint64_t index, uint64_t term);
  // Whether `name` (no directory) is a snapshot file name.
  static bool IsSnapshotName(const std::string& name);

  const std::string& dir() const { return dir_; }
  std::string PathFor(uint64_t index, uint64_t term) const;
  absl::Status CreateDir() const;

  // The snapshot file names, oldest (lowest index) first. A missing directory has none.
  std::vector<std::string> Names() const;
  // The highest index among the names, without opening any file (0: none).
  uint64_t NewestIndexByName() const;
  // The newest snapshot whose meta can be read and whose index is at most `max_index`.
  std::optional<SnapshotFile> Newest(uint64_t max_index = UINT64_MAX) const;
  // Deletes all but the newest `keep` snapshots (then fsyncs the directory if any went).
  void Prune(size_t keep) const;

 private:
  std::string dir_;
};

}  // namespace raftkv::server
