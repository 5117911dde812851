// CrashEnv: an in-memory file system for WalStorage (a WalEnv) that knows what a power cut
// would keep. It tracks, per file, what has been fsynced and, per directory, which names a
// directory fsync made durable; Crash() returns the file system a crash right now leaves
// (names not yet durable vanish, removed ones come back, and each file keeps its synced bytes
// plus a chosen prefix of its unsynced ones: a torn write). Used by the WAL's crash tests
// (wal_crash_test.cc) and by the simulator's WAL mode (tests/raft/sim).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "raft/wal/wal_env.h"

namespace raftkv::raft::wal::testing {

class CrashEnv final : public WalEnv {
 public:
  // Called at the start of every file Sync(), before the data becomes durable.
  std::function<void()> on_sync;
  // Called at the start of every SyncDir(), before the names become durable.
  std::function<void()> on_sync_dir;

  // A new file system holding what a crash right now would leave, with each file keeping
  // keep(unsynced_bytes) of its unsynced appended bytes.
  std::unique_ptr<CrashEnv> Crash(const std::function<size_t(size_t)>& keep) const {
    auto out = std::make_unique<CrashEnv>();
    for (const auto& [name, id] : durable_names_) {
      const Inode& f = inodes_.at(id);
      Inode g;
      g.durable = f.durable;
      if (f.data.size() > f.durable.size() && f.data.compare(0, f.durable.size(), f.durable) == 0) {
        g.durable += f.data.substr(f.durable.size(), keep(f.data.size() - f.durable.size()));
      }
      g.data = g.durable;
      out->inodes_[id] = g;
      out->names_[name] = id;
      out->durable_names_[name] = id;
    }
    out->next_id_ = next_id_;
    return out;
  }

  // A copy of this file system as a crash of the PROCESS alone leaves it: the kernel still
  // has every byte written and every name (its page cache), and still knows which of them are
  // durable, so a later Crash() of the copy (the power loss) can still drop the rest.
  std::unique_ptr<CrashEnv> ProcessCrash() const {
    auto out = std::make_unique<CrashEnv>();
    out->inodes_ = inodes_;
    out->names_ = names_;
    out->durable_names_ = durable_names_;
    out->next_id_ = next_id_;
    return out;
  }

  absl::Status CreateDirIfMissing(const std::string&) override { return absl::OkStatus(); }
  absl::StatusOr<std::vector<std::string>> ListDir(const std::string& dir) override {
    std::vector<std::string> out;
    for (const auto& [name, id] : names_) {
      if (name.rfind(dir + "/", 0) == 0) out.push_back(name.substr(dir.size() + 1));
    }
    return out;  // std::map: sorted
  }
  absl::StatusOr<std::string> ReadFile(const std::string& path) override {
    auto it = names_.find(path);
    if (it == names_.end()) return absl::NotFoundError(path);
    return inodes_.at(it->second).data;
  }
  absl::StatusOr<std::unique_ptr<WalFile>> OpenForAppend(const std::string& path,
                                                         bool truncate) override {
    auto it = names_.find(path);
    int id;
    if (truncate) {
      id = next_id_++;
      inodes_[id] = Inode{};
      names_[path] = id;
    } else {
      if (it == names_.end()) return absl::NotFoundError(path);
      id = it->second;
    }
    return std::unique_ptr<WalFile>(new File(this, id));
  }
  absl::StatusOr<std::unique_ptr<WalReadableFile>> OpenForRead(const std::string& path) override {
    auto it = names_.find(path);
    if (it == names_.end()) return absl::NotFoundError(path);
    return std::unique_ptr<WalReadableFile>(new ReadableFile(this, it->second));
  }
  absl::Status TruncateFile(const std::string& path, uint64_t n) override {
    auto it = names_.find(path);
    if (it == names_.end()) return absl::NotFoundError(path);
    Inode& f = inodes_.at(it->second);
    f.data.resize(n);
    f.durable = f.data;
    return absl::OkStatus();
  }
  absl::Status RenameFile(const std::string& from, const std::string& to) override {
    auto it = names_.find(from);
    if (it == names_.end()) return absl::NotFoundError(from);
    names_[to] = it->second;
    names_.erase(from);
    return absl::OkStatus();
  }
  absl::Status RemoveFile(const std::string& path) override {
    if (names_.erase(path) == 0) return absl::NotFoundError(path);
    return absl::OkStatus();
  }
  absl::Status SyncDir(const std::string&) override {
    if (on_sync_dir) on_sync_dir();
    durable_names_ = names_;  // one directory in these tests
    return absl::OkStatus();
  }
  absl::StatusOr<std::unique_ptr<FileLock>> LockFile(const std::string&) override {
    return std::make_unique<FileLock>();
  }

 private:
  struct Inode {
    std::string data;     // what reads see
    std::string durable;  // what survives a crash
  };
  class File final : public WalFile {
   public:
    File(CrashEnv* env, int id) : env_(env), id_(id) {}
    absl::Status Append(absl::string_view d) override {
      env_->inodes_.at(id_).data.append(d.data(), d.size());
      return absl::OkStatus();
    }
    absl::Status Sync() override {
      if (env_->on_sync) env_->on_sync();
      Inode& f = env_->inodes_.at(id_);
      f.durable = f.data;
      return absl::OkStatus();
    }

   private:
    CrashEnv* const env_;
    const int id_;
  };

  class ReadableFile final : public WalReadableFile {
   public:
    ReadableFile(CrashEnv* env, int id) : env_(env), id_(id) {}
    absl::Status Read(uint64_t offset, size_t n, std::string* out) override {
      const std::string& data = env_->inodes_.at(id_).data;
      if (offset + n > data.size()) return absl::DataLossError("short read");
      *out = data.substr(offset, n);
      return absl::OkStatus();
    }

   private:
    CrashEnv* const env_;
    const int id_;
  };

  std::map<int, Inode> inodes_;
  std::map<std::string, int> names_;          // current directory entries
  std::map<std::string, int> durable_names_;  // as of the last SyncDir
  int next_id_ = 1;
};

}  // namespace raftkv::raft::wal::testing
