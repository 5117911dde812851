#include "server/frontend/etcd/etcd_cluster.h"

#include <cstdlib>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "grpcpp/grpcpp.h"

namespace raftkv::server::etcd {
namespace {

// A peer URL "http://ip:port" (https too; no path) into `change`'s ip and grpc_port.
absl::Status ParsePeerUrl(const std::string& url, MembershipChange* change) {
  std::string rest = url;
  for (const char* scheme : {"http://", "https://"}) {
    if (rest.rfind(scheme, 0) == 0) rest = rest.substr(std::strlen(scheme));
  }
  if (rest.size() == url.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("peer URL ", url, " must look like http://ip:grpc_port"));
  }
  if (!rest.empty() && rest.back() == '/') rest.pop_back();
  const auto colon = rest.rfind(':');
  uint32_t port = 0;
  if (colon == std::string::npos || colon == 0 || rest.find('/') != std::string::npos ||
      !absl::SimpleAtoi(rest.substr(colon + 1), &port) || port == 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("peer URL ", url, " must look like http://ip:grpc_port"));
  }
  change->ip = rest.substr(0, colon);
  change->grpc_port = port;
  return absl::OkStatus();
}

// A change of the member with etcd member id `id` (server/node_id.h; 0 is etcd's "none").
absl::StatusOr<MembershipChange> ChangeOf(MembershipChange::Kind kind, uint64_t id) {
  if (id == 0) return absl::InvalidArgumentError("member id 0 is not a member");
  MembershipChange change;
  change.kind = kind;
  change.raft_id = NodeId::FromEtcdMemberId(id).raft_id();
  return change;
}

// Set on a change passed on to the leader: one hop only, so two nodes that each think the
// other leads never send it back and forth.
constexpr char kRelayedKey[] = "raftkv-member-change-relayed";

}  // namespace

template <typename Request, typename Response>
std::optional<grpc::Status> EtcdCluster::RelayToLeader(
    grpc::ServerContext* context, const Request& req, Response* resp,
    grpc::Status (pb::Cluster::Stub::*call)(grpc::ClientContext*, const Request&, Response*))
    const {
  if (context->client_metadata().count(kRelayedKey)) return std::nullopt;
  const NodeStatus status = s_->replicator()->Status();
  if (status.leader_id < 0 || static_cast<uint64_t>(status.leader_id) == status.id) {
    return std::nullopt;  // this node leads, or no leader is known: answered here
  }
  std::string address;
  for (const PeerStatus& peer : s_->replicator()->Members()) {
    if (peer.id == static_cast<uint64_t>(status.leader_id)) address = peer.grpc_address;
  }
  if (address.empty()) return std::nullopt;
  // The leader waits up to request_timeout_ms for the change to apply; a second more here,
  // so that its answer (not our own time-out, which would leave the outcome unmarked) comes
  // back.
  const auto deadline =
      std::min(context->deadline(),
               std::chrono::system_clock::now() +
                   std::chrono::milliseconds(s_->options().request_timeout_ms + 1000));
  // Membership changes are rare: a channel per change is fine. One that cannot connect
  // (the leader this node still believes in just died) is not used: the change is then
  // refused here as not applied (no leader), and the client tries again after the election.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_ENABLE_HTTP_PROXY, 0);  // gRPC honours http_proxy even for loopback
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
  if (!channel->WaitForConnected(std::min(
          deadline, std::chrono::system_clock::now() + std::chrono::seconds(1)))) {
    return std::nullopt;
  }
  pb::Cluster::Stub stub(channel);
  grpc::ClientContext relayed;
  relayed.AddMetadata(kRelayedKey, "1");
  relayed.set_deadline(deadline);
  grpc::Status st = (stub.*call)(&relayed, req, resp);
  // The leader's mark says whether a failed change was applied (etcd_shared.h, WriteError);
  // without it the client must take the outcome as unknown.
  const auto& trailers = relayed.GetServerTrailingMetadata();
  if (auto kind = trailers.find("raftkv-error-kind"); kind != trailers.end()) {
    context->AddTrailingMetadata("raftkv-error-kind",
                                 std::string(kind->second.data(), kind->second.size()));
  }
  if (st.ok() || st.error_code() != grpc::StatusCode::UNAVAILABLE) return st;
  return grpc::Status(st.error_code(), absl::StrCat("passed on to the leader at ", address,
                                                    ": ", st.error_message()));
}

