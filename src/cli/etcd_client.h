// kvctl's client for the etcd v3 API subset kvd serves (src/server/etcd_service.h).
//
// Failover: requests go to the endpoints in the order given. An endpoint that answers
// UNAVAILABLE (not reachable, not the leader, no leader: not applied) is skipped and the next
// one tried; reads also move on after DEADLINE_EXCEEDED and UNKNOWN. Every other answer is
// final. Error messages name the endpoint(s) they came from.
//
// Writes carry a session (gRPC metadata raftkv-session-id / raftkv-session-sequence; README.md,
// "Sessions"): the client picks a random session id, each write takes the next sequence, and
// the same sequence is sent on every attempt. So a write whose outcome was unknown
// (DEADLINE_EXCEEDED, UNKNOWN: it may have been applied) is sent again to the next endpoint
// too: the cluster applies it at most once and answers a retry with the first result. Writes
// go round the endpoints up to ClientOptions::write_rounds times (an election takes a moment).
// A write's final error says "not applied" (kUnavailable) only if every attempt was refused
// by the server with its "not-applied" mark (trailing metadata raftkv-error-kind) or never
// connected; an UNAVAILABLE without the mark broke after it may have been sent.
//
// gRPC stays in etcd_client.cc: this header is plain C++.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace raftkv::cli {

struct ClientOptions {
  std::vector<std::string> endpoints;  // host:port of kvd gRPC ports, tried in order
  int64_t timeout_ms = 5000;           // per attempt (per endpoint)
  // Deadline of one whole Maintenance.Snapshot stream (writing and sending the full data).
  int64_t snapshot_timeout_ms = 600000;
  // Largest gRPC message the client accepts (a snapshot chunk is up to 1 MiB by default).
  int64_t max_receive_message_bytes = 16 << 20;
  // Passes over the endpoints a write makes while every answer says "try elsewhere", with
  // write_round_pause_ms between passes.
  int write_rounds = 3;
  int64_t write_round_pause_ms = 500;
  // The write session id; 0: a random one.
  uint64_t session_id = 0;
};

// Where Snapshot() puts the bytes. Begin() is called before each endpoint's stream
// (discarding anything an earlier, failed endpoint delivered), then Append() for each chunk
// in order. An error from either ends the download with that error.
class SnapshotSink {
 public:
  virtual ~SnapshotSink() = default;
  virtual absl::Status Begin() = 0;
  virtual absl::Status Append(const std::string& bytes) = 0;
};

// What Snapshot() received.
struct SnapshotDownload {
  std::string endpoint;   // the endpoint that served it
  uint64_t size_bytes = 0;
  int64_t revision = 0;   // from the response header
  uint64_t raft_term = 0;
};

struct KeyValue {
  std::string key;
  std::string value;
  int64_t create_revision = 0;
  int64_t mod_revision = 0;
  int64_t version = 0;
};

// What one endpoint's Maintenance.Status said, or why it did not answer.
struct EndpointStatus {
  std::string endpoint;
  std::string error;              // empty when the endpoint answered
  uint64_t member_id = 0;         // etcd member id (node id + 1)
  uint64_t leader_member_id = 0;  // 0 = no leader known
  uint64_t term = 0;
  uint64_t raft_index = 0;        // commit index
  uint64_t applied_index = 0;
  int64_t revision = 0;
  int64_t db_size_bytes = 0;
  uint64_t loop_max_iteration_us = 0;  // the raft loop's longest iteration since start
  uint64_t loop_max_tick_gap_us = 0;   // and its longest gap between two ticks
  std::string version;
  std::vector<std::string> alarms;  // StatusResponse.errors: what an operator must act on
};

struct Member {
  uint64_t member_id = 0;
  std::string name;
  std::vector<std::string> peer_urls;
  std::vector<std::string> client_urls;
  bool is_learner = false;
  uint32_t client_port = 0;  // raftkv's text/RESP port (0: not known)
};

class EtcdClient {
 public:
  // REQUIRES: !options.endpoints.empty().
  explicit EtcdClient(ClientOptions options);
  ~EtcdClient();

  // Errors: kUnavailable when no endpoint could serve the request and none may have applied
  // it (message lists each endpoint's error); kUnknown / kDeadlineExceeded when a write's
  // outcome stays unknown; otherwise the server's status, message prefixed with the endpoint.
  // Returns the store revision after the put.
  absl::StatusOr<int64_t> Put(const std::string& key, const std::string& value);
  // nullopt when the key does not exist.
  absl::StatusOr<std::optional<KeyValue>> Get(const std::string& key);
  // Returns the number of keys deleted (0 or 1).
  absl::StatusOr<int64_t> Delete(const std::string& key);
  absl::StatusOr<std::vector<Member>> Members();
  // Membership changes (Cluster.MemberAdd/Promote/Remove/Update), sent to each endpoint in
  // turn (a follower passes it on to the leader), up to write_rounds passes while every
  // answer is a sure "not applied" (no leader yet, or none reachable); an UNAVAILABLE that
  // may have been applied is final, as kUnknown ("outcome unknown"): a change has no session
  // and is never sent twice. `peer_url`: http://ip:grpc_port. MemberAdd adds a learner and
  // returns it.
  absl::StatusOr<Member> MemberAdd(const std::string& peer_url, uint32_t client_port);
  absl::Status MemberPromote(uint64_t member_id);
  absl::Status MemberRemove(uint64_t member_id);
  absl::Status MemberUpdate(uint64_t member_id, const std::string& peer_url,
                            uint32_t client_port);
  // Asks every endpoint (not just the first that answers); never fails as a whole.
  std::vector<EndpointStatus> StatusAll();
  // Asks the endpoint at `index` (of ClientOptions::endpoints) only.
  EndpointStatus StatusOf(size_t index);
  // Maintenance.MoveLeader to the endpoint at `index` (it must lead: see StatusAll), for the
  // member `target_member_id` (0: kvd picks the most up-to-date follower, a raftkv
  // extension). No failover: only the leader can transfer. Errors: the server's status,
  // message prefixed with the endpoint.
  absl::Status MoveLeader(size_t index, uint64_t target_member_id);
  // Streams Maintenance.Snapshot into `sink` from the first endpoint that answers (UNAVAILABLE
  // or a broken stream moves on to the next; the sink is restarted with Begin()). A stream
  // whose remaining_bytes do not add up, or that ends before remaining_bytes reaches 0, is
  // kDataLoss from that endpoint and also moves on. Errors as for Put; UNIMPLEMENTED from a
  // server without snapshot support is final.
  absl::StatusOr<SnapshotDownload> Snapshot(SnapshotSink* sink);

  uint64_t session_id() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace raftkv::cli
