// Helpers for the WAL tests: a fresh temporary directory per test, an Env that fails chosen
// calls, and entry builders.
#pragma once

#include <stdlib.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "raft.pb.h"
#include "raft/wal/wal_env.h"

namespace raftkv::raft::wal::testing {

// A new empty directory under the test temp dir, removed (recursively) on destruction.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = ::testing::TempDir() + "/raftkv_wal_XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) {
      ADD_FAILURE() << "mkdtemp failed for " << tmpl;
      std::abort();
    }
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  // The WAL directory inside it (not yet created).
  std::string wal() const { return path_ + "/wal"; }

 private:
  std::string path_;
};

// Forwards to WalEnv::Default() and fails the calls a test arms. Counts file syncs and
// directory syncs so tests can assert how many fsyncs an operation cost.
class FaultEnv final : public WalEnv {
 public:
  // Fail the n-th file Sync() from now (1 = the next one); 0 disarms.
  void FailFileSyncAfter(int n) { fail_file_sync_in_ = n; }
  // Fail the n-th SyncDir() from now; 0 disarms.
  void FailDirSyncAfter(int n) { fail_dir_sync_in_ = n; }
  // Fail the n-th file Append() from now; 0 disarms.
  void FailAppendAfter(int n) { fail_append_in_ = n; }
  // Fail the n-th RenameFile() from now (the file stays under its old name); 0 disarms.
  void FailRenameAfter(int n) { fail_rename_in_ = n; }

  int file_syncs() const { return file_syncs_; }
  int dir_syncs() const { return dir_syncs_; }
  // Reads through files opened with OpenForRead (WalStorage reading back evicted entries).
  int file_reads() const { return file_reads_; }

  absl::Status CreateDirIfMissing(const std::string& dir) override {
    return base_->CreateDirIfMissing(dir);
  }
  absl::StatusOr<std::vector<std::string>> ListDir(const std::string& dir) override {
    return base_->ListDir(dir);
  }
  absl::StatusOr<std::string> ReadFile(const std::string& path) override {
    return base_->ReadFile(path);
  }
  absl::StatusOr<std::unique_ptr<WalFile>> OpenForAppend(const std::string& path,
                                                         bool truncate) override {
    absl::StatusOr<std::unique_ptr<WalFile>> f = base_->OpenForAppend(path, truncate);
    if (!f.ok()) return f.status();
    return std::unique_ptr<WalFile>(new File(this, std::move(*f)));
  }
  absl::StatusOr<std::unique_ptr<WalReadableFile>> OpenForRead(const std::string& path) override {
    absl::StatusOr<std::unique_ptr<WalReadableFile>> f = base_->OpenForRead(path);
    if (!f.ok()) return f.status();
    return std::unique_ptr<WalReadableFile>(new ReadableFile(this, std::move(*f)));
  }
  absl::Status TruncateFile(const std::string& path, uint64_t size_bytes) override {
    return base_->TruncateFile(path, size_bytes);
  }
  absl::Status RenameFile(const std::string& from, const std::string& to) override {
    if (Trip(&fail_rename_in_)) return absl::InternalError("injected: rename " + from);
    return base_->RenameFile(from, to);
  }
  absl::Status RemoveFile(const std::string& path) override { return base_->RemoveFile(path); }
  absl::StatusOr<std::unique_ptr<FileLock>> LockFile(const std::string& path) override {
    return base_->LockFile(path);
  }
  absl::Status SyncDir(const std::string& dir) override {
    ++dir_syncs_;
    if (Trip(&fail_dir_sync_in_)) return absl::InternalError("injected: fsync dir " + dir);
    return base_->SyncDir(dir);
  }

 private:
  class File final : public WalFile {
   public:
    File(FaultEnv* env, std::unique_ptr<WalFile> base) : env_(env), base_(std::move(base)) {}
    absl::Status Append(absl::string_view data) override {
      if (Trip(&env_->fail_append_in_)) return absl::InternalError("injected: write failed");
      return base_->Append(data);
    }
    absl::Status Sync() override {
      ++env_->file_syncs_;
      if (Trip(&env_->fail_file_sync_in_)) return absl::InternalError("injected: fdatasync");
      return base_->Sync();
    }

   private:
    FaultEnv* const env_;
    std::unique_ptr<WalFile> base_;
  };

  class ReadableFile final : public WalReadableFile {
   public:
    ReadableFile(FaultEnv* env, std::unique_ptr<WalReadableFile> base)
        : env_(env), base_(std::move(base)) {}
    absl::Status Read(uint64_t offset, size_t n, std::string* out) override {
      ++env_->file_reads_;
      return base_->Read(offset, n, out);
    }

   private:
    FaultEnv* const env_;
    std::unique_ptr<WalReadableFile> base_;
  };

  // Counts down an armed trigger; true when it fires.
  static bool Trip(int* countdown) {
    if (*countdown <= 0) return false;
    return --*countdown == 0;
  }

  WalEnv* const base_ = WalEnv::Default();
  int fail_file_sync_in_ = 0;
  int fail_dir_sync_in_ = 0;
  int fail_append_in_ = 0;
  int fail_rename_in_ = 0;
  int file_syncs_ = 0;
  int dir_syncs_ = 0;
  int file_reads_ = 0;
};

inline raftpb::Entry MakeEntry(uint64_t index, uint64_t term, const std::string& data = "") {
  raftpb::Entry e;
  e.set_index(index);
  e.set_term(term);
  e.set_data(data.empty() ? "cmd-" + std::to_string(index) + "-" + std::to_string(term) : data);
  return e;
}

// Entries [lo, hi) all with `term`.
inline std::vector<raftpb::Entry> MakeEntries(uint64_t lo, uint64_t hi, uint64_t term) {
  std::vector<raftpb::Entry> out;
  for (uint64_t i = lo; i < hi; ++i) out.push_back(MakeEntry(i, term));
  return out;
}

inline raftpb::HardState MakeHardState(uint64_t term, uint64_t vote, uint64_t commit) {
  raftpb::HardState hs;
  hs.set_term(term);
  hs.set_vote(vote);
  hs.set_commit(commit);
  return hs;
}

}  // namespace raftkv::raft::wal::testing
