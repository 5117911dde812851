// kvctl: command-line client for raftkv over the etcd-compatible gRPC API.
// The only file of kvctl that includes CLI11 (it is slow to compile).
//
// Exit codes: 0 success, 1 key not found, 2 usage error (including arguments the server
// rejects as invalid; for snapshot status: the file does not exist), 3 cluster unavailable
// or any other failure (for a write: not applied), 4 a snapshot file failed verification,
// 5 a write's outcome is unknown (it may or may not have been applied; kvctl already sent it
// to every endpoint under its session, so it was applied at most once).
#include <cstdio>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "cli/etcd_client.h"
#include "cli/json.h"
#include "cli/snapshot_file.h"

namespace raftkv::cli {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitNotFound = 1;
constexpr int kExitUsage = 2;
constexpr int kExitUnavailable = 3;
constexpr int kExitInvalidSnapshot = 4;
constexpr int kExitOutcomeUnknown = 5;

struct Flags {
  std::string endpoints = "127.0.0.1:6000";
  std::string output = "human";
  int64_t timeout_ms = 5000;
  std::string key;
  std::string value;
  std::vector<std::string> keys;
  std::string file;
  int64_t snapshot_timeout_ms = 600000;
  int64_t transfer_to = -1;  // transfer-leader ID (a node id); -1: none given, kvd picks
  std::string peer_url;      // member add/update: http://ip:grpc_port
  uint32_t client_port = 0;  // member add/update: the member's text/RESP port
  std::string member_id;     // member promote/remove/update: decimal or 0x hex
};

bool Json(const Flags& f) { return f.output == "json"; }

int Fail(const std::string& command, const absl::Status& s) {
  std::cerr << "kvctl " << command << ": " << s.message() << "\n";
  if (s.code() == absl::StatusCode::kInvalidArgument) return kExitUsage;
  if ((s.code() == absl::StatusCode::kDeadlineExceeded ||
       s.code() == absl::StatusCode::kUnknown) &&
      command != "get" && command != "mget") {
    std::cerr << "kvctl " << command << ": the write's outcome is unknown\n";
    return kExitOutcomeUnknown;
  }
  return kExitUnavailable;
}

// Node id as kvd numbers it (config position); etcd member id = node id + 1.
std::string NodeId(uint64_t member_id) {
  return member_id == 0 ? "-" : absl::StrCat(member_id - 1);
}

std::string KvJson(const std::string& key, const std::optional<KeyValue>& kv) {
  if (!kv.has_value()) return absl::StrCat("{\"key\":", JsonString(key), ",\"found\":false}");
  return absl::StrFormat(
      "{\"key\":%s,\"found\":true,\"value\":%s,\"create_revision\":%d,\"mod_revision\":%d,"
      "\"version\":%d}",
      JsonString(kv->key), JsonString(kv->value), kv->create_revision, kv->mod_revision,
      kv->version);
}

int RunPut(EtcdClient& client, const Flags& f) {
  absl::StatusOr<int64_t> revision = client.Put(f.key, f.value);
  if (!revision.ok()) return Fail("put", revision.status());
  if (Json(f)) {
    std::cout << absl::StrFormat("{\"ok\":true,\"key\":%s,\"revision\":%d}\n", JsonString(f.key),
                                 *revision);
  } else {
    std::cout << "OK\n";
  }
  return kExitOk;
}

int RunGet(EtcdClient& client, const Flags& f) {
  absl::StatusOr<std::optional<KeyValue>> kv = client.Get(f.key);
  if (!kv.ok()) return Fail("get", kv.status());
  if (Json(f)) {
    std::cout << KvJson(f.key, *kv) << "\n";
  } else if (kv->has_value()) {
    std::cout << (*kv)->value << "\n";
  } else {
    std::cerr << "kvctl get: key not found: " << f.key << "\n";
  }
  return kv->has_value() ? kExitOk : kExitNotFound;
}

int RunDelete(EtcdClient& client, const Flags& f) {
  absl::StatusOr<int64_t> deleted = client.Delete(f.key);
  if (!deleted.ok()) return Fail("delete", deleted.status());
  if (Json(f)) {
    std::cout << absl::StrFormat("{\"key\":%s,\"deleted\":%d}\n", JsonString(f.key), *deleted);
  } else if (*deleted > 0) {
    std::cout << "OK\n";
  } else {
    std::cerr << "kvctl delete: key not found: " << f.key << "\n";
  }
  return *deleted > 0 ? kExitOk : kExitNotFound;
}

// One Range per key: each read is linearizable, but the set is not one snapshot.
int RunMget(EtcdClient& client, const Flags& f) {
  std::vector<std::optional<KeyValue>> results;
  for (const std::string& key : f.keys) {
    absl::StatusOr<std::optional<KeyValue>> kv = client.Get(key);
    if (!kv.ok()) return Fail("mget", kv.status());
    results.push_back(*std::move(kv));
  }
  bool all_found = true;
  std::vector<std::string> json;
  for (size_t i = 0; i < f.keys.size(); ++i) {
    all_found = all_found && results[i].has_value();
    if (Json(f)) {
      json.push_back(KvJson(f.keys[i], results[i]));
    } else {
      std::cout << (results[i].has_value() ? results[i]->value : "(not found)") << "\n";
    }
  }
  if (Json(f)) std::cout << "[" << absl::StrJoin(json, ",") << "]\n";
  return all_found ? kExitOk : kExitNotFound;
}

int RunStatus(EtcdClient& client, const Flags& f) {
  std::vector<EndpointStatus> statuses = client.StatusAll();
  bool any_ok = false;
  std::vector<std::string> json;
  std::vector<std::string> alarms;  // text output: after the table
  if (!Json(f)) {
    std::cout << absl::StrFormat("%-21s %-4s %-9s %-6s %-10s %-10s %-6s %-10s %-11s %s\n",
                                 "ENDPOINT", "ID", "ROLE", "TERM", "RAFT_INDEX", "APPLIED",
                                 "LEADER", "REVISION", "LOOP_MAX_MS", "TICK_GAP_MS");
  }
  for (const EndpointStatus& s : statuses) {
    if (!s.error.empty()) {
      if (Json(f)) {
        json.push_back(absl::StrFormat("{\"endpoint\":%s,\"error\":%s}", JsonString(s.endpoint),
                                       JsonString(s.error)));
      } else {
        std::cout << absl::StrFormat("%-21s unreachable: %s\n", s.endpoint, s.error);
      }
      continue;
    }
    any_ok = true;
    const char* role = s.leader_member_id == s.member_id ? "leader" : "follower";
    if (Json(f)) {
      std::vector<std::string> alarm_strings;
      for (const std::string& a : s.alarms) alarm_strings.push_back(JsonString(a));
      json.push_back(absl::StrFormat(
          "{\"endpoint\":%s,\"id\":%s,\"role\":\"%s\",\"term\":%d,\"raft_index\":%d,"
          "\"applied_index\":%d,\"leader\":%s,\"revision\":%d,\"db_size_bytes\":%d,"
          "\"loop_max_iteration_us\":%d,\"loop_max_tick_gap_us\":%d,\"alarms\":[%s]}",
          JsonString(s.endpoint), s.member_id == 0 ? "null" : NodeId(s.member_id), role, s.term,
          s.raft_index, s.applied_index,
          s.leader_member_id == 0 ? "null" : NodeId(s.leader_member_id), s.revision,
          s.db_size_bytes, s.loop_max_iteration_us, s.loop_max_tick_gap_us,
          absl::StrJoin(alarm_strings, ",")));
    } else {
      for (const std::string& a : s.alarms) {
        alarms.push_back(absl::StrFormat("ALARM %s: %s\n", s.endpoint, a));
      }
      std::cout << absl::StrFormat(
          "%-21s %-4s %-9s %-6d %-10d %-10d %-6s %-10d %-11.1f %.1f\n", s.endpoint,
          NodeId(s.member_id), role, s.term, s.raft_index, s.applied_index,
          NodeId(s.leader_member_id), s.revision, s.loop_max_iteration_us / 1000.0,
          s.loop_max_tick_gap_us / 1000.0);
    }
  }
  if (Json(f)) std::cout << "[" << absl::StrJoin(json, ",") << "]\n";
  for (const std::string& a : alarms) std::cout << a;
  if (!any_ok) {
    std::cerr << "kvctl status: no endpoint answered\n";
    return kExitUnavailable;
  }
  return kExitOk;
}

// A member id as given: decimal, or hex with 0x (etcdctl prints hex without the 0x; give
// it with 0x).
absl::StatusOr<uint64_t> ParseMemberId(const std::string& text) {
  uint64_t id = 0;
  bool ok = false;
  if (absl::StartsWith(text, "0x") || absl::StartsWith(text, "0X")) {
    ok = absl::SimpleHexAtoi(text.substr(2), &id);
  } else {
    ok = absl::SimpleAtoi(text, &id);
  }
  if (!ok || id == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "member id '", text, "' is not a member id (decimal, or hex with 0x; see member list)"));
  }
  return id;
}

