#include "server/frontend/etcd/etcd_kv.h"

#include <set>
#include <string>
#include <vector>

#include "server/frontend/etcd/etcd_range.h"

namespace raftkv::server::etcd {
namespace {

// Validates one put of a Put or Txn request against what we support.
grpc::Status CheckPut(const pb::PutRequest& put) {
  if (put.lease() != 0) return Unimplemented("leases are not supported");
  if (put.ignore_value() || put.ignore_lease()) {
    return Unimplemented("ignore_value / ignore_lease are not supported");
  }
  return grpc::Status::OK;
}

grpc::Status CheckDelete(const pb::DeleteRangeRequest& del) {
  if (del.key().empty()) return InvalidArgument("key is not provided");
  if (del.prev_kv() && !del.range_end().empty()) {
    return Unimplemented("prev_kv is supported only for single-key deletes");
  }
  return grpc::Status::OK;
}

void FillDeleteResponse(const pb::DeleteRangeRequest& req, const kv::OpResult& op,
                        pb::DeleteRangeResponse* resp) {
  resp->set_deleted(op.deleted);
  if (req.prev_kv() && op.prev.has_value()) FillKv(*op.prev, resp->add_prev_kvs());
}

}  // namespace

grpc::ServerUnaryReactor* EtcdKv::Range(grpc::CallbackServerContext* context,
                                        const pb::RangeRequest* req, pb::RangeResponse* resp) {
  if (req->key().empty()) {
    return AsyncUnary::FinishNow(context, InvalidArgument("key is not provided"));
  }
  if (req->limit() < 0) {
    return AsyncUnary::FinishNow(context, InvalidArgument("limit must not be negative"));
  }
  const bool full_scan = NeedsFullScan(*req);
  const bool reads_kvs = full_scan || !req->count_only();
  // A sorted/filtered range is read whole (limit applies afterwards). Either way read at
  // most max_range_keys + 1 so an over-large answer is refused without loading all of it.
  const int64_t max_keys = s_->options().max_range_keys;
  int64_t read_limit = full_scan ? 0 : req->limit();
  if (reads_kvs && (read_limit == 0 || read_limit > max_keys)) read_limit = max_keys + 1;
  std::shared_ptr<AsyncUnary> call = s_->StartCall(context, /*write=*/false);
  const uint64_t term = s_->replicator()->Status().term;
  s_->kv()->Range(
      req->key(), req->range_end(), read_limit, req->keys_only(), !reads_kvs,
      [this, call, req, resp, term, full_scan, reads_kvs,
       max_keys](absl::StatusOr<kv::RangeResult> result) {
        if (!call->Claim()) return;
        call->Finish(AnswerRange(*req, std::move(result), term, full_scan, reads_kvs, max_keys,
                                 resp));
      });
  return call->reactor();
}

grpc::Status EtcdKv::AnswerRange(const pb::RangeRequest& req,
                                 absl::StatusOr<kv::RangeResult> result, uint64_t term,
                                 bool full_scan, bool reads_kvs, int64_t max_keys,
                                 pb::RangeResponse* resp) const {
  if (!result.ok()) return s_->ToGrpc(result.status());
  if (reads_kvs && result->kvs.size() > static_cast<size_t>(max_keys)) {
    return grpc::Status(
        grpc::StatusCode::RESOURCE_EXHAUSTED,
        absl::StrFormat("range holds %d keys, more than one response may carry (%d, "
                        "max_range_keys); set a limit or narrow the range",
                        result->count, max_keys));
  }
  if (req.revision() > 0 && req.revision() != result->revision) {
    if (req.revision() > result->revision) {
      return grpc::Status(grpc::StatusCode::OUT_OF_RANGE,
                          absl::StrFormat("required revision %d is a future revision "
                                          "(current revision %d)",
                                          req.revision(), result->revision));
    }
    return grpc::Status(grpc::StatusCode::OUT_OF_RANGE,
                        absl::StrFormat("historical reads not supported (requested revision "
                                        "%d, current revision %d)",
                                        req.revision(), result->revision));
  }
  s_->FillHeader(result->revision, term, resp->mutable_header());
  resp->set_count(result->count);
  std::vector<kv::KeyValue> kvs = std::move(result->kvs);
  bool more = result->more;
  if (full_scan) more = FilterSortLimit(req, &kvs);
  if (!req.count_only() && AddKvsWithinBytes(kvs, s_->options().max_range_bytes, resp)) {
    more = true;
  }
  resp->set_more(more);
  return grpc::Status::OK;
}

grpc::ServerUnaryReactor* EtcdKv::Put(grpc::CallbackServerContext* context,
                                      const pb::PutRequest* req, pb::PutResponse* resp) {
  if (grpc::Status s = CheckPut(*req); !s.ok()) return AsyncUnary::FinishNow(context, s);
  absl::StatusOr<WriteSession> session = Shared::SessionOf(context);
  if (!session.ok()) return AsyncUnary::FinishNow(context, ToGrpcStatus(session.status()));
  session->keep_prev = req->prev_kv();
  std::shared_ptr<AsyncUnary> call = s_->StartCall(context, /*write=*/true);
  const uint64_t term = s_->replicator()->Status().term;
  s_->kv()->Put(
      req->key(), req->value(),
      [this, call, context, req, resp, term](absl::StatusOr<kv::ApplyResult> result) {
        if (!call->Claim()) return;
        if (!result.ok()) return call->Finish(s_->WriteError(context, result.status()));
        s_->FillHeader(result->revision, term, resp->mutable_header());
        if (req->prev_kv() && !result->ops.empty() && result->ops[0].prev.has_value()) {
          FillKv(*result->ops[0].prev, resp->mutable_prev_kv());
        }
        call->Finish(grpc::Status::OK);
      },
      *session);
  return call->reactor();
}

grpc::ServerUnaryReactor* EtcdKv::DeleteRange(grpc::CallbackServerContext* context,
                                              const pb::DeleteRangeRequest* req,
                                              pb::DeleteRangeResponse* resp) {
  if (grpc::Status s = CheckDelete(*req); !s.ok()) return AsyncUnary::FinishNow(context, s);
  absl::StatusOr<WriteSession> session = Shared::SessionOf(context);
  if (!session.ok()) return AsyncUnary::FinishNow(context, ToGrpcStatus(session.status()));
  session->keep_prev = req->prev_kv();
  std::shared_ptr<AsyncUnary> call = s_->StartCall(context, /*write=*/true);
  const uint64_t term = s_->replicator()->Status().term;
  s_->kv()->Delete(
      req->key(), req->range_end(),
      [this, call, context, req, resp, term](absl::StatusOr<kv::ApplyResult> result) {
        if (!call->Claim()) return;
        if (!result.ok()) return call->Finish(s_->WriteError(context, result.status()));
        if (result->ops.size() != 1) {
          return call->Finish(
              grpc::Status(grpc::StatusCode::INTERNAL, "state machine returned no op result"));
        }
        s_->FillHeader(result->revision, term, resp->mutable_header());
        FillDeleteResponse(*req, result->ops[0], resp);
        call->Finish(grpc::Status::OK);
      },
      *session);
  return call->reactor();
}

grpc::ServerUnaryReactor* EtcdKv::Txn(grpc::CallbackServerContext* context,
                                      const pb::TxnRequest* req, pb::TxnResponse* resp) {
  absl::StatusOr<kvpb::Command> cmd = TxnCommand(*req);
  if (!cmd.ok()) return AsyncUnary::FinishNow(context, ToGrpcStatus(cmd.status()));
  resp->set_succeeded(true);
  if (cmd->ops_size() == 0) {
    s_->FillHeader(s_->replicator()->Status().revision, resp->mutable_header());
    return AsyncUnary::FinishNow(context, grpc::Status::OK);
  }
  absl::StatusOr<WriteSession> session = Shared::SessionOf(context);
  if (!session.ok()) return AsyncUnary::FinishNow(context, ToGrpcStatus(session.status()));
  session->keep_prev = true;  // a txn's puts may ask for prev_kv one by one
  std::shared_ptr<AsyncUnary> call = s_->StartCall(context, /*write=*/true);
  const uint64_t term = s_->replicator()->Status().term;
  s_->kv()->Write(
      *std::move(cmd),
      [this, call, context, req, resp, term](absl::StatusOr<kv::ApplyResult> result) {
        if (!call->Claim()) return;
        if (!result.ok()) return call->Finish(s_->WriteError(context, result.status()));
        call->Finish(AnswerTxn(*req, *result, term, resp));
      },
      *session);
  return call->reactor();
}

absl::StatusOr<kvpb::Command> EtcdKv::TxnCommand(const pb::TxnRequest& req) {
  if (req.compare_size() > 0) {
    return absl::UnimplementedError(
        "Txn with compare is not supported: compares are not evaluated inside the state "
        "machine, so compare-then-write would not be atomic");
  }
  // With no compares the success branch always runs.
  kvpb::Command cmd;
  std::set<std::string> put_keys;
  for (const pb::RequestOp& op : req.success()) {
    if (op.has_request_put()) {
      const pb::PutRequest& put = op.request_put();
      if (grpc::Status s = CheckPut(put); !s.ok()) return FromGrpcStatus(s);
      if (!put_keys.insert(put.key()).second) {
        return absl::InvalidArgumentError("duplicate key given in txn request");
      }
      kvpb::Put* out = cmd.add_ops()->mutable_put();
      out->set_key(put.key());
      out->set_value(put.value());
    } else if (op.has_request_delete_range()) {
      const pb::DeleteRangeRequest& del = op.request_delete_range();
      if (grpc::Status s = CheckDelete(del); !s.ok()) return FromGrpcStatus(s);
      kvpb::Delete* out = cmd.add_ops()->mutable_delete_();
      out->set_key(del.key());
      out->set_range_end(del.range_end());
    } else {
      return absl::UnimplementedError("Txn supports only put and delete_range operations");
    }
  }
  // etcd forbids a txn that writes one key twice; a delete range covering a put key counts.
  for (const pb::RequestOp& op : req.success()) {
    if (!op.has_request_delete_range()) continue;
    const pb::DeleteRangeRequest& del = op.request_delete_range();
    for (const std::string& key : put_keys) {
      if (InRange(del.key(), del.range_end(), key)) {
        return absl::InvalidArgumentError("duplicate key given in txn request");
      }
    }
  }
  return cmd;
}

grpc::Status EtcdKv::AnswerTxn(const pb::TxnRequest& req, const kv::ApplyResult& result,
                               uint64_t term, pb::TxnResponse* resp) const {
  if (result.ops.size() != static_cast<size_t>(req.success_size())) {
    return grpc::Status(grpc::StatusCode::INTERNAL,
                        "state machine returned a result count unlike the op count");
  }
  s_->FillHeader(result.revision, term, resp->mutable_header());
  for (int i = 0; i < req.success_size(); ++i) {
    const pb::RequestOp& op = req.success(i);
    const kv::OpResult& op_result = result.ops[i];
    pb::ResponseOp* out = resp->add_responses();
    if (op.has_request_put()) {
      pb::PutResponse* put = out->mutable_response_put();
      s_->FillHeader(result.revision, term, put->mutable_header());
      if (op.request_put().prev_kv() && op_result.prev.has_value()) {
        FillKv(*op_result.prev, put->mutable_prev_kv());
      }
    } else {
      pb::DeleteRangeResponse* del = out->mutable_response_delete_range();
      s_->FillHeader(result.revision, term, del->mutable_header());
      FillDeleteResponse(op.request_delete_range(), op_result, del);
    }
  }
  return grpc::Status::OK;
}

}  // namespace raftkv::server::etcd
