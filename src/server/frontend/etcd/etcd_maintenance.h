// etcd Maintenance service: Status, Snapshot and MoveLeader.
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

  // Leadership transfer to targetID (an etcd member id; 0, which etcd refuses: the most
  // up-to-date follower), asked of the leader as in etcd (etcdctl move-leader finds the
  // leader among its endpoints). Answers once the target
  // leads, within the client's deadline and request_timeout_ms. Errors: UNAVAILABLE on a
  // node that does not lead (the message names the leader and its address: ask it; not
  // forwarded, as etcd does), NOT_FOUND (no such member), FAILED_PRECONDITION (a learner,
  // this node, a transfer to another node in progress), DEADLINE_EXCEEDED (not done in time;
  // the old leader serves again after an election timeout), ABORTED (another node won).
  grpc::Status MoveLeader(grpc::ServerContext* context, const pb::MoveLeaderRequest* req,
                          pb::MoveLeaderResponse* resp) override;

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
