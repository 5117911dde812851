// POSIX file helpers for durable on-disk state (WAL, snapshots).
//
// Durability rules these helpers serve (docs/wal-format.md): data is durable only after
// fsync/fdatasync of the file; a file's existence or name is durable only after fsync of its
// directory; a failed fsync is fatal (callers must not retry: the kernel may have dropped the
// dirty pages and a later fsync could report success for data that was never written).
//
// Errors carry the path and strerror(errno). I/O failures are kInternal (except ENOENT on
// read: kNotFound).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace raftkv::base {

// An I/O error status naming the operation, the path and errno.
absl::Status IoError(const std::string& op, const std::string& path, int err);

// fsync() of the directory itself, making creates/renames/deletes in it durable.
absl::Status SyncDir(const std::string& dir);

// Creates `dir` (and missing parents) if it does not exist; fsyncs the parent of every
// directory it creates.
absl::Status CreateDirIfMissing(const std::string& dir);

// The names (not paths) of the entries of `dir`, without "." and "..", sorted.
absl::StatusOr<std::vector<std::string>> ListDir(const std::string& dir);

// The whole content of the file.
absl::StatusOr<std::string> ReadFileToString(const std::string& path);

// Truncates the file to `size_bytes` and fsyncs it (the new size is durable on return).
absl::Status TruncateAndSync(const std::string& path, uint64_t size_bytes);

// Writes `data` fully to fd (retrying short writes and EINTR).
absl::Status WriteAll(int fd, const char* data, size_t n, const std::string& path);

// Takes an exclusive advisory lock (flock) on `path`, creating the file if needed. Returns the
// open fd that holds the lock; closing it releases the lock (as does process exit).
// Errors: kFailedPrecondition if another open file description (another process, or another
// open in this process) holds it; kInternal for I/O errors.
absl::StatusOr<int> LockFile(const std::string& path);

// Copies `from` to `to` durably: to + ".tmp", fsync, rename over `to`, fsync of the directory.
absl::Status CopyFileDurably(const std::string& from, const std::string& to);

// Writes `data` to `path` durably, the same way: path + ".tmp", fsync, rename, directory fsync.
// A crash leaves either the old file or the new one, never a mix.
absl::Status WriteFileDurably(const std::string& path, std::string_view data);

// Parent directory of `path` ("." if none).
std::string DirName(const std::string& path);

}  // namespace raftkv::base
