#include "server/peer/forwarder.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "base/check.h"
#include "grpcpp/grpcpp.h"
#include "raft_service.grpc.pb.h"
#include "server/grpc_status.h"
#include "server/peer/peer_channels.h"

namespace raftkv::server {

void ToWire(uint64_t index, const kv::ApplyResult& result, raftpb::ForwardResponse* out) {
  out->set_index(index);
  out->set_revision(result.revision);
  out->set_duplicate(result.duplicate);
  out->set_session_refused(result.session_refused);
  for (const kv::OpResult& op : result.ops) {
    raftpb::ForwardedOpResult* w = out->add_ops();
    w->set_deleted(op.deleted);
    if (op.prev) {
      raftpb::ForwardedKeyValue* kv = w->mutable_prev();
      kv->set_key(op.prev->key);
      kv->set_value(op.prev->value);
      kv->set_create_revision(op.prev->create_revision);
      kv->set_mod_revision(op.prev->mod_revision);
      kv->set_version(op.prev->version);
    }
  }
}

ForwardResult FromWire(const raftpb::ForwardResponse& wire) {
  ForwardResult out;
  out.index = wire.index();
  out.result.revision = wire.revision();
  out.result.duplicate = wire.duplicate();
  out.result.session_refused = wire.session_refused();
  for (const raftpb::ForwardedOpResult& w : wire.ops()) {
    kv::OpResult op;
    op.deleted = w.deleted();
    if (w.has_prev()) {
      op.prev = kv::KeyValue{w.prev().key(), w.prev().value(), w.prev().create_revision(),
                             w.prev().mod_revision(), w.prev().version()};
    }
    out.result.ops.push_back(std::move(op));
  }
  return out;
}

void Forwarder::Forward(uint64_t leader_id, std::string command, uint32_t timeout_ms,
                        Done done) {
  std::vector<std::string> commands;
  commands.push_back(std::move(command));
  ForwardBatch(leader_id, std::move(commands), timeout_ms,
               [done = std::move(done)](
                   std::vector<absl::StatusOr<ForwardResult>> results) mutable {
                 std::move(done)(std::move(results.front()));
               });
}

void Forwarder::ForwardBatch(uint64_t leader_id, std::vector<std::string> commands,
                             uint32_t timeout_ms, BatchDone done) {
  RAFTKV_CHECK(!commands.empty());
  const size_t n = commands.size();
  std::shared_ptr<raftpb::RaftPeer::Stub> stub = channels_->stub(leader_id);
  if (stub == nullptr) {
    std::move(done)(std::vector<absl::StatusOr<ForwardResult>>(
        n, absl::UnavailableError(absl::StrCat("leader ", leader_id, " is not a known peer"))));
    return;
  }
  // Owned by the callback, which gRPC runs exactly once. gRPC wants a copyable callback, so
  // the (move-only) `done` is shared with it.
  struct Call {
    grpc::ClientContext context;
    raftpb::ForwardRequest request;
    raftpb::ForwardResponse response;
    BatchDone done;
    std::shared_ptr<raftpb::RaftPeer::Stub> stub;  // keeps the channel open for the call
  };
  auto call = std::make_shared<Call>();
  call->context.set_deadline(std::chrono::system_clock::now() +
                             std::chrono::milliseconds(timeout_ms));
  call->request.set_command(std::move(commands[0]));
  for (size_t i = 1; i < n; ++i) call->request.add_more_commands(std::move(commands[i]));
  call->done = std::move(done);
  call->stub = stub;
  stub->async()->Forward(
      &call->context, &call->request, &call->response,
      [call, n, address = channels_->address(leader_id)](grpc::Status status) {
        std::vector<absl::StatusOr<ForwardResult>> out;
        out.reserve(n);
        if (!status.ok()) {
          absl::Status s = FromGrpcStatus(status);
          const auto& trailers = call->context.GetServerTrailingMetadata();
          const bool leader_answered = trailers.find(kForwardAnsweredKey) != trailers.end();
          if (!leader_answered && s.code() != absl::StatusCode::kDeadlineExceeded) {
            // The call broke in transport (connection refused or reset, the leader died): the
            // leader may have received it and applied it.
            s = absl::UnknownError(absl::StrCat("outcome unknown: forwarding to the leader at ",
                                                address, " broke: ", s.message()));
          } else {
            s = absl::Status(s.code(), absl::StrCat("forwarding to the leader at ", address,
                                                    ": ", s.message()));
          }
          out.assign(n, s);
          std::move(call->done)(std::move(out));
          return;
        }
        if (n == 1 || call->response.results_size() == 0) {
          // The single form: the answer to the first command (a leader that does not know
          // the batched form proposed nothing else).
          out.push_back(FromWire(call->response));
          for (size_t i = 1; i < n; ++i) {
            out.push_back(absl::UnavailableError(absl::StrCat(
                "not applied: the leader at ", address, " does not take batched forwards")));
          }
          std::move(call->done)(std::move(out));
          return;
        }
        for (size_t i = 0; i < n; ++i) {
          if (i >= static_cast<size_t>(call->response.results_size())) {
            // A leader answers every command; a short answer is a broken one.
            out.push_back(absl::UnknownError(absl::StrCat(
                "outcome unknown: the leader at ", address, " answered ",
                call->response.results_size(), " of ", n, " forwarded writes")));
            continue;
          }
          const raftpb::ForwardedResult& r = call->response.results(static_cast<int>(i));
          if (r.code() != 0) {
            absl::Status s = FromGrpcStatus(
                grpc::Status(static_cast<grpc::StatusCode>(r.code()), r.message()));
            out.push_back(absl::Status(
                s.code(), absl::StrCat("forwarding to the leader at ", address, ": ",
                                       s.message())));
          } else {
            out.push_back(FromWire(r.response()));
          }
        }
        std::move(call->done)(std::move(out));
      });
}

}  // namespace raftkv::server
