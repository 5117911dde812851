#include "cli/snapshot_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace raftkv::cli {
namespace {

absl::Status IoError(const std::string& op, const std::string& path, int err) {
  return absl::InternalError(absl::StrCat(op, " ", path, ": ", std::strerror(err)));
}

// Writes the stream into an open file; Begin() empties it so a retry on another endpoint
// starts from byte 0.
class FileSink final : public SnapshotSink {
 public:
  FileSink(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}

  absl::Status Begin() override {
    if (::ftruncate(fd_, 0) != 0) return Failed(IoError("truncate", path_, errno));
    if (::lseek(fd_, 0, SEEK_SET) != 0) return Failed(IoError("seek", path_, errno));
    return absl::OkStatus();
  }

  absl::Status Append(const std::string& bytes) override {
    size_t done = 0;
    while (done < bytes.size()) {
      ssize_t n = ::write(fd_, bytes.data() + done, bytes.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Failed(IoError("write", path_, errno));
      done += static_cast<size_t>(n);
    }
    return absl::OkStatus();
  }

  // Whether an error came from this sink (local I/O) rather than from the cluster.
  bool failed() const { return failed_; }

 private:
  absl::Status Failed(absl::Status s) {
    failed_ = true;
    return s;
  }

  const int fd_;
  const std::string path_;
  bool failed_ = false;
};

std::string DirOf(const std::string& path) {
  std::string dir = std::filesystem::path(path).parent_path().string();
  return dir.empty() ? "." : dir;
}

absl::Status SyncDir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return IoError("open directory", dir, errno);
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return IoError("fsync directory", dir, err);
  return absl::OkStatus();
}

}  // namespace

bool SaveSnapshot(EtcdClient* client, const std::string& path, SaveResult* result,
                  SaveError* error) {
  const std::string part = path + ".part";
  auto fail = [&](SaveStage stage, absl::Status status) {
    ::unlink(part.c_str());
    error->stage = stage;
    error->status = std::move(status);
    return false;
  };
  int fd = ::open(part.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return fail(SaveStage::kWrite, IoError("create", part, errno));
  FileSink sink(fd, part);
  absl::StatusOr<SnapshotDownload> download = client->Snapshot(&sink);
  if (!download.ok()) {
    ::close(fd);
    return fail(sink.failed() ? SaveStage::kWrite : SaveStage::kFetch, download.status());
  }
  // The file is durable before it gets its final name (see base/file_util.h).
  if (::fsync(fd) != 0) {
    int err = errno;
    ::close(fd);
    return fail(SaveStage::kWrite, IoError("fsync", part, err));
  }
  if (::close(fd) != 0) return fail(SaveStage::kWrite, IoError("close", part, errno));
  absl::StatusOr<kv::SnapshotMeta> meta = kv::VerifySnapshot(part);
  if (!meta.ok()) {
    return fail(SaveStage::kVerify,
                absl::Status(meta.status().code(),
                             absl::StrCat("the snapshot received from ", download->endpoint,
                                          " failed verification: ", meta.status().message())));
  }
  if (::rename(part.c_str(), path.c_str()) != 0) {
    return fail(SaveStage::kWrite, IoError(absl::StrCat("rename ", part, " to"), path, errno));
  }
  if (absl::Status s = SyncDir(DirOf(path)); !s.ok()) {
    error->stage = SaveStage::kWrite;
    error->status = s;
    return false;
  }
  result->download = *std::move(download);
  result->meta = *std::move(meta);
  return true;
}

int64_t FileSizeBytes(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return -1;
  return static_cast<int64_t>(st.st_size);
}

std::string IsoTimeUtc(int64_t unix_ms) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::FromUnixMillis(unix_ms),
                          absl::UTCTimeZone());
}

}  // namespace raftkv::cli
