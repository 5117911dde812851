#include "server/frontend/etcd/etcd_cluster.h"

#include <cstdlib>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

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

}  // namespace

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
  if (req->peerurls_size() != 1) {
    return InvalidArgument("member add needs exactly one peer URL (http://ip:grpc_port)");
  }
  MembershipChange change;
  change.kind = MembershipChange::Kind::kAddLearner;
  if (absl::Status s = ParsePeerUrl(req->peerurls(0), &change); !s.ok()) return s_->ToGrpc(s);
  change.port = req->raftkv_client_port();
  absl::StatusOr<uint64_t> id = Change(context, change, resp);
  if (!id.ok()) return s_->ToGrpc(id.status());
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
  absl::StatusOr<MembershipChange> change =
      ChangeOf(MembershipChange::Kind::kPromote, req->id());
  if (!change.ok()) return s_->ToGrpc(change.status());
  return s_->ToGrpc(Change(context, *change, resp).status());
}

grpc::Status EtcdCluster::MemberRemove(grpc::ServerContext* context,
                                       const pb::MemberRemoveRequest* req,
                                       pb::MemberRemoveResponse* resp) {
  absl::StatusOr<MembershipChange> change =
      ChangeOf(MembershipChange::Kind::kRemove, req->id());
  if (!change.ok()) return s_->ToGrpc(change.status());
  return s_->ToGrpc(Change(context, *change, resp).status());
}

grpc::Status EtcdCluster::MemberUpdate(grpc::ServerContext* context,
                                       const pb::MemberUpdateRequest* req,
                                       pb::MemberUpdateResponse* resp) {
  if (req->peerurls_size() != 1) {
    return InvalidArgument("member update needs exactly one peer URL (http://ip:grpc_port)");
  }
  absl::StatusOr<MembershipChange> change = ChangeOf(MembershipChange::Kind::kUpdate, req->id());
  if (!change.ok()) return s_->ToGrpc(change.status());
  if (absl::Status s = ParsePeerUrl(req->peerurls(0), &*change); !s.ok()) return s_->ToGrpc(s);
  change->port = req->raftkv_client_port();
  return s_->ToGrpc(Change(context, *change, resp).status());
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
