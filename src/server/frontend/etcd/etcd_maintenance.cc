#include "server/frontend/etcd/etcd_maintenance.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <optional>
#include <cerrno>
#include <cstring>

#include "absl/synchronization/notification.h"
#include "kv/sqlite_snapshot.h"

namespace raftkv::server::etcd {

grpc::Status EtcdMaintenance::Status(grpc::ServerContext*, const pb::StatusRequest*,
                                     pb::StatusResponse* resp) {
  NodeStatus status = s_->replicator()->Status();
  s_->FillHeader(status.revision, status.term, resp->mutable_header());
  resp->set_version(s_->options().version);
  resp->set_dbsize(static_cast<int64_t>(status.db_size_bytes));
  resp->set_dbsizeinuse(static_cast<int64_t>(status.db_size_bytes));
  resp->set_leader(
      status.leader_id >= 0 ? NodeId::FromPosition(status.leader_id).etcd_member_id() : 0);
  resp->set_raftindex(status.commit_index);
  resp->set_raftterm(status.term);
  resp->set_raftappliedindex(status.applied_index);
  for (const std::string& alarm : status.alarms) resp->add_errors(alarm);
  resp->set_raftkv_loop_max_iteration_us(status.loop_max_iteration_us);
  resp->set_raftkv_loop_max_tick_gap_us(status.loop_max_tick_gap_us);
  return grpc::Status::OK;
}

grpc::Status EtcdMaintenance::Snapshot(grpc::ServerContext* context,
                                       const pb::SnapshotRequest*,
                                       grpc::ServerWriter<pb::SnapshotResponse>* writer) {
  const EtcdServiceOptions& o = s_->options();
  if (!o.make_snapshot) return Unimplemented("Snapshot is not enabled on this server");
  SnapshotSlot slot(&in_progress_);
  if (slot.count() > o.max_concurrent_snapshots) {
    return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                        absl::StrFormat("%d snapshots are already being streamed "
                                        "(max_concurrent_snapshots); retry later",
                                        o.max_concurrent_snapshots));
  }
  // Fresh, not just consistent: the copy holds every write acknowledged before this call
  // (a follower that cannot serve the barrier answers UNAVAILABLE; clients try the next).
  if (absl::Status s = s_->AwaitReadBarrier(context); !s.ok()) return s_->ToGrpc(s);
  absl::StatusOr<std::string> path = o.make_snapshot();
  if (!path.ok()) return s_->ToGrpc(path.status());
  RemoveOnExit remove(*path);
  absl::StatusOr<kv::SnapshotMeta> meta = kv::ReadSnapshotMeta(*path);
  if (!meta.ok()) return s_->ToGrpc(meta.status());
  return StreamFile(context, *path, *meta, writer);
}

grpc::Status EtcdMaintenance::MoveLeader(grpc::ServerContext* context,
                                         const pb::MoveLeaderRequest* req,
                                         pb::MoveLeaderResponse* resp) {
  // targetID 0 (etcd's "none"; etcd refuses it): the most up-to-date follower.
  std::optional<NodeId> to;
  if (req->targetid() != 0) to = NodeId::FromEtcdMemberId(req->targetid());
  const std::string target = to ? to->ToString() : "the most up-to-date follower";
  // The loop answers by the deadline it is given (checked every tick); the wait here allows
  // a second more, so the loop's answer, which says why, is the one the client sees.
  auto remaining = std::chrono::duration_cast<std::chrono::milliseconds>(
      context->deadline() - std::chrono::system_clock::now());
  const int64_t timeout_ms = std::max<int64_t>(
      1, std::min<int64_t>(s_->options().request_timeout_ms, remaining.count()));
  struct State {
    absl::Notification done;
    absl::StatusOr<uint64_t> result = absl::UnknownError("no answer");
  };
  auto state = std::make_shared<State>();
  s_->replicator()->TransferLeadership(to ? std::optional<uint64_t>(to->position())
                                          : std::nullopt,
                                       static_cast<uint64_t>(timeout_ms),
                                       [state](absl::StatusOr<uint64_t> r) {
                                         state->result = std::move(r);
                                         state->done.Notify();
                                       });
  if (!state->done.WaitForNotificationWithTimeout(absl::Milliseconds(timeout_ms) +
                                                  absl::Seconds(1))) {
    return s_->ToGrpc(absl::DeadlineExceededError(absl::StrFormat(
        "leadership transfer to %s not answered within %d ms", target, timeout_ms)));
  }
  if (!state->result.ok()) return s_->ToGrpc(state->result.status());
  NodeStatus status = s_->replicator()->Status();
  s_->FillHeader(status.revision, status.term, resp->mutable_header());
  return grpc::Status::OK;
}

grpc::Status EtcdMaintenance::StreamFile(grpc::ServerContext* context,
                                         const std::string& path, const kv::SnapshotMeta& meta,
                                         grpc::ServerWriter<pb::SnapshotResponse>* writer) const {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return grpc::Status(grpc::StatusCode::INTERNAL,
                        absl::StrCat("cannot open snapshot ", path, ": ", std::strerror(errno)));
  }
  struct CloseOnExit {
    int fd;
    ~CloseOnExit() { ::close(fd); }
  } close_fd{fd};
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    return grpc::Status(grpc::StatusCode::INTERNAL,
                        absl::StrCat("cannot stat snapshot ", path, ": ", std::strerror(errno)));
  }
  uint64_t remaining = static_cast<uint64_t>(st.st_size);
  const uint64_t chunk_max =
      static_cast<uint64_t>(std::max<int64_t>(1, s_->options().snapshot_chunk_bytes));
  std::string buffer;
  bool first = true;
  while (first || remaining > 0) {
    if (context->IsCancelled()) {
      return grpc::Status(grpc::StatusCode::CANCELLED, "client cancelled the snapshot");
    }
    const size_t want = static_cast<size_t>(std::min(remaining, chunk_max));
    buffer.resize(want);
    size_t got = 0;
    while (got < want) {
      ssize_t n = ::read(fd, buffer.data() + got, want - got);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        return grpc::Status(grpc::StatusCode::INTERNAL,
                            absl::StrCat("cannot read snapshot ", path, ": ",
                                         n < 0 ? std::strerror(errno) : "unexpected end"));
      }
      got += static_cast<size_t>(n);
    }
    remaining -= want;
    pb::SnapshotResponse resp;
    s_->FillHeader(meta.revision, meta.applied_term, resp.mutable_header());
    first = false;
    resp.set_remaining_bytes(remaining);
    resp.set_blob(std::move(buffer));
    buffer = std::string();
    if (!writer->Write(resp)) {
      return grpc::Status(grpc::StatusCode::CANCELLED, "client went away during the snapshot");
    }
  }
  return grpc::Status::OK;
}

}  // namespace raftkv::server::etcd
