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

std::string EncodeSessionRecord(const SessionRecord& r) {
  std::string out;
  out.reserve(kSessionRecordBytes);
  out.push_back(static_cast<char>(kRecordFormatV1));
  PutFixed64(&out, r.last_sequence);
  PutFixed64(&out, r.last_index);
  return out;
}

absl::StatusOr<SessionRecord> DecodeSessionRecord(std::string_view data) {
  if (data.size() != kSessionRecordBytes) {
    return absl::DataLossError(absl::StrFormat("session record is %d bytes, expected %d",
                                               data.size(), kSessionRecordBytes));
  }
  if (absl::Status s = CheckFormatByte(data, "session"); !s.ok()) return s;
  SessionRecord r;
  r.last_sequence = DecodeFixed64(data.data() + 1);
  r.last_index = DecodeFixed64(data.data() + 9);
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
