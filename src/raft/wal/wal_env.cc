#include "raft/wal/wal_env.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "base/file_util.h"

namespace raftkv::raft::wal {
namespace {

class PosixWalFile final : public WalFile {
 public:
  PosixWalFile(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  ~PosixWalFile() override { ::close(fd_); }

  absl::Status Append(absl::string_view data) override {
    return base::WriteAll(fd_, data.data(), data.size(), path_);
  }

  absl::Status Sync() override {
    // fdatasync also flushes the metadata needed to read the data back (the file size).
    if (::fdatasync(fd_) != 0) return base::IoError("fdatasync", path_, errno);
    return absl::OkStatus();
  }

 private:
  const int fd_;
  const std::string path_;
};

class PosixReadableFile final : public WalReadableFile {
 public:
  PosixReadableFile(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  ~PosixReadableFile() override { ::close(fd_); }

  absl::Status Read(uint64_t offset, size_t n, std::string* out) override {
    out->resize(n);
    size_t done = 0;
    while (done < n) {
      const ssize_t r =
          ::pread(fd_, out->data() + done, n - done, static_cast<off_t>(offset + done));
      if (r < 0) {
        if (errno == EINTR) continue;
        return base::IoError("pread", path_, errno);
      }
      if (r == 0) {
        return absl::DataLossError(absl::StrCat("wal: ", path_, " ends at offset ",
                                                offset + done, ", inside the ", n,
                                                " bytes expected at offset ", offset));
      }
      done += static_cast<size_t>(r);
    }
    return absl::OkStatus();
  }

 private:
  const int fd_;
  const std::string path_;
};

class PosixFileLock final : public FileLock {
 public:
  explicit PosixFileLock(int fd) : fd_(fd) {}
  ~PosixFileLock() override { ::close(fd_); }  // releases the flock

 private:
  const int fd_;
};

class PosixWalEnv final : public WalEnv {
 public:
  absl::Status CreateDirIfMissing(const std::string& dir) override {
    return base::CreateDirIfMissing(dir);
  }
  absl::StatusOr<std::vector<std::string>> ListDir(const std::string& dir) override {
    return base::ListDir(dir);
  }
  absl::StatusOr<std::string> ReadFile(const std::string& path) override {
    return base::ReadFileToString(path);
  }
  absl::StatusOr<std::unique_ptr<WalFile>> OpenForAppend(const std::string& path,
                                                         bool truncate) override {
    const int flags = O_WRONLY | O_APPEND | O_CLOEXEC | (truncate ? O_CREAT | O_TRUNC : 0);
    const int fd = ::open(path.c_str(), flags, 0644);
    if (fd < 0) return base::IoError("open", path, errno);
    return std::unique_ptr<WalFile>(new PosixWalFile(fd, path));
  }
  absl::StatusOr<std::unique_ptr<WalReadableFile>> OpenForRead(
      const std::string& path) override {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return base::IoError("open", path, errno);
    return std::unique_ptr<WalReadableFile>(new PosixReadableFile(fd, path));
  }
  absl::Status TruncateFile(const std::string& path, uint64_t size_bytes) override {
    return base::TruncateAndSync(path, size_bytes);
  }
  absl::Status RenameFile(const std::string& from, const std::string& to) override {
    if (::rename(from.c_str(), to.c_str()) != 0) return base::IoError("rename", from, errno);
    return absl::OkStatus();
  }
  absl::Status RemoveFile(const std::string& path) override {
    if (::unlink(path.c_str()) != 0) return base::IoError("unlink", path, errno);
    return absl::OkStatus();
  }
  absl::Status SyncDir(const std::string& dir) override { return base::SyncDir(dir); }
  absl::StatusOr<std::unique_ptr<FileLock>> LockFile(const std::string& path) override {
    absl::StatusOr<int> fd = base::LockFile(path);
    if (!fd.ok()) return fd.status();
    return std::unique_ptr<FileLock>(new PosixFileLock(*fd));
  }
};

}  // namespace

WalEnv* WalEnv::Default() {
  static WalEnv* const env = new PosixWalEnv();
  return env;
}

}  // namespace raftkv::raft::wal
