#include "server/forwarder.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "grpcpp/grpcpp.h"
#include "raft_service.grpc.pb.h"
#include "server/grpc_status.h"

namespace raftkv::server {

void ToWire(uint64_t index, const kv::ApplyResult& result, raftpb::ForwardResponse* out) {
  out->set_index(index);
  out->set_revision(result.revision);
  out->set_duplicate(result.duplicate);
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

struct Forwarder::Stubs {
  std::map<uint64_t, std::unique_ptr<raftpb::RaftPeer::Stub>> by_id;
  std::map<uint64_t, std::string> addresses;
};

Forwarder::Forwarder(const std::map<uint64_t, std::string>& peer_addresses)
    : stubs_(std::make_unique<Stubs>()) {
  for (const auto& [id, address] : peer_addresses) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_ENABLE_HTTP_PROXY, 0);
    args.SetMaxSendMessageSize(-1);
    args.SetMaxReceiveMessageSize(-1);
    stubs_->by_id[id] = raftpb::RaftPeer::NewStub(
        grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args));
    stubs_->addresses[id] = address;
  }
}

Forwarder::~Forwarder() = default;

void Forwarder::Forward(uint64_t leader_id, std::string command, uint32_t timeout_ms,
                        std::function<void(absl::StatusOr<ForwardResult>)> done) {
  auto it = stubs_->by_id.find(leader_id);
  if (it == stubs_->by_id.end()) {
    done(absl::UnavailableError(absl::StrCat("leader ", leader_id, " is not a known peer")));
    return;
  }
  // Owned by the callback, which gRPC runs exactly once.
  struct Call {
    grpc::ClientContext context;
    raftpb::ForwardRequest request;
    raftpb::ForwardResponse response;
  };
  auto call = std::make_shared<Call>();
  call->context.set_deadline(std::chrono::system_clock::now() +
                             std::chrono::milliseconds(timeout_ms));
  call->request.set_command(std::move(command));
  std::string address = stubs_->addresses[leader_id];
  it->second->async()->Forward(
      &call->context, &call->request, &call->response,
      [call, address, done = std::move(done)](grpc::Status status) {
        if (!status.ok()) {
          absl::Status s = FromGrpcStatus(status);
          done(absl::Status(s.code(), absl::StrCat("forwarding to the leader at ", address,
                                                   ": ", s.message())));
          return;
        }
        done(FromWire(call->response));
      });
}

}  // namespace raftkv::server
