// kvctl snapshot save / status without CLI11: fetching a snapshot into a file durably and
// checking snapshot files (kv/sqlite_snapshot.h format; a live backup.db works too).
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "cli/etcd_client.h"
#include "kv/sqlite_snapshot.h"

namespace raftkv::cli {

struct SaveResult {
  SnapshotDownload download;
  kv::SnapshotMeta meta;  // from the full verification of the received file
};

// Where SaveSnapshot failed, for the exit code.
enum class SaveStage {
  kFetch,   // no endpoint delivered a snapshot (or the server refused)
  kWrite,   // local file I/O failed
  kVerify,  // the received bytes are not a valid snapshot
};

struct SaveError {
  SaveStage stage = SaveStage::kFetch;
  absl::Status status;
};

// Fetches a fresh snapshot with client->Snapshot into `path` + ".part", fsyncs it, verifies
// it in full (kv::VerifySnapshot), renames it to `path` (replacing it) and fsyncs the
// directory. On any failure the .part file is removed and `path` is untouched; *error says
// where it failed. Returns nothing useful unless ok: check the bool.
bool SaveSnapshot(EtcdClient* client, const std::string& path, SaveResult* result,
                  SaveError* error);

// The file's size in bytes, or -1 if it cannot be stat'ed.
int64_t FileSizeBytes(const std::string& path);

// Unix milliseconds as ISO 8601 UTC with milliseconds, e.g. 2026-11-22T12:01:02.123Z.
std::string IsoTimeUtc(int64_t unix_ms);

}  // namespace raftkv::cli