std::string MemberJson(const Member& m) {
  return absl::StrFormat(
      "{\"member_id\":%d,\"node\":%s,\"name\":%s,\"learner\":%s,\"peer_url\":%s,"
      "\"client_port\":%d}",
      m.member_id, NodeId(m.member_id), JsonString(m.name), m.is_learner ? "true" : "false",
      JsonString(m.peer_urls.empty() ? "" : m.peer_urls[0]), m.client_port);
}

int RunMemberList(EtcdClient& client, const Flags& f) {
  absl::StatusOr<std::vector<Member>> members = client.Members();
  if (!members.ok()) return Fail("member list", members.status());
  std::vector<std::string> json;
  if (!Json(f)) {
    std::cout << absl::StrFormat("%-10s %-5s %-8s %-28s %s\n", "MEMBER_ID", "NODE", "ROLE",
                                 "PEER_URL", "CLIENT_PORT");
  }
  for (const Member& m : *members) {
    if (Json(f)) {
      json.push_back(MemberJson(m));
    } else {
      std::cout << absl::StrFormat(
          "%-10d %-5s %-8s %-28s %s\n", m.member_id, NodeId(m.member_id),
          m.is_learner ? "learner" : "voter", m.peer_urls.empty() ? "" : m.peer_urls[0],
          m.client_port == 0 ? "-" : absl::StrCat(m.client_port));
    }
  }
  if (Json(f)) std::cout << "[" << absl::StrJoin(json, ",") << "]\n";
  return kExitOk;
}

