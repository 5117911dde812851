// etcd KV service: Range, Put, DeleteRange, Txn (etcd_service.h lists what is served).
#pragma once

#include "server/frontend/etcd/etcd_shared.h"

namespace raftkv::server::etcd {

class EtcdKv final : public pb::KV::Service {
 public:
  explicit EtcdKv(const Shared* shared) : s_(shared) {}

  grpc::Status Range(grpc::ServerContext* context, const pb::RangeRequest* req,
                     pb::RangeResponse* resp) override;

  grpc::Status Put(grpc::ServerContext* context, const pb::PutRequest* req,
                   pb::PutResponse* resp) override;

  grpc::Status DeleteRange(grpc::ServerContext* context, const pb::DeleteRangeRequest* req,
                           pb::DeleteRangeResponse* resp) override;

  // Only compare-free transactions of puts and deletes: they map onto one atomic command.
  grpc::Status Txn(grpc::ServerContext* context, const pb::TxnRequest* req,
                   pb::TxnResponse* resp) override;

 private:
  const Shared* s_;
};

}  // namespace raftkv::server::etcd
