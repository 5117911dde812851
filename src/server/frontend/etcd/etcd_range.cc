#include "server/frontend/etcd/etcd_range.h"

#include <algorithm>
#include <utility>

namespace raftkv::server::etcd {

namespace pb = etcdserverpb;

bool InRange(const std::string& key, const std::string& range_end, const std::string& k) {
  if (range_end.empty()) return k == key;
  if (range_end == std::string(1, '\0')) return k >= key;
  return k >= key && k < range_end;
}

bool NeedsFullScan(const pb::RangeRequest& r) {
  bool by_key_ascending = r.sort_target() == pb::RangeRequest::KEY &&
                          r.sort_order() != pb::RangeRequest::DESCEND;
  return !by_key_ascending || r.min_mod_revision() != 0 || r.max_mod_revision() != 0 ||
         r.min_create_revision() != 0 || r.max_create_revision() != 0;
}

bool PassesFilters(const pb::RangeRequest& r, const kv::KeyValue& kv) {
  if (r.min_mod_revision() > 0 && kv.mod_revision < r.min_mod_revision()) return false;
  if (r.max_mod_revision() > 0 && kv.mod_revision > r.max_mod_revision()) return false;
  if (r.min_create_revision() > 0 && kv.create_revision < r.min_create_revision()) return false;
  if (r.max_create_revision() > 0 && kv.create_revision > r.max_create_revision()) return false;
  return true;
}

void SortKvs(const pb::RangeRequest& r, std::vector<kv::KeyValue>* kvs) {
  bool descending = r.sort_order() == pb::RangeRequest::DESCEND;
  auto field_less = [&r](const kv::KeyValue& a, const kv::KeyValue& b) {
    switch (r.sort_target()) {
      case pb::RangeRequest::VERSION: return a.version < b.version;
      case pb::RangeRequest::CREATE: return a.create_revision < b.create_revision;
      case pb::RangeRequest::MOD: return a.mod_revision < b.mod_revision;
      case pb::RangeRequest::VALUE: return a.value < b.value;
      default: return a.key < b.key;
    }
  };
  // Input is in key order; a stable sort keeps key order among equal fields.
  if (descending) {
    std::stable_sort(kvs->begin(), kvs->end(), [&](const kv::KeyValue& a, const kv::KeyValue& b) {
      return field_less(b, a);
    });
  } else {
    std::stable_sort(kvs->begin(), kvs->end(), field_less);
  }
}

bool FilterSortLimit(const pb::RangeRequest& r, std::vector<kv::KeyValue>* kvs) {
  kvs->erase(std::remove_if(kvs->begin(), kvs->end(),
                            [&r](const kv::KeyValue& kv) { return !PassesFilters(r, kv); }),
             kvs->end());
  SortKvs(r, kvs);
  if (r.limit() > 0 && kvs->size() > static_cast<size_t>(r.limit())) {
    kvs->resize(r.limit());
    return true;
  }
  return false;
}

bool AddKvsWithinBytes(const std::vector<kv::KeyValue>& kvs, int64_t max_bytes,
                       etcdserverpb::RangeResponse* resp) {
  int64_t bytes = 0;
  for (size_t i = 0; i < kvs.size(); ++i) {
    mvccpb::KeyValue* out = resp->add_kvs();
    FillKv(kvs[i], out);
    // The field's tag and length prefix: at most 1 + 5 bytes for a message under 4 GiB.
    bytes += static_cast<int64_t>(out->ByteSizeLong()) + 6;
    if (bytes > max_bytes && i > 0) {
      resp->mutable_kvs()->RemoveLast();
      return true;
    }
  }
  return false;
}

}  // namespace raftkv::server::etcd
