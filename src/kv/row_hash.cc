#include "kv/row_hash.h"

#include "base/coding.h"

namespace raftkv::kv {
namespace {

constexpr uint64_t kFnvOffset = 0xcbf29ce484222325ULL;
constexpr uint64_t kFnvPrime = 0x100000001b3ULL;

uint64_t Fnv(uint64_t h, const char* p, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    h ^= static_cast<uint8_t>(p[i]);
    h *= kFnvPrime;
  }
  return h;
}

uint64_t FnvFixed64(uint64_t h, uint64_t v) {
  char buf[8];
  base::EncodeFixed64(buf, v);
  return Fnv(h, buf, sizeof(buf));
}

uint64_t Mix64(uint64_t z) {
  z ^= z >> 30;
  z *= 0xbf58476d1ce4e5b9ULL;
  z ^= z >> 27;
  z *= 0x94d049bb133111ebULL;
  z ^= z >> 31;
  return z;
}

}  // namespace

uint64_t RowHash(std::string_view key, std::string_view value, int64_t create_revision,
                 int64_t mod_revision, int64_t version) {
  uint64_t h = kFnvOffset;
  h = FnvFixed64(h, key.size());
  h = Fnv(h, key.data(), key.size());
  h = FnvFixed64(h, value.size());
  h = Fnv(h, value.data(), value.size());
  h = FnvFixed64(h, static_cast<uint64_t>(create_revision));
  h = FnvFixed64(h, static_cast<uint64_t>(mod_revision));
  h = FnvFixed64(h, static_cast<uint64_t>(version));
  return Mix64(h);
}

uint64_t SessionHash(uint64_t client_id, uint64_t last_sequence, uint64_t last_index,
                     std::string_view record) {
  uint64_t h = kFnvOffset;
  h = FnvFixed64(h, client_id);
  h = FnvFixed64(h, last_sequence);
  h = FnvFixed64(h, last_index);
  h = FnvFixed64(h, record.size());
  h = Fnv(h, record.data(), record.size());
  return Mix64(h);
}

}  // namespace raftkv::kv
