// etcd Maintenance service: Status and Snapshot.
#pragma once

#include <unistd.h>

#include <atomic>
#include <string>

#include "kv/sqlite_snapshot.h"
#include "server/frontend/etcd/etcd_shared.h"

namespace raftkv::server::etcd {

class EtcdMaintenance final : public pb::Maintenance::Service {
 public:
  explicit EtcdMaintenance(const Shared* shared) : s_(shared) {}

  grpc::Status Status(grpc::ServerContext*, const pb::StatusRequest*,
                      pb::StatusResponse* resp) override;

  grpc::Status Snapshot(grpc::ServerContext* context, const pb::SnapshotRequest*,
                        grpc::ServerWriter<pb::SnapshotResponse>* writer) override;

 private:
  // Counts this call in `counter` for its lifetime; count() includes it.
  class SnapshotSlot {
   public:
    explicit SnapshotSlot(std::atomic<int64_t>* counter)
        : counter_(counter), count_(counter->fetch_add(1) + 1) {}
    ~SnapshotSlot() { counter_->fetch_sub(1); }
    int64_t count() const { return count_; }

   private:
    std::atomic<int64_t>* counter_;
    int64_t count_;
  };

  // The exported file is a temporary copy: it goes whatever the outcome.
  class RemoveOnExit {
   public:
    explicit RemoveOnExit(std::string path) : path_(std::move(path)) {}
    ~RemoveOnExit() { ::unlink(path_.c_str()); }

   private:
    std::string path_;
  };

  // Sends the file at `path` in chunks of at most snapshot_chunk_bytes. The file is private
  // to this call, so its size cannot change while it is read; a short read is an error.
  grpc::Status StreamFile(grpc::ServerContext* context, const std::string& path,
                          const kv::SnapshotMeta& meta,
                          grpc::ServerWriter<pb::SnapshotResponse>* writer) const;

  const Shared* s_;
  std::atomic<int64_t> in_progress_{0};  // Snapshot calls running now
};

}  // namespace raftkv::server::etcd
