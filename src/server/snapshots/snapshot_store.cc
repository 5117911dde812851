#include "server/snapshots/snapshot_store.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/file_util.h"

namespace raftkv::server {
namespace {

constexpr char kPrefix[] = "snap-";
constexpr char kSuffix[] = ".db";
constexpr char kPartSuffix[] = ".part";  // SnapshotReceiver's <name>.<size>.part

// The index a snap-<index>-... name starts with.
uint64_t IndexOf(const std::string& name) {
  return std::strtoull(name.c_str() + sizeof(kPrefix) - 1, nullptr, 10);
}

}  // namespace

std::string SnapshotStore::FileName(uint64_t index, uint64_t term) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%s%020llu-%llu%s", kPrefix,
                static_cast<unsigned long long>(index), static_cast<unsigned long long>(term),
                kSuffix);
  return buf;
}

bool SnapshotStore::IsSnapshotName(const std::string& name) {
  return absl::StartsWith(name, kPrefix) && absl::EndsWith(name, kSuffix);
}

std::string SnapshotStore::PathFor(uint64_t index, uint64_t term) const {
  return absl::StrCat(dir_, "/", FileName(index, term));
}

absl::Status SnapshotStore::CreateDir() const { return base::CreateDirIfMissing(dir_); }

std::vector<std::string> SnapshotStore::Names() const {
  std::vector<std::string> out;
  auto names = base::ListDir(dir_);  // sorted; zero-padded indexes sort numerically
  if (!names.ok()) return out;
  for (std::string& n : *names) {
    if (IsSnapshotName(n)) out.push_back(std::move(n));
  }
  return out;
}

std::vector<SnapshotStore::Listed> SnapshotStore::List() const {
  std::vector<Listed> out;
  for (const std::string* dir : {&dir_, &received_dir_}) {
    if (dir->empty()) continue;
    auto names = base::ListDir(*dir);
    if (!names.ok()) continue;
    for (const std::string& n : *names) {
      const bool received = dir == &received_dir_;
      const bool partial = absl::StartsWith(n, kPrefix) && absl::EndsWith(n, kPartSuffix);
      // Only the receiver writes .part files; one in the own directory is not ours to touch.
      if (IsSnapshotName(n) || (partial && received)) {
        out.push_back(Listed{IndexOf(n), absl::StrCat(*dir, "/", n), partial, received});
      }
    }
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const Listed& a, const Listed& b) { return a.index < b.index; });
  return out;
}

uint64_t SnapshotStore::NewestIndexByName() const {
  uint64_t newest = 0;
  for (const Listed& f : List()) {
    if (!f.partial) newest = std::max(newest, f.index);
  }
  return newest;
}

std::optional<SnapshotFile> SnapshotStore::Newest(uint64_t max_index) const {
  std::vector<Listed> files = List();
  for (auto it = files.rbegin(); it != files.rend(); ++it) {
    if (it->partial || it->index > max_index) continue;
    absl::StatusOr<kv::SnapshotMeta> meta = kv::ReadSnapshotMeta(it->path);
    if (meta.ok() && meta->applied_index <= max_index) return SnapshotFile{*meta, it->path};
  }
  return std::nullopt;
}

void SnapshotStore::Prune(size_t keep, uint64_t applied_index) const {
  std::vector<Listed> files = List();
  size_t complete = 0;  // snapshots at or below applied_index
  for (const Listed& f : files) complete += !f.partial && f.index <= applied_index;
  size_t surplus = complete > keep ? complete - keep : 0;  // the oldest ones go
  bool removed_own = false, removed_received = false;
  for (const Listed& f : files) {
    if (f.index > applied_index) continue;
    if (!f.partial) {
      if (surplus == 0) continue;
      --surplus;
    }
    if (::unlink(f.path.c_str()) == 0) (f.received ? removed_received : removed_own) = true;
  }
  if (removed_own) (void)base::SyncDir(dir_);
  if (removed_received) (void)base::SyncDir(received_dir_);
}

}  // namespace raftkv::server
