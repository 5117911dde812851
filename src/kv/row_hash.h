// The per-row hashes behind the snapshot checksums (sqlite_snapshot.h). A checksum is the sum
// of its rows' hashes mod 2^64, so a backup can keep it up to date incrementally (subtract the
// old row's hash, add the new one) and row order does not matter.
//
// Definition (stable across builds and hosts; another tool can recompute it):
//   RowHash(key, value, create, mod, version) =
//     Mix64(Fnv1a64(fixed64(len(key)) key fixed64(len(value)) value
//                   fixed64(create) fixed64(mod) fixed64(version)))
//   SessionHash(client_id, last_sequence, last_index, record) =
//     Mix64(Fnv1a64(fixed64(client_id) fixed64(last_sequence) fixed64(last_index)
//                   fixed64(len(record)) record))
// fixed64 = 8 bytes little-endian (int64 as two's complement); Fnv1a64 is FNV-1a 64-bit
// (offset basis 0xcbf29ce484222325, prime 0x100000001b3); Mix64 is the splitmix64 finalizer,
// which spreads FNV's weak high bits so that sums of hashes of similar rows stay distinct.
#pragma once

#include <cstdint>
#include <string_view>

namespace raftkv::kv {

uint64_t RowHash(std::string_view key, std::string_view value, int64_t create_revision,
                 int64_t mod_revision, int64_t version);
uint64_t SessionHash(uint64_t client_id, uint64_t last_sequence, uint64_t last_index,
                     std::string_view record);

}  // namespace raftkv::kv
