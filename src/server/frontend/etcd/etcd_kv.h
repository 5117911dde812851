// etcd KV service: Range, Put, DeleteRange, Txn (etcd_service.h lists what is served), on
// gRPC's callback API: a handler starts the KvService operation and returns; the answer is
// sent from the operation's callback (server/grpc_async_unary.h), so no thread waits.
#pragma once

#include "server/frontend/etcd/etcd_shared.h"

namespace raftkv::server::etcd {

class EtcdKv final : public pb::KV::CallbackService {
 public:
  explicit EtcdKv(const Shared* shared) : s_(shared) {}

  grpc::ServerUnaryReactor* Range(grpc::CallbackServerContext* context,
                                  const pb::RangeRequest* req, pb::RangeResponse* resp) override;

  grpc::ServerUnaryReactor* Put(grpc::CallbackServerContext* context, const pb::PutRequest* req,
                                pb::PutResponse* resp) override;

  grpc::ServerUnaryReactor* DeleteRange(grpc::CallbackServerContext* context,
                                        const pb::DeleteRangeRequest* req,
                                        pb::DeleteRangeResponse* resp) override;

  // Only compare-free transactions of puts and deletes: they map onto one atomic command.
  grpc::ServerUnaryReactor* Txn(grpc::CallbackServerContext* context, const pb::TxnRequest* req,
                                pb::TxnResponse* resp) override;

 private:
  // The response to a Range whose read ended with `result`.
  grpc::Status AnswerRange(const pb::RangeRequest& req, absl::StatusOr<kv::RangeResult> result,
                           uint64_t term, bool full_scan, bool reads_kvs, int64_t max_keys,
                           pb::RangeResponse* resp) const;
  // The one command of a compare-free Txn, or why it is refused.
  static absl::StatusOr<kvpb::Command> TxnCommand(const pb::TxnRequest& req);
  grpc::Status AnswerTxn(const pb::TxnRequest& req, const kv::ApplyResult& result,
                         uint64_t term, pb::TxnResponse* resp) const;

  const Shared* s_;
};

}  // namespace raftkv::server::etcd
