// On-disk format of WAL segments (docs/wal-format.md has the same grammar with examples).
//
// All integers are little-endian (base/coding.h). CRCs are CRC32C (base/crc32c.h), unmasked.
//
//   segment     := header start_record start_record body* seal?
//   header      := magic[8]="RKVWAL\r\n" version:u32=1 seq:u64 header_crc:u32      (24 bytes)
//                  header_crc = crc32c(magic ++ version ++ seq)
//   record      := length:u32 type:u8 crc:u32 payload[length]           (9-byte prefix)
//                  crc = crc32c(type ++ length ++ payload)   (type byte, then the 4 length
//                  bytes as stored, then the payload)
//   start_record:= the first two records of every segment: kHardState (the hard state when the
//                  segment was created), then kCompact or kSnapshot (the log start then).
//                  They make a segment replayable without the segments before it.
//   body        := kEntry | kHardState | kCompact | kSnapshot records, in write order.
//   seal        := one kSeal record (empty payload), the last record of every segment except
//                  possibly the newest; written and fsynced before the next segment exists.
//
// Record types and payloads:
//   1 kEntry     raftpb::Entry            append; an index <= the last replayed index first
//                                         discards that index and everything after it
//   2 kHardState raftpb::HardState        replaces the hard state
//   3 kCompact   raftpb::SnapshotMetadata entries <= index are dropped; the log starts after it
//   4 kSnapshot  raftpb::SnapshotMetadata all entries are dropped; the log restarts after it
//   5 kSeal      (empty)                  end of a sealed segment
//
// Segment files are named <seq:20 decimal digits>.wal; seq starts at 1 and increases by one
// per segment. A segment is written as <name>.tmp, fsynced, renamed, and the directory
// fsynced, so a file with a final name always has a complete, durable header and start
// records.
//
// Validity (what ParseSegment enforces):
//   - a bad header (short, wrong magic/version/crc) is kDataLoss in any segment;
//   - a "bad record" at offset X: fewer than 9 bytes left, the length runs past the end of the
//     file, an unknown type, or a crc mismatch;
//   - in the newest segment, a bad record at offset X is a TORN TAIL (truncate the file to X)
//     iff (a) X is after the two start records, (b) the segment is not sealed before X, and
//     (c) no valid record starts at any offset in (X, end of file). Otherwise kDataLoss.
//     (c) is what stops a damaged length field in the middle from passing as a torn tail.
//   - in any other segment every bad record is kDataLoss, and the last record must be kSeal.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace raftkv::raft::wal {

inline constexpr char kSegmentMagic[8] = {'R', 'K', 'V', 'W', 'A', 'L', '\r', '\n'};
inline constexpr uint32_t kFormatVersion = 1;
inline constexpr size_t kSegmentHeaderBytes = 24;
inline constexpr size_t kRecordHeaderBytes = 9;

enum class RecordType : uint8_t {
  kEntry = 1,
  kHardState = 2,
  kCompact = 3,
  kSnapshot = 4,
  kSeal = 5,
};
inline constexpr uint8_t kMaxRecordType = 5;

// "00000000000000000042.wal" for seq 42.
std::string SegmentFileName(uint64_t seq);
// The seq of a segment file name; nullopt for any other name (including "*.wal.tmp").
std::optional<uint64_t> ParseSegmentFileName(absl::string_view name);

// The 24-byte segment header.
std::string EncodeSegmentHeader(uint64_t seq);

// Appends one record (prefix and payload) to *dst.
void AppendRecord(std::string* dst, RecordType type, absl::string_view payload);

// Size of a record with a payload of payload_bytes.
inline uint64_t RecordBytes(uint64_t payload_bytes) {
  return kRecordHeaderBytes + payload_bytes;
}

struct Record {
  RecordType type;
  uint64_t offset;            // of the record's first byte in the file
  absl::string_view payload;  // points into the parsed buffer
};

// Where an entry's record lies, and the entry's term: what WalStorage keeps in memory for
// every entry of the log, so Term() never reads the disk and an entry whose payload is not
// cached can be read back with one pread.
struct EntryLocation {
  uint64_t term = 0;
  uint64_t seq = 0;            // the segment file
  uint64_t offset = 0;         // of the record's first byte in it
  uint32_t payload_bytes = 0;  // the entry's encoded size (the record is 9 bytes more)
  bool conf = false;           // an ENTRY_CONF entry (Compact keeps its configuration)
};

struct ParsedSegment {
  uint64_t seq = 0;
  std::vector<Record> records;  // all valid records, in file order
  uint64_t valid_bytes = 0;     // end of the last valid record
  bool torn = false;            // newest segment only: bytes after valid_bytes are a torn tail
  bool sealed = false;          // the last record is kSeal
};

// Parses and validates one segment (see the rules above). `name` is used in error messages;
// `is_newest` selects the torn-tail rule. The result's payloads point into `data`.
// Errors: kDataLoss naming the file and the offset of the damage.
absl::StatusOr<ParsedSegment> ParseSegment(absl::string_view data, const std::string& name,
                                           bool is_newest);

// Decodes the single record that `data` must hold exactly (a record read back from its known
// location: `offset` in segment `name`, both for error messages). The payload points into
// `data`. Errors: kDataLoss naming the file and the offset (a bad record, or `data` is not
// exactly one record).
absl::StatusOr<Record> DecodeRecord(absl::string_view data, const std::string& name,
                                    uint64_t offset);

}  // namespace raftkv::raft::wal
