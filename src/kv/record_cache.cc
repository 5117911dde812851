#include "kv/record_cache.h"

#include <utility>

namespace raftkv::kv {

const std::optional<std::string>* RecordCache::Find(std::string_view key) {
  auto it = index_.find(key);
  if (it == index_.end()) return nullptr;
  lru_.splice(lru_.begin(), lru_, it->second);
  return &it->second->value;
}

void RecordCache::Put(std::string_view key, std::optional<std::string> value) {
  if (kEntryOverhead + key.size() + (value ? value->size() : 0) > capacity_) {
    // It would push out everything else and then itself: keep the others instead (and
    // forget what was cached for the key, which is no longer what the store holds).
    if (auto it = index_.find(key); it != index_.end()) {
      bytes_ -= it->second->Charge();
      lru_.erase(it->second);
      index_.erase(it);
    }
    return;
  }
  if (auto it = index_.find(key); it != index_.end()) {
    Entry& e = *it->second;
    bytes_ -= e.Charge();
    e.value = std::move(value);
    bytes_ += e.Charge();
    lru_.splice(lru_.begin(), lru_, it->second);
  } else {
    lru_.push_front(Entry{std::string(key), std::move(value)});
    index_.emplace(lru_.front().key, lru_.begin());
    bytes_ += lru_.front().Charge();
  }
  EvictToCapacity();
}

void RecordCache::Clear() {
  index_.clear();
  lru_.clear();
  bytes_ = 0;
}

void RecordCache::EvictToCapacity() {
  while (bytes_ > capacity_ && !lru_.empty()) {
    Entry& last = lru_.back();
    bytes_ -= last.Charge();
    index_.erase(last.key);
    lru_.pop_back();
  }
}

}  // namespace raftkv::kv
