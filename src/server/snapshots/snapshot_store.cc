#include "server/snapshots/snapshot_store.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/file_util.h"

namespace raftkv::server {
namespace {

constexpr char kPrefix[] = "snap-";
constexpr char kSuffix[] = ".db";

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

uint64_t SnapshotStore::NewestIndexByName() const {
  uint64_t newest = 0;
  for (const std::string& n : Names()) {
    newest = std::max<uint64_t>(newest, std::strtoull(n.c_str() + sizeof(kPrefix) - 1,
                                                      nullptr, 10));
  }
  return newest;
}

std::optional<SnapshotFile> SnapshotStore::Newest(uint64_t max_index) const {
  std::vector<std::string> names = Names();
  for (auto it = names.rbegin(); it != names.rend(); ++it) {
    std::string path = absl::StrCat(dir_, "/", *it);
    absl::StatusOr<kv::SnapshotMeta> meta = kv::ReadSnapshotMeta(path);
    if (meta.ok() && meta->applied_index <= max_index) return SnapshotFile{*meta, path};
  }
  return std::nullopt;
}

void SnapshotStore::Prune(size_t keep) const {
  std::vector<std::string> names = Names();
  bool removed = false;
  for (size_t i = 0; i + keep < names.size(); ++i) {
    const std::string path = absl::StrCat(dir_, "/", names[i]);
    if (::unlink(path.c_str()) == 0) removed = true;
  }
  if (removed) (void)base::SyncDir(dir_);
}

}  // namespace raftkv::server
