#include "kv/record_coding.h"

#include "absl/strings/str_format.h"
#include "base/coding.h"

namespace raftkv::kv::coding {

using base::DecodeFixed32;
using base::DecodeFixed64;
using base::PutFixed32;
using base::PutFixed64;

namespace {

absl::Status CheckFormatByte(std::string_view data, std::string_view what) {
  if (data.empty()) return absl::DataLossError(absl::StrFormat("%s record is empty", what));
  const uint8_t format = static_cast<uint8_t>(data[0]);
  if (format != kRecordFormatV1) {
    return absl::DataLossError(
        absl::StrFormat("%s record has unknown format %d (expected %d)", what, format,
                        kRecordFormatV1));
  }
  return absl::OkStatus();
}

}  // namespace

std::string EncodeKeyRecord(const KeyRecord& r) {
  std::string out;
  out.reserve(kKeyRecordHeaderBytes + r.value.size());
  out.push_back(static_cast<char>(kRecordFormatV1));
  PutFixed64(&out, static_cast<uint64_t>(r.create_revision));
  PutFixed64(&out, static_cast<uint64_t>(r.mod_revision));
  PutFixed64(&out, static_cast<uint64_t>(r.version));
  out.append(r.value);
  return out;
}

absl::StatusOr<KeyRecord> DecodeKeyRecord(std::string_view data, bool keys_only) {
  if (data.size() < kKeyRecordHeaderBytes) {
    return absl::DataLossError(
        absl::StrFormat("key record is %d bytes, shorter than its %d-byte header", data.size(),
                        kKeyRecordHeaderBytes));
  }
  if (absl::Status s = CheckFormatByte(data, "key"); !s.ok()) return s;
  KeyRecord r;
  r.create_revision = static_cast<int64_t>(DecodeFixed64(data.data() + 1));
  r.mod_revision = static_cast<int64_t>(DecodeFixed64(data.data() + 9));
  r.version = static_cast<int64_t>(DecodeFixed64(data.data() + 17));
  if (r.create_revision <= 0 || r.mod_revision < r.create_revision || r.version <= 0) {
    return absl::DataLossError(absl::StrFormat(
        "key record has impossible revisions create=%d mod=%d version=%d", r.create_revision,
        r.mod_revision, r.version));
  }
  if (!keys_only) r.value.assign(data.substr(kKeyRecordHeaderBytes));
  return r;
}

std::string EncodeAppliedRecord(const AppliedRecord& r) {
  std::string out;
  out.reserve(kAppliedRecordBytes);
  out.push_back(static_cast<char>(kRecordFormatV1));
  PutFixed64(&out, r.applied_index);
  PutFixed64(&out, r.applied_term);
  PutFixed64(&out, static_cast<uint64_t>(r.revision));
  return out;
}

absl::StatusOr<AppliedRecord> DecodeAppliedRecord(std::string_view data) {
  if (data.size() != kAppliedRecordBytes) {
    return absl::DataLossError(absl::StrFormat("applied record is %d bytes, expected %d",
                                               data.size(), kAppliedRecordBytes));
  }
  if (absl::Status s = CheckFormatByte(data, "applied"); !s.ok()) return s;
  AppliedRecord r;
  r.applied_index = DecodeFixed64(data.data() + 1);
  r.applied_term = DecodeFixed64(data.data() + 9);
  r.revision = static_cast<int64_t>(DecodeFixed64(data.data() + 17));
  if (r.revision < 1) {
    return absl::DataLossError(absl::StrFormat("applied record has revision %d < 1", r.revision));
  }
  return r;
}

namespace {

// Reads fixed-width fields off the front of `data`; any short read sets `ok` false.
struct Reader {
  std::string_view data;
  bool ok = true;
  uint64_t U64() {
    if (data.size() < 8) return ok = false, 0;
    uint64_t v = DecodeFixed64(data.data());
    data.remove_prefix(8);
    return v;
  }
  uint32_t U32() {
    if (data.size() < 4) return ok = false, 0;
    uint32_t v = DecodeFixed32(data.data());
    data.remove_prefix(4);
    return v;
  }
  uint8_t U8() {
    if (data.empty()) return ok = false, 0;
    uint8_t v = static_cast<uint8_t>(data[0]);
    data.remove_prefix(1);
    return v;
  }
  std::string Bytes(uint32_t n) {
    if (data.size() < n) return ok = false, std::string();
    std::string v(data.substr(0, n));
    data.remove_prefix(n);
    return v;
  }
};

void PutBytes(std::string* out, std::string_view b) {
  PutFixed32(out, static_cast<uint32_t>(b.size()));
  out->append(b);
}

void PutBigEndian64(std::string* out, uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) out->push_back(static_cast<char>(v >> shift));
}

uint64_t DecodeBigEndian64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

}  // namespace

