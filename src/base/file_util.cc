#include "base/file_util.h"

#include <filesystem>

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace raftkv::base {

absl::Status IoError(const std::string& op, const std::string& path, int err) {
  std::string msg = absl::StrCat(op, " ", path, ": ", std::strerror(err));
  if (err == ENOENT) return absl::NotFoundError(msg);
  return absl::InternalError(msg);
}

absl::Status SyncDir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return IoError("open dir", dir, errno);
  absl::Status s;
  if (::fsync(fd) != 0) s = IoError("fsync dir", dir, errno);
  ::close(fd);
  return s;
}

std::string DirName(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

absl::Status CreateDirIfMissing(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0755) == 0) return SyncDir(DirName(dir));
  if (errno == ENOENT && DirName(dir) != dir) {
    if (absl::Status s = CreateDirIfMissing(DirName(dir)); !s.ok()) return s;
    if (::mkdir(dir.c_str(), 0755) == 0) return SyncDir(DirName(dir));
  }
  if (errno != EEXIST) return IoError("mkdir", dir, errno);
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) return IoError("stat", dir, errno);
  if (!S_ISDIR(st.st_mode)) return absl::FailedPreconditionError(dir + " is not a directory");
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> ListDir(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return IoError("opendir", dir, errno);
  std::vector<std::string> names;
  errno = 0;
  while (struct dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  const int err = errno;
  ::closedir(d);
  if (err != 0) return IoError("readdir", dir, err);
  std::sort(names.begin(), names.end());
  return names;
}

absl::StatusOr<std::string> ReadFileToString(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return IoError("open", path, errno);
  std::string data;
  char buf[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      return IoError("read", path, err);
    }
    if (n == 0) break;
    data.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return data;
}

absl::Status TruncateAndSync(const std::string& path, uint64_t size_bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return IoError("open", path, errno);
  absl::Status s;
  if (::ftruncate(fd, static_cast<off_t>(size_bytes)) != 0) {
    s = IoError("ftruncate", path, errno);
  } else if (::fsync(fd) != 0) {
    s = IoError("fsync", path, errno);
  }
  ::close(fd);
  return s;
}

absl::StatusOr<int> LockFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return IoError("open", path, errno);
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    ::close(fd);
    if (err == EWOULDBLOCK) {
      return absl::FailedPreconditionError(
          absl::StrCat(path, " is locked: another process (or WAL instance) is using it"));
    }
    return IoError("flock", path, err);
  }
  return fd;
}

absl::Status WriteAll(int fd, const char* data, size_t n, const std::string& path) {
  while (n > 0) {
    const ssize_t w = ::write(fd, data, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return IoError("write", path, errno);
    }
    data += w;
    n -= static_cast<size_t>(w);
  }
  return absl::OkStatus();
}

namespace {

// The shared tail of the durable writers: fsync `tmp`, rename it over `to`, fsync the directory.
absl::Status SyncAndRename(const std::string& tmp, const std::string& to) {
  int fd = ::open(tmp.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return IoError("open", tmp, errno);
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return IoError("fsync", tmp, err);
  if (::rename(tmp.c_str(), to.c_str()) != 0) return IoError("rename", tmp, errno);
  return SyncDir(DirName(to));
}

}  // namespace

absl::Status CopyFileDurably(const std::string& from, const std::string& to) {
  const std::string tmp = to + ".tmp";
  std::error_code ec;
  std::filesystem::copy_file(from, tmp, std::filesystem::copy_options::overwrite_existing, ec);
  if (ec) return IoError("copy " + from + " to", tmp, ec.value());
  return SyncAndRename(tmp, to);
}

absl::Status WriteFileDurably(const std::string& path, std::string_view data) {
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return IoError("open", tmp, errno);
  absl::Status s = WriteAll(fd, data.data(), data.size(), tmp);
  ::close(fd);
  if (!s.ok()) return s;
  return SyncAndRename(tmp, path);
}

}  // namespace raftkv::base