int RunMemberAdd(EtcdClient& client, const Flags& f) {
  absl::StatusOr<Member> m = client.MemberAdd(f.peer_url, f.client_port);
  if (!m.ok()) return Fail("member add", m.status());
  if (Json(f)) {
    std::cout << MemberJson(*m) << "\n";
  } else {
    std::cout << absl::StrFormat(
        "added member %d (node %s) as a learner at %s\nstart it with: kvd --join <any "
        "member's gRPC address> --member-id %d --advertise-ip IP --port PORT --grpc-port "
        "GRPC_PORT --data-dir <empty dir>\nthen, once it has caught up: kvctl member promote "
        "%d\n",
        m->member_id, NodeId(m->member_id), f.peer_url, m->member_id, m->member_id);
  }
  return kExitOk;
}

int RunMemberChange(EtcdClient& client, const Flags& f, const std::string& what) {
  absl::StatusOr<uint64_t> id = ParseMemberId(f.member_id);
  if (!id.ok()) return Fail(absl::StrCat("member ", what), id.status());
  absl::Status s = what == "promote" ? client.MemberPromote(*id)
                   : what == "remove" ? client.MemberRemove(*id)
                                      : client.MemberUpdate(*id, f.peer_url, f.client_port);
  if (!s.ok()) return Fail(absl::StrCat("member ", what), s);
  if (Json(f)) {
    std::cout << absl::StrFormat("{\"member_id\":%d,\"%s\":true}\n", *id,
                                 what == "promote" ? "promoted"
                                 : what == "remove" ? "removed"
                                                    : "updated");
  } else {
    std::cout << absl::StrFormat("member %d (node %s) %s\n", *id, NodeId(*id),
                                 what == "promote" ? "promoted to voter"
                                 : what == "remove" ? "removed"
                                                    : "updated");
  }
  return kExitOk;
}

