#include "server/frontend/etcd/etcd_cluster.h"

namespace raftkv::server::etcd {

grpc::Status EtcdCluster::MemberList(grpc::ServerContext*, const pb::MemberListRequest*,
                                     pb::MemberListResponse* resp) {
  NodeStatus status = s_->replicator()->Status();
  s_->FillHeader(status.revision, status.term, resp->mutable_header());
  for (const PeerStatus& peer : s_->replicator()->Members()) {
    s_->FillMember(peer, resp->add_members());
  }
  return grpc::Status::OK;
}

}  // namespace raftkv::server::etcd
