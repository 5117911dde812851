// etcd Cluster service: MemberList.
#pragma once

#include "server/frontend/etcd/etcd_shared.h"

namespace raftkv::server::etcd {

class EtcdCluster final : public pb::Cluster::Service {
 public:
  explicit EtcdCluster(const Shared* shared) : s_(shared) {}

  grpc::Status MemberList(grpc::ServerContext*, const pb::MemberListRequest*,
                          pb::MemberListResponse* resp) override;

 private:
  const Shared* s_;
};

}  // namespace raftkv::server::etcd
