#include "server/identity.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "base/file_util.h"

namespace raftkv::server {
namespace {

std::string Hex(uint64_t v) { return absl::StrCat("0x", absl::Hex(v, absl::kZeroPad16)); }

std::string Members(const std::vector<std::string>& members) {
  return absl::StrJoin(members, ",");
}

}  // namespace

absl::StatusOr<Identity> ReadIdentity(const std::string& path) {
  absl::StatusOr<std::string> text = base::ReadFileToString(path);
  if (!text.ok()) return text.status();
  Identity id;
  bool has_cluster = false, has_node = false;
  for (absl::string_view line : absl::StrSplit(*text, '\n', absl::SkipEmpty())) {
    std::pair<std::string, std::string> kv = absl::StrSplit(line, absl::MaxSplits('=', 1));
    if (kv.first == "cluster_id") {
      has_cluster = absl::SimpleHexAtoi(kv.second, &id.cluster_id);
    } else if (kv.first == "node_id") {
      has_node = absl::SimpleAtoi(kv.second, &id.node_id);
    } else if (kv.first == "members") {
      id.members = absl::StrSplit(kv.second, ',', absl::SkipEmpty());
    } else if (kv.first == "created_at") {
      (void)absl::SimpleAtoi(kv.second, &id.created_at);
    }
  }
  if (!has_cluster || !has_node) {
    return absl::DataLossError(absl::StrCat(
        path, " is malformed (needs cluster_id=0x... and node_id=N lines); if this data dir "
              "is really this node's, restore the file or delete it to adopt the data dir"));
  }
  return id;
}

absl::Status WriteIdentity(const std::string& path, const Identity& id) {
  const std::string text =
      absl::StrCat("# raftkv data dir identity: do not edit (kvd refuses another node's data)\n",
                   "cluster_id=", Hex(id.cluster_id), "\nnode_id=", id.node_id,
                   "\nmembers=", Members(id.members), "\ncreated_at=", id.created_at, "\n");
  return base::WriteFileDurably(path, text);
}

absl::Status CheckOrWriteIdentity(const std::string& path, const std::string& data_dir,
                                  const Identity& expected) {
  absl::StatusOr<Identity> found = ReadIdentity(path);
  if (absl::IsNotFound(found.status())) {
    Identity id = expected;
    id.created_at = absl::ToUnixSeconds(absl::Now());
    return WriteIdentity(path, id);
  }
  if (!found.ok()) return absl::FailedPreconditionError(found.status().message());
  if (found->cluster_id != expected.cluster_id) {
    return absl::FailedPreconditionError(absl::StrCat(
        "data dir ", data_dir, " belongs to cluster ", Hex(found->cluster_id), " (members ",
        Members(found->members), "), but this configuration (--config, --cluster-token) is "
        "cluster ", Hex(expected.cluster_id), " (members ", Members(expected.members),
        "): start with that cluster's node_config.json and --cluster-token, or give this node "
        "an empty --data-dir to join this cluster (README, \"Replacing a lost disk\")"));
  }
  if (found->node_id != expected.node_id) {
    return absl::FailedPreconditionError(absl::StrCat(
        "data dir ", data_dir, " belongs to node ", found->node_id, " of this cluster, but this "
        "is --id=", expected.node_id, ": point --data-dir at node ", expected.node_id,
        "'s directory (two nodes must never share data), or give this node an empty one to "
        "rejoin (README, \"Replacing a lost disk\")"));
  }
  return absl::OkStatus();
}

}  // namespace raftkv::server
