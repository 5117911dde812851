// On-disk encodings of the RocksDB state machine (src/kv/rocksdb_state_machine.cc).
//
// All integers are fixed-width little-endian; int64 fields are stored as their two's
// complement uint64. Every record starts with a one-byte record format (kRecordFormatV1) so
// the layout can change later without guessing.
//
// Column family "default" (user data):
//   key   = the user key, raw bytes (binary-safe, may be empty)
//   value = KeyRecord:
//     u8      record_format      = 1
//     fixed64 create_revision    revision of the put that created the key (since last delete)
//     fixed64 mod_revision       revision of the last put
//     fixed64 version            puts since creation (1 for a new key)
//     bytes   value              the rest of the RocksDB value (may be empty, may hold NUL)
//   => 25 bytes + len(value).
//
// Column family "meta":
//   "format"   -> fixed32 store_format = kStoreFormat (written once, when the store is created)
//   "applied"  -> AppliedRecord:
//     u8      record_format      = 1
//     fixed64 applied_index
//     fixed64 applied_term
//     fixed64 revision           store revision after applied_index
//   => exactly 25 bytes.
//   "s" + fixed64 client_id -> SessionRecord:
//     u8      record_format      = 1
//     fixed64 last_sequence      highest sequence applied for this client
//     fixed64 last_index         log index of the entry that applied it
//   => exactly 17 bytes.
//
// Decoders return kDataLoss on any size or format mismatch: a record we wrote ourselves that
// does not parse means the store is corrupt.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace raftkv::kv::coding {

inline constexpr uint8_t kRecordFormatV1 = 1;
inline constexpr uint32_t kStoreFormat = 1;

inline constexpr size_t kKeyRecordHeaderBytes = 1 + 8 * 3;
inline constexpr size_t kAppliedRecordBytes = 1 + 8 * 3;
inline constexpr size_t kSessionRecordBytes = 1 + 8 * 2;

inline constexpr std::string_view kMetaFormatKey = "format";
inline constexpr std::string_view kMetaAppliedKey = "applied";
inline constexpr char kMetaSessionPrefix = 's';

struct KeyRecord {
  int64_t create_revision = 0;
  int64_t mod_revision = 0;
  int64_t version = 0;
  std::string value;

  bool operator==(const KeyRecord&) const = default;
};

struct AppliedRecord {
  uint64_t applied_index = 0;
  uint64_t applied_term = 0;
  int64_t revision = 0;

  bool operator==(const AppliedRecord&) const = default;
};

struct SessionRecord {
  uint64_t last_sequence = 0;
  uint64_t last_index = 0;

  bool operator==(const SessionRecord&) const = default;
};

std::string EncodeKeyRecord(const KeyRecord& r);
// keys_only: skip copying the value (the header is still checked).
absl::StatusOr<KeyRecord> DecodeKeyRecord(std::string_view data, bool keys_only = false);

std::string EncodeAppliedRecord(const AppliedRecord& r);
absl::StatusOr<AppliedRecord> DecodeAppliedRecord(std::string_view data);

std::string EncodeSessionRecord(const SessionRecord& r);
absl::StatusOr<SessionRecord> DecodeSessionRecord(std::string_view data);

std::string SessionKey(uint64_t client_id);
// Returns false if `key` is not a session key.
bool ParseSessionKey(std::string_view key, uint64_t* client_id);

std::string EncodeStoreFormat(uint32_t format);
absl::StatusOr<uint32_t> DecodeStoreFormat(std::string_view data);

}  // namespace raftkv::kv::coding
