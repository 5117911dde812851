// RecordCache: the records of recently used keys, as the store holds them, so that evaluating
// a write need not read the store (a RocksDB Get was the largest part of applying a write: a
// skiplist search of the memtable, then the SST files, for every Put on every replica).
//
// A bounded map from a key to the bytes stored under it, or to "absent"; the least recently
// used entries go first once their charge (key, value and a fixed overhead per entry) passes
// the capacity. Capacity 0: nothing is kept. It never reads the store itself: its owner puts
// what it read and what it wrote, after the write succeeded, and clears it whenever the
// store changes by another way (a snapshot installed, an import). Not thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <optional>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"

namespace raftkv::kv {

class RecordCache {
 public:
  explicit RecordCache(size_t capacity_bytes) : capacity_(capacity_bytes) {}
  RecordCache(const RecordCache&) = delete;
  RecordCache& operator=(const RecordCache&) = delete;

  // The cached bytes of `key` (nullopt inside: known absent), or null if it is not cached.
  // Marks it used. The pointer is valid until the next Put or Clear.
  const std::optional<std::string>* Find(std::string_view key);
  // Caches `value` (nullopt: absent) for `key`, replacing what was cached. An entry larger
  // than the whole capacity is not kept (and what was cached for the key is dropped).
  void Put(std::string_view key, std::optional<std::string> value);
  void Clear();

  size_t capacity() const { return capacity_; }
  size_t bytes() const { return bytes_; }  // the charge of what is cached
  size_t size() const { return index_.size(); }

  // Charged per entry besides its key and value: the list node, the map slot, two strings.
  static constexpr size_t kEntryOverhead = 128;

 private:
  struct Entry {
    std::string key;
    std::optional<std::string> value;
    size_t Charge() const { return kEntryOverhead + key.size() + (value ? value->size() : 0); }
  };
  void EvictToCapacity();

  const size_t capacity_;
  size_t bytes_ = 0;
  std::list<Entry> lru_;  // most recently used first
  // Keys view the entries' own strings (list nodes do not move).
  absl::flat_hash_map<std::string_view, std::list<Entry>::iterator> index_;
};

}  // namespace raftkv::kv
