// The receiving side of the peer links: the RaftPeer gRPC service (Raft message streams,
// forwarded writes, snapshot streams). Includes gRPC headers, so only the file that builds
// the gRPC server includes it.
#pragma once

#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "kv.pb.h"
#include "raft.pb.h"
#include "raft_service.grpc.pb.h"
#include "server/peer/forwarder.h"
#include "server/peer/snapshot_receiver.h"

namespace raftkv::server {

// What the service hands its work to (the raft loop implements it). Any thread.
class PeerHandler {
 public:
  using ForwardDone = absl::AnyInvocable<void(absl::StatusOr<ForwardResult>) &&>;
  virtual ~PeerHandler() = default;
  // A Raft message from a peer.
  virtual void Deliver(raftpb::Message m) = 0;
  // A write forwarded by a follower: proposed here only if this node is the leader (never
  // forwarded again); `done` runs exactly once.
  virtual void WriteFromPeer(kvpb::Command cmd, ForwardDone done) = 0;
  // True when `raft_id` was a member and this node applied its removal (ids are never
  // reused): its messages are refused, and it is told so (peer_transport.h).
  virtual bool IsRemovedMember(uint64_t raft_id) = 0;
  // A batch of writes forwarded in one call (ForwardRequest's batched form): proposed in this
  // order; dones[i] answers cmds[i], each exactly once. The default hands them to
  // WriteFromPeer one by one, in order (enough for a handler that proposes in arrival order).
  // REQUIRES: cmds.size() == dones.size().
  virtual void WritesFromPeer(std::vector<kvpb::Command> cmds, std::vector<ForwardDone> dones) {
    for (size_t i = 0; i < cmds.size(); ++i) {
      WriteFromPeer(std::move(cmds[i]), std::move(dones[i]));
    }
  }
};

// Options of the gRPC server that serves RaftPeerService (and the etcd API on the same port):
// - it accepts the peers' keepalive (peer_channels.h) instead of taking it for abuse: a PING
//   as often as every kMinPeerKeepaliveMs / 2, also on a connection with no call open
//   (gRPC's default is one per 5 minutes; a faster client gets GOAWAY "too_many_pings");
// - it pings idle connections itself every 10 s and closes those that do not answer within
//   20 s (gRPC's defaults: 2 h and 20 s). A peer that dropped a dead connection during a
//   partition opens a new one, and the server's end of the old one, whose FIN was lost, would
//   otherwise hold its stream and a server thread until the process exits. These are kept
//   long, unlike the peers' own, because clients share the port.
void ApplyPeerServerOptions(grpc::ServerBuilder* builder);

// The streams (Send, InstallSnapshot) are served by sync-server threads, one per open stream;
// Forward, one call per forwarded write or batch, is served with the callback API, so no
// thread waits for its answer (server/grpc_async_unary.h).
class RaftPeerService final
    : public raftpb::RaftPeer::WithCallbackMethod_Forward<raftpb::RaftPeer::Service> {
 public:
  // REQUIRES: handler outlives the service (the gRPC server is shut down first).
  // Received snapshots are written under `snapshot_dir`. A Forward is answered when its
  // writes are, or at the caller's deadline, or after `max_forward_wait` (--request-timeout-ms
  // plus a margin), whichever comes first.
  // Message batches stamped with another `cluster_id` (a node of another cluster, or started
  // with another --cluster-token) are refused, and the refusal is logged; 0 checks nothing.
  RaftPeerService(PeerHandler* handler, std::string snapshot_dir,
                  absl::Duration max_forward_wait, uint64_t cluster_id = 0);

  grpc::Status InstallSnapshot(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<raftpb::SnapshotAck, raftpb::SnapshotChunk>* stream) override;
  // Every message of every inbound stream goes to the handler, in stream order.
  grpc::Status Send(grpc::ServerContext* context,
                    grpc::ServerReader<raftpb::MessageBatch>* reader,
                    raftpb::PeerEmpty* response) override;
  grpc::ServerUnaryReactor* Forward(grpc::CallbackServerContext* context,
                                    const raftpb::ForwardRequest* request,
                                    raftpb::ForwardResponse* response) override;

 private:
  PeerHandler* const handler_;
  const uint64_t cluster_id_;
  const absl::Duration max_forward_wait_;
  SnapshotReceiver receiver_;
};

}  // namespace raftkv::server
