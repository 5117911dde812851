// Runs a program (kvctl, etcdctl) as a child process and captures its exit code and output.
#pragma once

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"

extern char** environ;

namespace raftkv::server::testing {

struct RunResult {
  int exit_code = -1;  // -1: did not run or did not exit normally
  std::string out;
  std::string err;
};

inline std::string ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs `path args...` with this process's environment, stdout and stderr to temp files, and
// waits for it. The callers bound the child's run time with its own timeout flags.
inline RunResult RunProcess(const std::string& path, const std::vector<std::string>& args) {
  static std::atomic<int> counter{0};
  const std::string base = ::testing::TempDir() + "/raftkv_run_" + std::to_string(getpid()) +
                           "_" + std::to_string(counter++);
  const std::string out_path = base + ".out", err_path = base + ".err";
  std::vector<std::string> argv_storage = {path};
  argv_storage.insert(argv_storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : argv_storage) argv.push_back(a.data());
  argv.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0600);
  posix_spawn_file_actions_addopen(&actions, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0600);
  pid_t pid;
  RunResult result;
  int rc = posix_spawn(&pid, path.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    ADD_FAILURE() << "cannot run " << path << ": " << std::strerror(rc);
    return result;
  }
  int status = 0;
  waitpid(pid, &status, 0);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  result.out = ReadWholeFile(out_path);
  result.err = ReadWholeFile(err_path);
  unlink(out_path.c_str());
  unlink(err_path.c_str());
  return result;
}

// The kvctl binary built beside the tests (both land in <build>/bin).
inline std::string KvctlPath() {
#ifdef KVCTL_PATH
  return KVCTL_PATH;
#else
  return std::filesystem::read_symlink("/proc/self/exe").parent_path() / "kvctl";
#endif
}

inline RunResult RunKvctl(std::vector<std::string> args) { return RunProcess(KvctlPath(), args); }

}  // namespace raftkv::server::testing
