#include "server/frontend/etcd/etcd_service.h"

#include "server/frontend/etcd/etcd_cluster.h"
#include "server/frontend/etcd/etcd_kv.h"
#include "server/frontend/etcd/etcd_maintenance.h"
#include "server/frontend/etcd/etcd_shared.h"

namespace raftkv::server {

class EtcdServices::Impl {
 public:
  Impl(KvService* kv, Replicator* replicator, uint64_t cluster_id, NodeId self,
       EtcdServiceOptions options)
      : shared(kv, replicator, cluster_id, self, std::move(options)),
        kv_service(&shared),
        maintenance(&shared),
        cluster(&shared) {}

  etcd::Shared shared;
  etcd::EtcdKv kv_service;
  etcd::EtcdMaintenance maintenance;
  etcd::EtcdCluster cluster;
};

EtcdServices::EtcdServices(KvService* kv, Replicator* replicator, uint64_t cluster_id,
                           NodeId self, EtcdServiceOptions options)
    : impl_(std::make_unique<Impl>(kv, replicator, cluster_id, self, std::move(options))) {}

EtcdServices::~EtcdServices() = default;

void EtcdServices::Register(grpc::ServerBuilder* builder) {
  builder->RegisterService(&impl_->kv_service);
  builder->RegisterService(&impl_->maintenance);
  builder->RegisterService(&impl_->cluster);
}

}  // namespace raftkv::server
