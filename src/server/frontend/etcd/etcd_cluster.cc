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
  absl::StatusOr<uint64_t> id = s_->AwaitMembership(context, change);
  if (!id.ok()) return s_->ToGrpc(id.status());
  FillMembers(resp->mutable_header(), resp->mutable_members());
  for (const pb::Member& m : resp->members()) {
    if (m.id() == *id) *resp->mutable_member() = m;
  }
  if (!resp->has_member()) {  // removed again meanwhile: say what was added
    resp->mutable_member()->set_id(*id);
    resp->mutable_member()->add_peerurls(req->peerurls(0));
    resp->mutable_member()->set_islearner(true);
  }
  return grpc::Status::OK;
}

grpc::Status EtcdCluster::MemberPromote(grpc::ServerContext* context,
                                        const pb::MemberPromoteRequest* req,
                                        pb::MemberPromoteResponse* resp) {
  MembershipChange change;
  change.kind = MembershipChange::Kind::kPromote;
  change.raft_id = req->id();
  if (change.raft_id == 0) return InvalidArgument("member id 0 is not a member");
  absl::StatusOr<uint64_t> id = s_->AwaitMembership(context, change);
  if (!id.ok()) return s_->ToGrpc(id.status());
  FillMembers(resp->mutable_header(), resp->mutable_members());
  return grpc::Status::OK;
}

grpc::Status EtcdCluster::MemberRemove(grpc::ServerContext* context,
                                       const pb::MemberRemoveRequest* req,
                                       pb::MemberRemoveResponse* resp) {
  MembershipChange change;
  change.kind = MembershipChange::Kind::kRemove;
  change.raft_id = req->id();
  if (change.raft_id == 0) return InvalidArgument("member id 0 is not a member");
  absl::StatusOr<uint64_t> id = s_->AwaitMembership(context, change);
  if (!id.ok()) return s_->ToGrpc(id.status());
  FillMembers(resp->mutable_header(), resp->mutable_members());
  return grpc::Status::OK;
}

grpc::Status EtcdCluster::MemberUpdate(grpc::ServerContext* context,
                                       const pb::MemberUpdateRequest* req,
                                       pb::MemberUpdateResponse* resp) {
  if (req->peerurls_size() != 1) {
    return InvalidArgument("member update needs exactly one peer URL (http://ip:grpc_port)");
  }
  MembershipChange change;
  change.kind = MembershipChange::Kind::kUpdate;
  change.raft_id = req->id();
  if (change.raft_id == 0) return InvalidArgument("member id 0 is not a member");
  if (absl::Status s = ParsePeerUrl(req->peerurls(0), &change); !s.ok()) return s_->ToGrpc(s);
  change.port = req->raftkv_client_port();
  absl::StatusOr<uint64_t> id = s_->AwaitMembership(context, change);
  if (!id.ok()) return s_->ToGrpc(id.status());
  FillMembers(resp->mutable_header(), resp->mutable_members());
  return grpc::Status::OK;
}

}  // namespace raftkv::server::etcd
