// The pure part of etcd's KV.Range: which keys a request covers, its revision filters, its
// sort orders and its limit, applied to key-values read from the state machine. No I/O and
// no gRPC: unit-tested in tests/server/etcd_range_test.cc.
#pragma once

#include <string>
#include <vector>

#include "etcd/rpc.pb.h"
#include "kv/state_machine.h"

namespace raftkv::server::etcd {

inline void FillKv(const kv::KeyValue& in, mvccpb::KeyValue* out) {
  out->set_key(in.key);
  out->set_value(in.value);
  out->set_create_revision(in.create_revision);
  out->set_mod_revision(in.mod_revision);
  out->set_version(in.version);
}

// etcd range rules: an empty `range_end` means just `key`; "\0" means every key >= `key`;
// otherwise [key, range_end).
bool InRange(const std::string& key, const std::string& range_end, const std::string& k);

// Whether the request needs the whole range in memory (sorting other than by key ascending,
// or revision filters), so its limit applies after sorting and filtering.
bool NeedsFullScan(const etcdserverpb::RangeRequest& r);

// Whether `kv` passes the request's min/max mod/create revision filters (0 = no bound).
bool PassesFilters(const etcdserverpb::RangeRequest& r, const kv::KeyValue& kv);

// Sorts key-values given in key order by the request's sort target and order. As etcd: an
// order of NONE with a target other than KEY means ascending; equal fields keep key order.
void SortKvs(const etcdserverpb::RangeRequest& r, std::vector<kv::KeyValue>* kvs);

// A full scan's answer: the key-values of `kvs` (key order) that pass the filters, sorted,
// cut to the request's limit. Returns whether the limit cut any (the response's `more`).
bool FilterSortLimit(const etcdserverpb::RangeRequest& r, std::vector<kv::KeyValue>* kvs);

// Adds `kvs` in order to `resp` while their encoded size stays within `max_bytes` (the first
// one always: a single key-value is bounded by the key and value limits). Returns whether
// some were left out (the response's `more`).
bool AddKvsWithinBytes(const std::vector<kv::KeyValue>& kvs, int64_t max_bytes,
                       etcdserverpb::RangeResponse* resp);

}  // namespace raftkv::server::etcd
