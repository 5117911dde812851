// The etcd v3 client API subset on kvd's gRPC port (README.md, "Talking to it"), so
// etcdctl and etcd client libraries work against raftkv.
//
// Served:
//   KV.Range        key / range_end (prefix, "\0" = from key), limit, count_only, keys_only,
//                   sort, min/max mod/create revision filters. Always linearizable (the
//                   serializable flag is accepted and ignored: reads go through the read
//                   barrier). revision must be 0 or the current revision: no history is kept.
//                   At most max_range_keys key-values per response.
//   KV.Put          prev_kv. lease / ignore_value / ignore_lease: UNIMPLEMENTED.
//   KV.DeleteRange  deleted count; prev_kv for a single key (not for a range: UNIMPLEMENTED,
//                   because the state machine reports one previous record per op).
//   KV.Txn          only without compares and with put/delete_range ops: they become ONE
//                   state-machine command, applied atomically as one revision. A Txn with
//                   compares is UNIMPLEMENTED: evaluating them here and then writing would not
//                   be atomic, and the state machine has no compare ops.
//   Maintenance.Status, Cluster.MemberList.
//   Maintenance.MoveLeader  on the leader: a leadership transfer (Replicator::
//                   TransferLeadership), answered once the target leads; a follower answers
//                   UNAVAILABLE naming the leader (as etcd, which answers "not leader").
//   Maintenance.Snapshot  when EtcdServiceOptions::make_snapshot is set: a fresh consistent
//                   SQLite snapshot file (kv/sqlite_snapshot.h format, not etcd's bbolt),
//                   taken after a read barrier (it holds every write acknowledged before the
//                   request), streamed in chunks of at most snapshot_chunk_bytes, each with
//                   remaining_bytes = the bytes still to come after it (0 on the last). The
//                   header's revision and raft_term are the snapshot's. The file is deleted
//                   after streaming (also when the client goes away). Unset: UNIMPLEMENTED.
// Every other method of these services, and the Watch/Lease/Auth services, answer
// UNIMPLEMENTED.
//
// Member ids: NodeId::etcd_member_id() (server/node_id.h; etcd uses 0 for "none").
//
// Errors from KvService / Replicator are mapped to gRPC codes here, at the edge:
// kUnavailable -> UNAVAILABLE (message names the leader when known), kInvalidArgument ->
// INVALID_ARGUMENT, kDeadlineExceeded -> DEADLINE_EXCEEDED (outcome unknown), and so on
// (absl and gRPC share the google.rpc code numbering).
//
// Threading: handlers run on gRPC's sync-server threads and block on the KvService callback.
//
// One file per service: etcd_kv.*, etcd_maintenance.*, etcd_cluster.*; what they share is
// etcd_shared.h; the pure filtering and sorting of Range is etcd_range.*.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/node_id.h"

namespace grpc {
class ServerBuilder;
}  // namespace grpc

namespace raftkv::server {

class KvService;
class Replicator;

struct EtcdServiceOptions {
  // Longest a handler waits for a write or read to complete when the client set no shorter
  // deadline; after it the answer is DEADLINE_EXCEEDED (a write's outcome is then unknown).
  int64_t request_timeout_ms = 10000;
  // Most key-values one Range may return, and most a sorted or revision-filtered Range may
  // read; a request needing more fails with RESOURCE_EXHAUSTED (count_only is unaffected).
  int64_t max_range_keys = 100000;
  // Most bytes of key-values one Range response carries (below the gRPC message limit): a
  // range over more stops there and answers more=true, as etcd does, so clients page.
  int64_t max_range_bytes = 3 << 20;
  // Reported as StatusResponse.version. etcdctl prints it; clients that check versions want
  // an etcd release number, so this is the etcd API version we mimic.
  std::string version = "3.4.0";
  // Maintenance.Snapshot: writes a fresh consistent snapshot file and returns its path; the
  // handler owns the file from then on and deletes it after streaming. Each call must return
  // a new path (concurrent requests each get their own file). Called on a gRPC handler
  // thread. Unset: Maintenance.Snapshot answers UNIMPLEMENTED.
  std::function<absl::StatusOr<std::string>()> make_snapshot;
  // Largest blob one SnapshotResponse carries (must stay below the gRPC message limits).
  int64_t snapshot_chunk_bytes = 1 << 20;
  // Most Maintenance.Snapshot calls in progress at once (each writes a full copy of the
  // data to disk); more answer RESOURCE_EXHAUSTED.
  int64_t max_concurrent_snapshots = 2;
};

class EtcdServices {
 public:
  // `kv` and `replicator` must outlive this object and the gRPC server it is registered
  // with. `self`: this node (its etcd member id goes into every response header).
  EtcdServices(KvService* kv, Replicator* replicator, uint64_t cluster_id, NodeId self,
               EtcdServiceOptions options = {});
  ~EtcdServices();
  EtcdServices(const EtcdServices&) = delete;
  EtcdServices& operator=(const EtcdServices&) = delete;

  // Adds the KV, Maintenance and Cluster services to `builder`. Call once, before
  // builder->BuildAndStart(); this object must outlive the built server.
  void Register(grpc::ServerBuilder* builder);

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace raftkv::server