std::string EncodeApplyResult(const ApplyResult& r) {
  std::string out;
  out.push_back(static_cast<char>(kRecordFormatV1));
  PutFixed64(&out, static_cast<uint64_t>(r.revision));
  out.push_back(static_cast<char>(r.session_refused ? 1 : 0));
  PutFixed32(&out, static_cast<uint32_t>(r.ops.size()));
  for (const OpResult& op : r.ops) {
    PutFixed64(&out, static_cast<uint64_t>(op.deleted));
    out.push_back(static_cast<char>(op.prev ? 1 : 0));
    if (op.prev) {
      PutBytes(&out, op.prev->key);
      PutBytes(&out, op.prev->value);
      PutFixed64(&out, static_cast<uint64_t>(op.prev->create_revision));
      PutFixed64(&out, static_cast<uint64_t>(op.prev->mod_revision));
      PutFixed64(&out, static_cast<uint64_t>(op.prev->version));
    }
  }
  return out;
}

absl::StatusOr<ApplyResult> DecodeApplyResult(std::string_view data) {
  if (absl::Status s = CheckFormatByte(data, "apply result"); !s.ok()) return s;
  Reader in{data.substr(1)};
  ApplyResult r;
  r.revision = static_cast<int64_t>(in.U64());
  const uint8_t flags = in.U8();
  r.session_refused = (flags & 1) != 0;
  const uint32_t n = in.U32();
  for (uint32_t i = 0; in.ok && i < n; ++i) {
    OpResult op;
    op.deleted = static_cast<int64_t>(in.U64());
    if (in.U8() != 0) {
      KeyValue kv;
      kv.key = in.Bytes(in.U32());
      kv.value = in.Bytes(in.U32());
      kv.create_revision = static_cast<int64_t>(in.U64());
      kv.mod_revision = static_cast<int64_t>(in.U64());
      kv.version = static_cast<int64_t>(in.U64());
      op.prev = std::move(kv);
    }
    r.ops.push_back(std::move(op));
  }
  if (!in.ok || !in.data.empty() || flags > 1) {
    return absl::DataLossError(
        absl::StrFormat("apply result record of %d bytes does not parse", data.size()));
  }
  return r;
}

std::string EncodeSessionRecord(const SessionRecord& r) {
  std::string out;
  out.push_back(static_cast<char>(kSessionRecordFormat));
  PutFixed64(&out, r.last_sequence);
  PutFixed64(&out, r.last_index);
  PutFixed64(&out, r.first_kept);
  PutFixed32(&out, static_cast<uint32_t>(r.results.size()));
  for (const auto& [seq, result] : r.results) {
    PutFixed64(&out, seq);
    PutBytes(&out, result);
  }
  return out;
}

absl::StatusOr<SessionRecord> DecodeSessionRecord(std::string_view data) {
  if (data.empty() || static_cast<uint8_t>(data[0]) != kSessionRecordFormat) {
    return absl::DataLossError(absl::StrFormat(
        "session record has unknown format %d (expected %d)",
        data.empty() ? -1 : static_cast<uint8_t>(data[0]), kSessionRecordFormat));
  }
  Reader in{data.substr(1)};
  SessionRecord r;
  r.last_sequence = in.U64();
  r.last_index = in.U64();
  r.first_kept = in.U64();
  const uint32_t n = in.U32();
  uint64_t prev_seq = 0;
  bool ordered = true;
  for (uint32_t i = 0; in.ok && i < n; ++i) {
    uint64_t seq = in.U64();
    std::string result = in.Bytes(in.U32());
    if (seq < r.first_kept || seq > r.last_sequence || (i > 0 && seq <= prev_seq)) {
      ordered = false;
    }
    prev_seq = seq;
    r.results.emplace_back(seq, std::move(result));
  }
  if (!in.ok || !in.data.empty()) {
    return absl::DataLossError(
        absl::StrFormat("session record of %d bytes does not parse", data.size()));
  }
  if (!ordered) {
    return absl::DataLossError("session record holds results out of order or outside its window");
  }
  return r;
}

std::string SessionKey(uint64_t client_id) {
  std::string key(1, kMetaSessionPrefix);
  PutFixed64(&key, client_id);
  return key;
}

bool ParseSessionKey(std::string_view key, uint64_t* client_id) {
  if (key.size() != 9 || key[0] != kMetaSessionPrefix) return false;
  *client_id = DecodeFixed64(key.data() + 1);
  return true;
}

std::string SessionExpiryKey(uint64_t last_index, uint64_t client_id) {
  std::string key(1, kMetaSessionExpiryPrefix);
  PutBigEndian64(&key, last_index);
  PutBigEndian64(&key, client_id);
  return key;
}

bool ParseSessionExpiryKey(std::string_view key, uint64_t* last_index, uint64_t* client_id) {
  if (key.size() != 17 || key[0] != kMetaSessionExpiryPrefix) return false;
  *last_index = DecodeBigEndian64(key.data() + 1);
  *client_id = DecodeBigEndian64(key.data() + 9);
  return true;
}

std::string EncodeStoreFormat(uint32_t format) {
  std::string out;
  PutFixed32(&out, format);
  return out;
}

absl::StatusOr<uint32_t> DecodeStoreFormat(std::string_view data) {
  if (data.size() != 4) {
    return absl::DataLossError(
        absl::StrFormat("store format record is %d bytes, expected 4", data.size()));
  }
  return DecodeFixed32(data.data());
}

}  // namespace raftkv::kv::coding
