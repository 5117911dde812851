// The WAL's only window onto the file system. WalStorage does all file I/O through a WalEnv
// so tests can substitute one that fails a chosen fsync or write (LevelDB's Env idea, cut
// down to what the WAL uses). WalEnv::Default() is the POSIX implementation.
//
// Every method returns kInternal on an I/O error (kNotFound when a file to read is missing),
// with the path and the OS error in the message.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace raftkv::raft::wal {

// A file open for appending. Not thread-safe.
class WalFile {
 public:
  virtual ~WalFile() = default;
  // Writes all of `data` at the end of the file (no user-space buffering here: WalStorage
  // batches records itself and calls Append once per batch).
  virtual absl::Status Append(absl::string_view data) = 0;
  // fdatasync: everything appended so far (and the file size) is durable on OK.
  // A failure is final: the caller must not retry (see base/file_util.h).
  virtual absl::Status Sync() = 0;
};

// A file open for reads at any offset (WalStorage reads back entries it no longer caches).
// Not thread-safe.
class WalReadableFile {
 public:
  virtual ~WalReadableFile() = default;
  // Reads exactly n bytes at `offset` into *out (replacing its contents).
  // Errors: kDataLoss if the file ends before offset + n; kInternal for an I/O error.
  virtual absl::Status Read(uint64_t offset, size_t n, std::string* out) = 0;
};

// Holds an exclusive lock on a file until destroyed.
class FileLock {
 public:
  virtual ~FileLock() = default;
};

class WalEnv {
 public:
  virtual ~WalEnv() = default;

  // The process-wide POSIX environment (never destroyed).
  static WalEnv* Default();

  // Creates the directory if missing (fsyncing its parent when it creates it).
  virtual absl::Status CreateDirIfMissing(const std::string& dir) = 0;
  // Entry names of `dir`, sorted.
  virtual absl::StatusOr<std::vector<std::string>> ListDir(const std::string& dir) = 0;
  virtual absl::StatusOr<std::string> ReadFile(const std::string& path) = 0;
  // Opens `path` for appending. truncate = true creates it empty (replacing any old file);
  // truncate = false requires it to exist and appends after its current end.
  virtual absl::StatusOr<std::unique_ptr<WalFile>> OpenForAppend(const std::string& path,
                                                                 bool truncate) = 0;
  // Opens `path` for reads at any offset; kNotFound if it does not exist.
  virtual absl::StatusOr<std::unique_ptr<WalReadableFile>> OpenForRead(
      const std::string& path) = 0;
  // Cuts the file to size_bytes and fsyncs it.
  virtual absl::Status TruncateFile(const std::string& path, uint64_t size_bytes) = 0;
  // rename(2); durable only after SyncDir.
  virtual absl::Status RenameFile(const std::string& from, const std::string& to) = 0;
  // unlink(2); durable only after SyncDir.
  virtual absl::Status RemoveFile(const std::string& path) = 0;
  // fsync of the directory: makes creates, renames and removes in it durable.
  virtual absl::Status SyncDir(const std::string& dir) = 0;
  // Exclusive lock on `path` (created if missing) for as long as the result lives.
  // Errors: kFailedPrecondition if it is already held.
  virtual absl::StatusOr<std::unique_ptr<FileLock>> LockFile(const std::string& path) = 0;
};

}  // namespace raftkv::raft::wal