int RunMembers(EtcdClient& client, const Flags& f) {
  absl::StatusOr<std::vector<Member>> members = client.Members();
  if (!members.ok()) return Fail("members", members.status());
  std::vector<std::string> json;
  for (const Member& m : *members) {
    std::string url = m.client_urls.empty() ? "" : m.client_urls[0];
    if (Json(f)) {
      json.push_back(absl::StrFormat("{\"id\":%s,\"name\":%s,\"client_url\":%s}",
                                     NodeId(m.member_id), JsonString(m.name), JsonString(url)));
    } else {
      std::cout << absl::StrFormat("%s %s %s\n", NodeId(m.member_id), m.name, url);
    }
  }
  if (Json(f)) std::cout << "[" << absl::StrJoin(json, ",") << "]\n";
  return kExitOk;
}

// Finds the leader among the endpoints (as etcdctl move-leader does) and asks it to hand
// leadership to node f.transfer_to (-1: the most up-to-date follower, kvd's pick). The
// leader may change in between (an election): then the search is made once more.
int RunTransferLeader(EtcdClient& client, const Flags& f) {
  const std::string cmd = "transfer-leader";
  auto fail = [&](const absl::Status& s) {
    std::cerr << "kvctl " << cmd << ": " << s.message() << "\n";
    switch (s.code()) {
      case absl::StatusCode::kInvalidArgument:
      case absl::StatusCode::kNotFound:
      case absl::StatusCode::kFailedPrecondition:
        return kExitUsage;  // no such node, a learner, the leader itself, one in progress
      default:
        return kExitUnavailable;
    }
  };
  absl::Status last;
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::vector<EndpointStatus> statuses = client.StatusAll();
    std::optional<size_t> leader;
    uint64_t named_leader = 0;  // a leader some endpoint names, maybe not among them
    std::vector<std::string> errors;
    for (size_t i = 0; i < statuses.size(); ++i) {
      const EndpointStatus& st = statuses[i];
      if (!st.error.empty()) {
        errors.push_back(st.error);
        continue;
      }
      if (st.leader_member_id != 0) named_leader = st.leader_member_id;
      if (st.member_id != 0 && st.member_id == st.leader_member_id) leader = i;
    }
    if (!leader) {
      if (named_leader != 0) {
        return fail(absl::UnavailableError(absl::StrCat(
            "the leader is node ", NodeId(named_leader),
            ", which is not among --endpoints (give its gRPC address)")));
      }
      return fail(absl::UnavailableError(absl::StrCat(
          "no endpoint is the leader (no leader known, or none answered)",
          errors.empty() ? "" : absl::StrCat(": ", absl::StrJoin(errors, "; ")))));
    }
    const uint64_t from = statuses[*leader].member_id;
    // etcd member id = node id + 1; 0 asks kvd to pick.
    const uint64_t target = f.transfer_to < 0 ? 0 : static_cast<uint64_t>(f.transfer_to) + 1;
    if (target == from) {
      return fail(absl::FailedPreconditionError(
          absl::StrCat("node ", f.transfer_to, " already leads")));
    }
    last = client.MoveLeader(*leader, target);
    if (last.code() == absl::StatusCode::kUnavailable) continue;  // no longer the leader
    if (!last.ok()) return fail(last);
    // The old leader answered once it knew the new one: it names it.
    EndpointStatus after = client.StatusOf(*leader);
    const uint64_t to = after.error.empty() ? after.leader_member_id : target;
    if (Json(f)) {
      std::cout << absl::StrFormat("{\"ok\":true,\"from\":%s,\"to\":%s,\"term\":%d}\n",
                                   NodeId(from), to == 0 ? "null" : NodeId(to), after.term);
    } else {
      std::cout << absl::StrFormat("leadership moved from node %s to node %s (term %d)\n",
                                   NodeId(from), NodeId(to), after.term);
    }
    return kExitOk;
  }
  return fail(last);
}

