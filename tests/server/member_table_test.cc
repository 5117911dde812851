// MemberTable (replication/member_table.h): applying ENTRY_CONF entries, skipping those a
// saved table already reflects, and the file round trip.
#include "server/replication/member_table.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <unistd.h>

#include <filesystem>

namespace raftkv::server {
namespace {

raftpb::Entry ConfEntry(uint64_t index, raftpb::ConfChangeType type, uint64_t id,
                        std::vector<uint64_t> voters, std::vector<uint64_t> learners,
                        uint32_t grpc_port = 0) {
  raftpb::ConfChange cc;
  cc.set_type(type);
  cc.set_node_id(id);
  for (uint64_t v : voters) cc.mutable_conf_state()->add_voters(v);
  for (uint64_t l : learners) cc.mutable_conf_state()->add_learners(l);
  if (grpc_port != 0) {
    memberpb::MemberInfo info;
    info.set_ip("10.0.0.9");
    info.set_grpc_port(grpc_port);
    cc.set_context(info.SerializeAsString());
  }
  raftpb::Entry e;
  e.set_index(index);
  e.set_type(raftpb::ENTRY_CONF);
  e.set_data(cc.SerializeAsString());
  return e;
}

TEST(MemberTableTest, AddPromoteUpdateRemoveFollowTheLog) {
  MemberTable t = MemberTable::Bootstrap(
      {{"10.0.0.1", 5000, 6000}, {"10.0.0.2", 5000, 6000}, {"10.0.0.3", 5000, 6000}});
  EXPECT_EQ(t.Voters(), (std::vector<uint64_t>{1, 2, 3}));
  ASSERT_TRUE(*t.Apply(ConfEntry(10, raftpb::CONF_ADD_LEARNER, 4, {1, 2, 3}, {4}, 6004)));
  ASSERT_NE(t.Find(4), nullptr);
  EXPECT_TRUE(t.Find(4)->learner);
  EXPECT_EQ(t.PeerAddresses(1).at(4), "10.0.0.9:6004");
  ASSERT_TRUE(*t.Apply(ConfEntry(11, raftpb::CONF_PROMOTE, 4, {1, 2, 3, 4}, {})));
  EXPECT_FALSE(t.Find(4)->learner);
  EXPECT_EQ(t.PeerAddresses(1).at(4), "10.0.0.9:6004");  // a promotion keeps the address
  ASSERT_TRUE(*t.Apply(ConfEntry(12, raftpb::CONF_UPDATE, 4, {1, 2, 3, 4}, {}, 7004)));
  EXPECT_EQ(t.PeerAddresses(1).at(4), "10.0.0.9:7004");
  ASSERT_TRUE(*t.Apply(ConfEntry(13, raftpb::CONF_REMOVE, 3, {1, 2, 4}, {})));
  EXPECT_EQ(t.Find(3), nullptr);
  EXPECT_EQ(t.Voters(), (std::vector<uint64_t>{1, 2, 4}));
  EXPECT_EQ(t.max_id_seen(), 4u);
  // An entry the table already reflects (replayed after a restart) changes nothing.
  EXPECT_FALSE(*t.Apply(ConfEntry(10, raftpb::CONF_ADD_LEARNER, 3, {1, 2, 4}, {3}, 6003)));
  EXPECT_EQ(t.Find(3), nullptr);
}

TEST(MemberTableTest, SaveAndLoadRoundTrip) {
  const std::string dir = std::filesystem::temp_directory_path() /
                          ("member_table_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/members";
  absl::StatusOr<std::optional<MemberTable>> none = MemberTable::Load(path);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  MemberTable t = MemberTable::Bootstrap({{"10.0.0.1", 5000, 6000}});
  ASSERT_TRUE(*t.Apply(ConfEntry(7, raftpb::CONF_ADD_LEARNER, 5, {1}, {5}, 6005)));
  ASSERT_TRUE(t.Save(path).ok());
  absl::StatusOr<std::optional<MemberTable>> loaded = MemberTable::Load(path);
  ASSERT_TRUE(loaded.ok() && loaded->has_value());
  EXPECT_EQ((*loaded)->index(), 7u);
  EXPECT_EQ((*loaded)->Json(), t.Json());
  EXPECT_EQ((*loaded)->max_id_seen(), 5u);
  std::filesystem::remove_all(dir);
}

// A node that joined (its table from --join, index 0, listing itself as learner 4) gets a
// snapshot taken before the entry that added it: it adopts the snapshot's members but keeps
// itself, so it does not stop as if removed, and applies its own add from the log later.
// An older or equal snapshot table changes nothing.
TEST(MemberTableTest, AdoptingAnOlderSnapshotsTableKeepsThisNode) {
  MemberTable joined = MemberTable::Bootstrap(
      {{"10.0.0.1", 5000, 6000}, {"10.0.0.2", 5000, 6000}, {"10.0.0.3", 5000, 6000}});
  joined.Set(4, MemberEntry{{"10.0.0.4", 5000, 6004}, /*learner=*/true});
  MemberTable snapshot = MemberTable::Bootstrap(
      {{"10.0.0.1", 5000, 6000}, {"10.0.0.2", 5000, 6000}, {"10.0.0.3", 5000, 6000}});
  ASSERT_TRUE(*snapshot.Apply(ConfEntry(7, raftpb::CONF_UPDATE, 2, {1, 2, 3}, {}, 6102)));
  MemberTable t = joined;
  ASSERT_TRUE(t.AdoptIfNewer(snapshot, /*self=*/4));
  EXPECT_EQ(t.index(), 7u);
  ASSERT_NE(t.Find(4), nullptr);
  EXPECT_TRUE(t.Find(4)->learner);
  EXPECT_EQ(t.Find(4)->address.grpc_port, 6004);
  EXPECT_EQ(t.Find(2)->address.grpc_port, 6102);  // the snapshot's newer address
  EXPECT_EQ(t.max_id_seen(), 4u);
  // Its own add then applies from the log as usual.
  ASSERT_TRUE(*t.Apply(ConfEntry(9, raftpb::CONF_ADD_LEARNER, 4, {1, 2, 3}, {4}, 6004)));
  EXPECT_EQ(t.Voters(), (std::vector<uint64_t>{1, 2, 3}));
  // Not newer: nothing changes.
  EXPECT_FALSE(t.AdoptIfNewer(snapshot, 4));
  EXPECT_EQ(t.index(), 9u);
}

// Review of a82f258: a node that joined after members 4 and 5 were added (its table from
// --join lists them) gets a snapshot whose table predates both: it must keep them (members
// added after that table was taken) and never take them for removed, or it refuses their
// messages as from removed members and they stop. Only removals applied (or adopted) count.
TEST(MemberTableTest, AJoinersTableKeepsMembersAddedAfterTheSnapshotAndRemovalsAreExplicit) {
  MemberTable joined;
  for (uint64_t id = 1; id <= 6; ++id) {
    joined.Set(id, MemberEntry{{"10.0.0.1", 5000, static_cast<uint16_t>(6000 + id)}, id == 6});
  }
  MemberTable snapshot = MemberTable::Bootstrap(
      {{"10.0.0.1", 5000, 6001}, {"10.0.0.1", 5000, 6002}, {"10.0.0.1", 5000, 6003}});
  ASSERT_TRUE(*snapshot.Apply(ConfEntry(5, raftpb::CONF_UPDATE, 1, {1, 2, 3}, {}, 6001)));
  ASSERT_TRUE(joined.AdoptIfNewer(snapshot, /*self=*/6));
  for (uint64_t id = 1; id <= 6; ++id) EXPECT_NE(joined.Find(id), nullptr) << id;
  EXPECT_TRUE(joined.removed().empty());
  // A removal applied is recorded, survives the file, and a newer snapshot's table that
  // predates it (an older removal set) does not forget it.
  ASSERT_TRUE(*joined.Apply(ConfEntry(9, raftpb::CONF_REMOVE, 2, {1, 3, 4, 5}, {6})));
  EXPECT_EQ(joined.removed(), (std::set<uint64_t>{2}));
  absl::StatusOr<MemberTable> back = MemberTable::Parse(joined.Serialize());
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->removed(), (std::set<uint64_t>{2}));
  MemberTable later = snapshot;
  ASSERT_TRUE(*later.Apply(ConfEntry(12, raftpb::CONF_REMOVE, 3, {1, 2}, {})));
  ASSERT_TRUE(back->AdoptIfNewer(later, 6));
  EXPECT_EQ(back->removed(), (std::set<uint64_t>{2, 3}));
}

}  // namespace
}  // namespace raftkv::server
