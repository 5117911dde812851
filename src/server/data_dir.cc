#include "server/data_dir.h"

#include <filesystem>

#include "absl/strings/str_cat.h"

namespace raftkv::server {
namespace {

std::string Join(const std::string& dir, const std::string& name) {
  return (std::filesystem::path(dir) / name).string();
}

}  // namespace

DataDir::DataDir(std::string root, std::string backup_path)
    : root_(std::move(root)), backup_path_(std::move(backup_path)) {}

std::string DataDir::db() const { return Join(root_, "db"); }
std::string DataDir::db_aside(int64_t unix_seconds) const {
  return absl::StrCat(db(), ".corrupt-", unix_seconds);
}
std::string DataDir::wal() const { return Join(root_, "wal"); }
std::string DataDir::backup() const {
  return backup_path_.empty() ? Join(root_, "backup.db") : backup_path_;
}
std::string DataDir::snapshots() const { return Join(root_, "snapshots"); }
std::string DataDir::identity() const { return Join(root_, "identity"); }
std::string DataDir::members() const { return Join(root_, "members"); }
std::string DataDir::received_snapshots() const { return Join(snapshots(), "received"); }
std::string DataDir::export_snapshot(int64_t unix_ms, uint64_t seq) const {
  return Join(snapshots(), absl::StrCat("export-", unix_ms, "-", seq, ".db"));
}

}  // namespace raftkv::server