std::string MetaJson(const kv::SnapshotMeta& m) {
  return absl::StrFormat(
      "\"format_version\":%d,\"applied_index\":%d,\"applied_term\":%d,\"revision\":%d,"
      "\"members\":%s,\"created_at\":%s,\"created_at_unix_ms\":%d,\"kv_count\":%d,"
      "\"sessions_count\":%d",
      m.format_version, m.applied_index, m.applied_term, m.revision, JsonString(m.members),
      JsonString(IsoTimeUtc(m.created_at_unix_ms)), m.created_at_unix_ms, m.kv_count,
      m.sessions_count);
}

int RunSnapshotSave(EtcdClient& client, const Flags& f) {
  SaveResult result;
  SaveError error;
  if (!SaveSnapshot(&client, f.file, &result, &error)) {
    std::cerr << "kvctl snapshot save: " << error.status.message() << "\n";
    if (error.stage == SaveStage::kVerify) return kExitInvalidSnapshot;
    if (error.status.code() == absl::StatusCode::kInvalidArgument) return kExitUsage;
    return kExitUnavailable;
  }
  const kv::SnapshotMeta& m = result.meta;
  if (Json(f)) {
    std::cout << absl::StrFormat(
        "{\"file\":%s,\"endpoint\":%s,\"applied_index\":%d,\"applied_term\":%d,"
        "\"revision\":%d,\"kv_count\":%d,\"size_bytes\":%d}\n",
        JsonString(f.file), JsonString(result.download.endpoint), m.applied_index,
        m.applied_term, m.revision, m.kv_count, result.download.size_bytes);
  } else {
    std::cout << absl::StrFormat(
        "Snapshot saved to %s from %s\napplied index: %d\napplied term: %d\nrevision: %d\n"
        "keys: %d\nsize: %d bytes\n",
        f.file, result.download.endpoint, m.applied_index, m.applied_term, m.revision,
        m.kv_count, result.download.size_bytes);
  }
  return kExitOk;
}

// Needs no cluster: a full check of a local file.
int RunSnapshotStatus(const Flags& f) {
  absl::StatusOr<kv::SnapshotMeta> meta = kv::VerifySnapshot(f.file);
  if (!meta.ok()) {
    const bool missing = meta.status().code() == absl::StatusCode::kNotFound;
    std::cerr << "kvctl snapshot status: " << (missing ? "" : "invalid snapshot: ")
              << meta.status().message() << "\n";
    if (Json(f)) {
      std::cout << absl::StrFormat("{\"file\":%s,\"valid\":false,\"error\":%s}\n",
                                   JsonString(f.file), JsonString(std::string(meta.status().message())));
    }
    return missing ? kExitUsage : kExitInvalidSnapshot;
  }
  const kv::SnapshotMeta& m = *meta;
  const int64_t size_bytes = FileSizeBytes(f.file);
  if (Json(f)) {
    std::cout << absl::StrFormat("{\"file\":%s,\"valid\":true,%s,\"size_bytes\":%d,"
                                 "\"checksum_ok\":true}\n",
                                 JsonString(f.file), MetaJson(m), size_bytes);
  } else {
    std::cout << absl::StrFormat(
        "file: %s\nformat version: %d\napplied index: %d\napplied term: %d\nrevision: %d\n"
        "members: %s\ncreated at: %s\nkeys: %d\nsessions: %d\nsize: %d bytes\n"
        "checksum: ok\n",
        f.file, m.format_version, m.applied_index, m.applied_term, m.revision,
        m.members.empty() ? "(none)" : m.members, IsoTimeUtc(m.created_at_unix_ms), m.kv_count,
        m.sessions_count, size_bytes);
  }
  return kExitOk;
}

