// DataDir: every path under --data-dir, named in one place.
//
//   <data-dir>/
//     db/                     the state machine (RocksDB); db.corrupt-<unix s>/ when a corrupt
//                             store was moved aside to be rebuilt
//     wal/                    the Raft write-ahead log (docs/wal-format.md)
//     backup.db               the SQLite backup that follows the log (unless --backup-path)
//     snapshots/              Raft snapshots snap-<index>-<term>.db (snapshots/snapshot_store.h)
//                             and export-<unix ms>-<seq>.db, the temporary copies that
//                             Maintenance.Snapshot streams and then deletes
//     snapshots/received/     snapshots streamed in from a leader (peer/snapshot_receiver.h)
//     identity                whose data this is: cluster id, node id (server/identity.h)
//     members                 the member table: ids, addresses, learners
//                             (replication/member_table.h)
#pragma once

#include <cstdint>
#include <string>

namespace raftkv::server {

class DataDir {
 public:
  // `root`: the --data-dir flag. `backup_path`: --backup-path, empty for the default.
  explicit DataDir(std::string root, std::string backup_path = "");

  const std::string& root() const { return root_; }
  std::string db() const;
  // Where a corrupt store found at start-up is moved, tagged with `unix_seconds`.
  std::string db_aside(int64_t unix_seconds) const;
  std::string wal() const;
  std::string backup() const;
  std::string snapshots() const;
  std::string received_snapshots() const;
  std::string identity() const;
  // The member table (replication/member_table.h).
  std::string members() const;
  // A Maintenance.Snapshot export file; `seq` keeps same-millisecond requests apart.
  std::string export_snapshot(int64_t unix_ms, uint64_t seq) const;

 private:
  std::string root_;
  std::string backup_path_;
};

}  // namespace raftkv::server
