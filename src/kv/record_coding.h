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
//   "s" + fixed64 client_id -> SessionRecord (exactly-once writes, rocksdb_state_machine.h):
//     u8      record_format      = 2 (format 1, without results, was never written)
//     fixed64 last_sequence      highest sequence applied for this client
//     fixed64 last_index         log index of the last entry that applied a command of it
//     fixed64 first_kept         sequences below this are refused (their results are gone)
//     fixed32 result_count       then, in ascending sequence order, that many times:
//       fixed64 sequence
//       fixed32 length, then `length` bytes: the ApplyResult (EncodeApplyResult below)
//   "x" + big-endian64 last_index + big-endian64 client_id -> "" : the expiry index (one per
//     session, ordered by last activity, so expiry finds the idlest sessions first).
//
// ApplyResult (stored per sequence, answered to a duplicate):
//     u8      record_format      = 1
//     fixed64 revision
//     u8      flags              bit 0: session_refused
//     fixed32 op_count, then per op: fixed64 deleted, u8 has_prev, and if has_prev:
//       fixed32 key length, key, fixed32 value length, value,
//       fixed64 create_revision, fixed64 mod_revision, fixed64 version
//
// Decoders return kDataLoss on any size or format mismatch: a record we wrote ourselves that
// does not parse means the store is corrupt.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kv/state_machine.h"

namespace raftkv::kv::coding {

inline constexpr uint8_t kRecordFormatV1 = 1;
inline constexpr uint32_t kStoreFormat = 1;

inline constexpr size_t kKeyRecordHeaderBytes = 1 + 8 * 3;
inline constexpr size_t kAppliedRecordBytes = 1 + 8 * 3;
inline constexpr uint8_t kSessionRecordFormat = 2;

inline constexpr std::string_view kMetaFormatKey = "format";
inline constexpr std::string_view kMetaAppliedKey = "applied";
inline constexpr char kMetaSessionPrefix = 's';
inline constexpr char kMetaSessionExpiryPrefix = 'x';

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
  uint64_t first_kept = 0;
  // (sequence, EncodeApplyResult bytes), ascending by sequence, every sequence >= first_kept.
  std::vector<std::pair<uint64_t, std::string>> results;

  bool operator==(const SessionRecord&) const = default;
};

std::string EncodeKeyRecord(const KeyRecord& r);
// keys_only: skip copying the value (the header is still checked).
absl::StatusOr<KeyRecord> DecodeKeyRecord(std::string_view data, bool keys_only = false);

std::string EncodeAppliedRecord(const AppliedRecord& r);
absl::StatusOr<AppliedRecord> DecodeAppliedRecord(std::string_view data);

std::string EncodeSessionRecord(const SessionRecord& r);
absl::StatusOr<SessionRecord> DecodeSessionRecord(std::string_view data);

std::string EncodeApplyResult(const ApplyResult& r);
absl::StatusOr<ApplyResult> DecodeApplyResult(std::string_view data);

std::string SessionKey(uint64_t client_id);
// The expiry index key of a session: sorts by (last_index, client_id).
std::string SessionExpiryKey(uint64_t last_index, uint64_t client_id);
// Returns false if `key` is not an expiry index key.
bool ParseSessionExpiryKey(std::string_view key, uint64_t* last_index, uint64_t* client_id);
// Returns false if `key` is not a session key.
bool ParseSessionKey(std::string_view key, uint64_t* client_id);

std::string EncodeStoreFormat(uint32_t format);
absl::StatusOr<uint32_t> DecodeStoreFormat(std::string_view data);

}  // namespace raftkv::kv::coding