int Main(int argc, char** argv) {
  Flags f;
  CLI::App app{
      "kvctl: client for raftkv over its etcd-compatible gRPC API.\n"
      "Endpoints are tried in order; one that is unreachable or not serving (UNAVAILABLE)\n"
      "is skipped. Writes carry a session (a random id per run), so a write whose outcome is\n"
      "unknown is resent to the next endpoint and still applied at most once.\n"
      "Exit codes: 0 success, 1 key not found, 2 usage error (snapshot status: the file does\n"
      "not exist), 3 cluster unavailable or any other failure (for a write: not applied),\n"
      "4 a snapshot file failed verification (snapshot save: the received file; snapshot\n"
      "status: FILE), 5 a write's outcome is unknown (applied at most once)."};
  app.option_defaults()->always_capture_default();
  app.add_option("--endpoints", f.endpoints, "comma-separated host:port gRPC endpoints");
  app.add_option("--output", f.output, "output format")
      ->check(CLI::IsMember({"human", "json"}));
  app.add_option("--timeout-ms", f.timeout_ms, "deadline of each request to one endpoint")
      ->check(CLI::Range(int64_t{1}, int64_t{3600000}));
  app.require_subcommand(1);

  CLI::App* put = app.add_subcommand("put", "set KEY to VALUE");
  put->add_option("key", f.key, "key")->required();
  put->add_option("value", f.value, "value")->required();
  CLI::App* get = app.add_subcommand("get", "print the value of KEY (exit 1 if missing)");
  get->add_option("key", f.key, "key")->required();
  CLI::App* del = app.add_subcommand("delete", "delete KEY (exit 1 if missing)");
  del->alias("del");
  del->add_option("key", f.key, "key")->required();
  CLI::App* mget = app.add_subcommand(
      "mget", "print the values of KEYs, one per line, \"(not found)\" for missing ones "
              "(exit 1 if any is missing); each key is read separately, not as one snapshot");
  mget->add_option("keys", f.keys, "keys")->required();
  CLI::App* status = app.add_subcommand(
      "status", "ask every endpoint for its raft status and alarms (exit 3 if none answers)");
  CLI::App* transfer = app.add_subcommand(
      "transfer-leader",
      "move leadership to node ID (a node id as `members` and `status` print it; none: the "
      "most up-to-date follower). kvctl finds the leader among --endpoints and waits until "
      "the new leader is elected (a few round trips; writes are held meanwhile, not "
      "refused). Exit 2 if ID is no voter or already leads, 3 if no endpoint leads or the "
      "transfer did not finish within --timeout-ms");
  transfer->add_option("id", f.transfer_to, "node id to hand leadership to")
      ->check(CLI::NonNegativeNumber);
  CLI::App* members = app.add_subcommand("members", "list the cluster members (old form of "
                                                     "member list)");
  CLI::App* member = app.add_subcommand(
      "member", "change or list the members (README, \"Operating a cluster\"); changes go to "
                "the leader (give every member in --endpoints)");
  member->require_subcommand(1);
  CLI::App* member_list = member->add_subcommand(
      "list", "members: id, node number, voter or learner, peer URL, client port");
  CLI::App* member_add = member->add_subcommand(
      "add", "add a learner at --peer-url (its id is printed: start it with kvd --join "
             "--member-id ID, then promote it once caught up)");
  member_add->add_option("--peer-url", f.peer_url, "http://ip:grpc_port of the new member")
      ->required();
  member_add->add_option("--client-port", f.client_port,
                         "its text/RESP port (optional: the node says it when it joins)");
  CLI::App* member_promote = member->add_subcommand(
      "promote", "make learner ID a voter (refused while it lags: the error says how far)");
  member_promote->add_option("id", f.member_id, "member id (decimal, or hex with 0x)")
      ->required();
  CLI::App* member_remove = member->add_subcommand(
      "remove", "remove member ID (a removed kvd stops by itself)");
  member_remove->add_option("id", f.member_id, "member id (decimal, or hex with 0x)")
      ->required();
  CLI::App* member_update = member->add_subcommand(
      "update", "change member ID's peer URL (and client port)");
  member_update->add_option("id", f.member_id, "member id")->required();
  member_update->add_option("--peer-url", f.peer_url, "http://ip:grpc_port")->required();
  member_update->add_option("--client-port", f.client_port, "text/RESP port (0: keep)");
  CLI::App* snapshot = app.add_subcommand("snapshot", "save or check SQLite snapshot files");
  snapshot->require_subcommand(1);
  CLI::App* snapshot_save = snapshot->add_subcommand(
      "save",
      "fetch a fresh consistent snapshot from the first endpoint that answers into FILE "
      "(written as FILE.part, fsynced, verified, renamed); exit 3 if no endpoint serves it, "
      "4 if the received file fails verification");
  snapshot_save->add_option("file", f.file, "destination file")->required();
  snapshot_save->add_option("--snapshot-timeout-ms", f.snapshot_timeout_ms,
                            "deadline of the whole transfer from one endpoint")
      ->check(CLI::Range(int64_t{1}, int64_t{86400000}));
  CLI::App* snapshot_status = snapshot->add_subcommand(
      "status",
      "verify FILE in full (a snapshot or a live backup.db) and print its meta; exit 4 if "
      "it is invalid, 2 if it does not exist");
  snapshot_status->add_option("file", f.file, "snapshot file")->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitUsage;
  }

  if (snapshot_status->parsed()) return RunSnapshotStatus(f);

  ClientOptions options;
  for (absl::string_view e : absl::StrSplit(f.endpoints, ',', absl::SkipWhitespace())) {
    options.endpoints.emplace_back(e);
  }
  if (options.endpoints.empty()) {
    std::cerr << "kvctl: --endpoints is empty\n";
    return kExitUsage;
  }
  options.timeout_ms = f.timeout_ms;
  options.snapshot_timeout_ms = f.snapshot_timeout_ms;
  EtcdClient client(std::move(options));

  if (put->parsed()) return RunPut(client, f);
  if (get->parsed()) return RunGet(client, f);
  if (del->parsed()) return RunDelete(client, f);
  if (mget->parsed()) return RunMget(client, f);
  if (status->parsed()) return RunStatus(client, f);
  if (members->parsed()) return RunMembers(client, f);
  if (transfer->parsed()) return RunTransferLeader(client, f);
  if (member_list->parsed()) return RunMemberList(client, f);
  if (member_add->parsed()) return RunMemberAdd(client, f);
  if (member_promote->parsed()) return RunMemberChange(client, f, "promote");
  if (member_remove->parsed()) return RunMemberChange(client, f, "remove");
  if (member_update->parsed()) return RunMemberChange(client, f, "update");
  if (snapshot_save->parsed()) return RunSnapshotSave(client, f);
  return kExitUsage;
}

}  // namespace
}  // namespace raftkv::cli

int main(int argc, char** argv) { return raftkv::cli::Main(argc, argv); }