void EtcdCluster::FillMembers(pb::ResponseHeader* header,
                              google::protobuf::RepeatedPtrField<pb::Member>* out) const {
  NodeStatus status = s_->replicator()->Status();
  s_->FillHeader(status.revision, status.term, header);
  for (const PeerStatus& peer : s_->replicator()->Members()) s_->FillMember(peer, out->Add());
}

grpc::Status EtcdCluster::MemberList(grpc::ServerContext*, const pb::MemberListRequest*,
                                     pb::MemberListResponse* resp) {
  FillMembers(resp->mutable_header(), resp->mutable_members());
  return grpc::Status::OK;
}

grpc::Status EtcdCluster::MemberAdd(grpc::ServerContext* context,
                                    const pb::MemberAddRequest* req,
                                    pb::MemberAddResponse* resp) {
  if (auto relayed = RelayToLeader(context, *req, resp, &pb::Cluster::Stub::MemberAdd)) {
    return *relayed;
  }
  if (req->peerurls_size() != 1) {
    return InvalidArgument("member add needs exactly one peer URL (http://ip:grpc_port)");
  }
  MembershipChange change;
  change.kind = MembershipChange::Kind::kAddLearner;
  if (absl::Status s = ParsePeerUrl(req->peerurls(0), &change); !s.ok()) return s_->ToGrpc(s);
  change.port = req->raftkv_client_port();
  absl::StatusOr<uint64_t> id = Change(context, change, resp);
  if (!id.ok()) return s_->WriteError(context, id.status());
  const uint64_t member_id = NodeId::FromRaftId(*id).etcd_member_id();
  for (const pb::Member& m : resp->members()) {
    if (m.id() == member_id) *resp->mutable_member() = m;
  }
  if (!resp->has_member()) {  // removed again meanwhile: say what was added
    resp->mutable_member()->set_id(member_id);
    resp->mutable_member()->add_peerurls(req->peerurls(0));
    resp->mutable_member()->set_islearner(true);
  }
  return grpc::Status::OK;
}

grpc::Status EtcdCluster::MemberPromote(grpc::ServerContext* context,
                                        const pb::MemberPromoteRequest* req,
                                        pb::MemberPromoteResponse* resp) {
  if (auto relayed = RelayToLeader(context, *req, resp, &pb::Cluster::Stub::MemberPromote)) {
    return *relayed;
  }
  absl::StatusOr<MembershipChange> change =
      ChangeOf(MembershipChange::Kind::kPromote, req->id());
  if (!change.ok()) return s_->ToGrpc(change.status());
  return s_->WriteError(context, Change(context, *change, resp).status());
}

grpc::Status EtcdCluster::MemberRemove(grpc::ServerContext* context,
                                       const pb::MemberRemoveRequest* req,
                                       pb::MemberRemoveResponse* resp) {
  if (auto relayed = RelayToLeader(context, *req, resp, &pb::Cluster::Stub::MemberRemove)) {
    return *relayed;
  }
  absl::StatusOr<MembershipChange> change =
      ChangeOf(MembershipChange::Kind::kRemove, req->id());
  if (!change.ok()) return s_->ToGrpc(change.status());
  return s_->WriteError(context, Change(context, *change, resp).status());
}

grpc::Status EtcdCluster::MemberUpdate(grpc::ServerContext* context,
                                       const pb::MemberUpdateRequest* req,
                                       pb::MemberUpdateResponse* resp) {
  if (auto relayed = RelayToLeader(context, *req, resp, &pb::Cluster::Stub::MemberUpdate)) {
    return *relayed;
  }
  if (req->peerurls_size() != 1) {
    return InvalidArgument("member update needs exactly one peer URL (http://ip:grpc_port)");
  }
  absl::StatusOr<MembershipChange> change = ChangeOf(MembershipChange::Kind::kUpdate, req->id());
  if (!change.ok()) return s_->ToGrpc(change.status());
  if (absl::Status s = ParsePeerUrl(req->peerurls(0), &*change); !s.ok()) return s_->ToGrpc(s);
  change->port = req->raftkv_client_port();
  return s_->WriteError(context, Change(context, *change, resp).status());
}

template <typename Response>
absl::StatusOr<uint64_t> EtcdCluster::Change(grpc::ServerContext* context,
                                             const MembershipChange& change,
                                             Response* resp) const {
  absl::StatusOr<uint64_t> id = s_->AwaitMembership(context, change);
  if (id.ok()) FillMembers(resp->mutable_header(), resp->mutable_members());
  return id;
}

}  // namespace raftkv::server::etcd
