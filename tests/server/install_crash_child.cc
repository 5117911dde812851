// The child process of tests/server/snapshot_install_crash_test.cc: starts the follower of
// install_crash_scenario.h on DATA_DIR, hands it the leader's snapshot SNAPSHOT_FILE (index,
// term) and ends itself with _exit -- a kill: no destructor, no flush -- at the CRASH_AT-th
// step of the install: the install's own steps (RaftLoopOptions::install_crash_point) and,
// in between, every file operation of the WAL (each write, fsync, rename, remove, directory
// fsync). Prints the step's name first.
//
//   install_crash_child DATA_DIR SNAPSHOT_FILE INDEX TERM CRASH_AT
//
// Exit codes: install_crash_scenario.h (kChildCrashed, kChildInstallDone, kChildFailed).
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "install_crash_scenario.h"
#include "raft/wal/wal_env.h"
#include "server/data_dir.h"
#include "server/replication/recovery.h"
#include "spdlog/spdlog.h"

namespace raftkv::server::testing {
namespace {

// Counts steps once armed and ends the process at the chosen one.
class CrashPoints {
 public:
  explicit CrashPoints(uint64_t crash_at) : crash_at_(crash_at) {}

  void Arm() { armed_ = true; }
  void Step(std::string_view name) {
    if (!armed_) return;
    if (++count_ == crash_at_) {
      std::printf("%llu %.*s\n", static_cast<unsigned long long>(count_),
                  static_cast<int>(name.size()), name.data());
      std::fflush(stdout);
      ::_exit(kChildCrashed);
    }
  }

 private:
  const uint64_t crash_at_;
  std::atomic<bool> armed_{false};
  std::atomic<uint64_t> count_{0};
};

// WalEnv::Default() with a crash point after every operation that changes a file.
class CrashingWalEnv final : public raft::wal::WalEnv {
 public:
  explicit CrashingWalEnv(CrashPoints* points) : points_(points) {}

  absl::Status CreateDirIfMissing(const std::string& dir) override {
    return After(base_->CreateDirIfMissing(dir), "wal: create dir");
  }
  absl::StatusOr<std::vector<std::string>> ListDir(const std::string& dir) override {
    return base_->ListDir(dir);
  }
  absl::StatusOr<std::string> ReadFile(const std::string& path) override {
    return base_->ReadFile(path);
  }
  absl::StatusOr<std::unique_ptr<raft::wal::WalFile>> OpenForAppend(const std::string& path,
                                                                     bool truncate) override {
    auto file = base_->OpenForAppend(path, truncate);
    if (!file.ok()) return file.status();
    points_->Step(absl::StrCat("wal: open ", Base(path)));
    return std::unique_ptr<raft::wal::WalFile>(
        new File(std::move(*file), points_, Base(path)));
  }
  absl::StatusOr<std::unique_ptr<raft::wal::WalReadableFile>> OpenForRead(
      const std::string& path) override {
    return base_->OpenForRead(path);
  }
  absl::Status TruncateFile(const std::string& path, uint64_t size_bytes) override {
    return After(base_->TruncateFile(path, size_bytes), "wal: truncate " + Base(path));
  }
  absl::Status RenameFile(const std::string& from, const std::string& to) override {
    return After(base_->RenameFile(from, to), "wal: rename to " + Base(to));
  }
  absl::Status RemoveFile(const std::string& path) override {
    return After(base_->RemoveFile(path), "wal: remove " + Base(path));
  }
  absl::Status SyncDir(const std::string& dir) override {
    return After(base_->SyncDir(dir), "wal: fsync dir");
  }
  absl::StatusOr<std::unique_ptr<raft::wal::FileLock>> LockFile(
      const std::string& path) override {
    return base_->LockFile(path);
  }

 private:
  class File final : public raft::wal::WalFile {
   public:
    File(std::unique_ptr<raft::wal::WalFile> base, CrashPoints* points, std::string name)
        : base_(std::move(base)), points_(points), name_(std::move(name)) {}
    absl::Status Append(absl::string_view data) override {
      absl::Status s = base_->Append(data);
      points_->Step("wal: write " + name_);
      return s;
    }
    absl::Status Sync() override {
      absl::Status s = base_->Sync();
      points_->Step("wal: fsync " + name_);
      return s;
    }

   private:
    std::unique_ptr<raft::wal::WalFile> base_;
    CrashPoints* points_;
    std::string name_;
  };

  static std::string Base(const std::string& path) {
    return path.substr(path.find_last_of('/') + 1);
  }
  absl::Status After(absl::Status s, const std::string& step) {
    points_->Step(step);
    return s;
  }

  raft::wal::WalEnv* const base_ = raft::wal::WalEnv::Default();
  CrashPoints* const points_;
};

int Run(int argc, char** argv) {
  if (argc != 6) {
    std::fprintf(stderr, "usage: %s DATA_DIR SNAPSHOT_FILE INDEX TERM CRASH_AT\n", argv[0]);
    return kChildFailed;
  }
  const std::string data_dir = argv[1];
  const std::string snapshot = argv[2];
  const uint64_t index = std::strtoull(argv[3], nullptr, 10);
  const uint64_t term = std::strtoull(argv[4], nullptr, 10);
  CrashPoints points(std::strtoull(argv[5], nullptr, 10));
  spdlog::set_level(spdlog::level::warn);  // stdout: the crash point's name
  CrashingWalEnv env(&points);

  DataDir dir(data_dir);
  auto sm = OpenStateMachine(dir, "");
  if (!sm.ok()) {
    std::fprintf(stderr, "open state machine: %s\n", sm.status().ToString().c_str());
    return kChildFailed;
  }
  std::promise<void> done;
  RaftLoopOptions options = FollowerLoopOptions(data_dir);
  options.wal_env = &env;
  options.install_crash_point = [&](std::string_view step) {
    if (step == "install: begin") points.Arm();
    points.Step(step);
    if (step == "install: done") done.set_value();
  };
  auto loop = RaftLoop::Start(sm->get(), dir, options);
  if (!loop.ok()) {
    std::fprintf(stderr, "start: %s\n", loop.status().ToString().c_str());
    return kChildFailed;
  }
  (*loop)->Deliver(SnapMessage(snapshot, index, term));
  if (done.get_future().wait_for(std::chrono::seconds(60)) != std::future_status::ready) {
    std::fprintf(stderr, "the install did not end within 60 s\n");
    return kChildFailed;
  }
  (*loop)->Stop();
  return kChildInstallDone;
}

}  // namespace
}  // namespace raftkv::server::testing

int main(int argc, char** argv) { return raftkv::server::testing::Run(argc, argv); }
