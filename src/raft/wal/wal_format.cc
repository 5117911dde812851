#include "raft/wal/wal_format.h"

#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/coding.h"
#include "base/crc32c.h"

namespace raftkv::raft::wal {
namespace {

constexpr absl::string_view kSuffix = ".wal";
constexpr size_t kSeqDigits = 20;

uint32_t RecordCrc(uint8_t type, const char* length_bytes, absl::string_view payload) {
  const char t = static_cast<char>(type);
  uint32_t crc = base::crc32c::Extend(0, &t, 1);
  crc = base::crc32c::Extend(crc, length_bytes, 4);
  return base::crc32c::Extend(crc, payload.data(), payload.size());
}

// Why the bytes at `offset` are not a valid record, or "" if they are one (then *record is
// set).
std::string ReadRecord(absl::string_view data, uint64_t offset, Record* record) {
  const uint64_t left = data.size() - offset;
  if (left < kRecordHeaderBytes) return absl::StrCat("short record header (", left, " bytes)");
  const char* p = data.data() + offset;
  const uint32_t length = base::DecodeFixed32(p);
  const uint8_t type = static_cast<uint8_t>(p[4]);
  const uint32_t crc = base::DecodeFixed32(p + 5);
  if (length > left - kRecordHeaderBytes) {
    return absl::StrCat("record length ", length, " runs past the end of the file");
  }
  if (type == 0 || type > kMaxRecordType) return absl::StrCat("unknown record type ", type);
  const absl::string_view payload(p + kRecordHeaderBytes, length);
  if (RecordCrc(type, p, payload) != crc) return "record checksum mismatch";
  *record = Record{static_cast<RecordType>(type), offset, payload};
  return "";
}

absl::Status Corrupt(const std::string& name, uint64_t offset, absl::string_view why) {
  return absl::DataLossError(
      absl::StrCat("wal: corrupt segment ", name, " at offset ", offset, ": ", why));
}

}  // namespace

std::string SegmentFileName(uint64_t seq) { return absl::StrFormat("%020u.wal", seq); }

std::optional<uint64_t> ParseSegmentFileName(absl::string_view name) {
  if (name.size() != kSeqDigits + kSuffix.size()) return std::nullopt;
  if (name.substr(kSeqDigits) != kSuffix) return std::nullopt;
  const absl::string_view digits = name.substr(0, kSeqDigits);
  for (char c : digits) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return std::nullopt;
  }
  uint64_t seq = 0;
  if (!absl::SimpleAtoi(digits, &seq)) return std::nullopt;
  return seq;
}

std::string EncodeSegmentHeader(uint64_t seq) {
  std::string h(kSegmentMagic, sizeof(kSegmentMagic));
  base::PutFixed32(&h, kFormatVersion);
  base::PutFixed64(&h, seq);
  base::PutFixed32(&h, base::crc32c::Value(h.data(), h.size()));
  return h;
}

void AppendRecord(std::string* dst, RecordType type, absl::string_view payload) {
  char prefix[kRecordHeaderBytes];
  base::EncodeFixed32(prefix, static_cast<uint32_t>(payload.size()));
  prefix[4] = static_cast<char>(type);
  base::EncodeFixed32(prefix + 5, RecordCrc(static_cast<uint8_t>(type), prefix, payload));
  dst->append(prefix, sizeof(prefix));
  dst->append(payload.data(), payload.size());
}

absl::StatusOr<Record> DecodeRecord(absl::string_view data, const std::string& name,
                                    uint64_t offset) {
  Record rec;
  const std::string why = ReadRecord(data, 0, &rec);
  if (!why.empty()) return Corrupt(name, offset, why);
  if (RecordBytes(rec.payload.size()) != data.size()) {
    return Corrupt(name, offset,
                   absl::StrCat("record of ", RecordBytes(rec.payload.size()),
                                " bytes where one of ", data.size(), " was expected"));
  }
  rec.offset = offset;
  return rec;
}

absl::StatusOr<ParsedSegment> ParseSegment(absl::string_view data, const std::string& name,
                                           bool is_newest) {
  ParsedSegment seg;
  if (data.size() < kSegmentHeaderBytes) {
    return Corrupt(name, 0, absl::StrCat("short segment header (", data.size(), " bytes)"));
  }
  if (std::memcmp(data.data(), kSegmentMagic, sizeof(kSegmentMagic)) != 0) {
    return Corrupt(name, 0, "bad magic");
  }
  const uint32_t header_crc = base::DecodeFixed32(data.data() + 20);
  if (base::crc32c::Value(data.data(), 20) != header_crc) {
    return Corrupt(name, 20, "segment header checksum mismatch");
  }
  const uint32_t version = base::DecodeFixed32(data.data() + 8);
  if (version != kFormatVersion) {
    return Corrupt(name, 8, absl::StrCat("unsupported format version ", version));
  }
  seg.seq = base::DecodeFixed64(data.data() + 12);

  uint64_t offset = kSegmentHeaderBytes;
  while (offset < data.size()) {
    Record rec;
    const std::string why = ReadRecord(data, offset, &rec);
    if (why.empty()) {
      if (seg.sealed) return Corrupt(name, offset, "record after the seal");
      const size_t i = seg.records.size();
      if (i == 0 && rec.type != RecordType::kHardState) {
        return Corrupt(name, offset, "first record is not the start hard state");
      }
      if (i == 1 && rec.type != RecordType::kCompact && rec.type != RecordType::kSnapshot) {
        return Corrupt(name, offset, "second record is not the start log marker");
      }
      seg.records.push_back(rec);
      seg.sealed = rec.type == RecordType::kSeal;
      offset += RecordBytes(rec.payload.size());
      continue;
    }
    // A bad record. Only the tail of the newest segment may be torn (see the header).
    if (!is_newest) return Corrupt(name, offset, why);
    if (seg.records.size() < 2) return Corrupt(name, offset, why + " in the start records");
    if (seg.sealed) return Corrupt(name, offset, "bytes after the seal");
    for (uint64_t p = offset + 1; p + kRecordHeaderBytes <= data.size(); ++p) {
      Record later;
      if (ReadRecord(data, p, &later).empty()) {
        return Corrupt(name, offset,
                       absl::StrCat(why, ", yet a valid record follows at offset ", p));
      }
    }
    seg.torn = true;
    break;
  }
  seg.valid_bytes = offset;
  if (!is_newest && !seg.sealed) {
    return Corrupt(name, offset, "segment is not the newest but has no seal (truncated?)");
  }
  if (seg.records.size() < 2) {
    return Corrupt(name, offset, "segment ends inside its start records");
  }
  return seg;
}

}  // namespace raftkv::raft::wal
