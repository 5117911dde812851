// SnapshotStore (snapshots/snapshot_store.h): naming, newest, prune, against real files.
#include "server/snapshots/snapshot_store.h"

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kv/state_machine.h"
#include "kv/temp_dir.h"

namespace raftkv::server {
namespace {

using kv::testing::TempDir;

// Writes a real snapshot of a store applied to `index` (term 1) at `path`.
void WriteSnapshotAt(const TempDir& tmp, uint64_t index, const std::string& path) {
  kv::StateMachineOptions o;
  o.db_path = tmp.Sub("db-" + std::to_string(index));
  auto sm = kv::StateMachine::Open(o);
  ASSERT_TRUE(sm.ok()) << sm.status();
  for (uint64_t i = 1; i <= index; ++i) {
    kvpb::Command cmd;
    auto* put = cmd.add_ops()->mutable_put();
    put->set_key("k" + std::to_string(i));
    put->set_value("v");
    ASSERT_TRUE((*sm)->Apply(i, 1, cmd).ok());
  }
  auto meta = kv::WriteSnapshot(**sm, path);
  ASSERT_TRUE(meta.ok()) << meta.status();
}

TEST(SnapshotStoreTest, NamesSortByIndex) {
  EXPECT_EQ(SnapshotStore::FileName(42, 7), "snap-00000000000000000042-7.db");
  EXPECT_LT(SnapshotStore::FileName(9, 5), SnapshotStore::FileName(10, 1));
  EXPECT_TRUE(SnapshotStore::IsSnapshotName("snap-00000000000000000042-7.db"));
  EXPECT_FALSE(SnapshotStore::IsSnapshotName("export-1700000000000-0.db"));
  EXPECT_FALSE(SnapshotStore::IsSnapshotName("snap-00000000000000000042-7.db.tmp"));
  EXPECT_FALSE(SnapshotStore::IsSnapshotName("received"));
}

TEST(SnapshotStoreTest, MissingDirectoryHoldsNothing) {
  TempDir tmp;
  SnapshotStore store(tmp.Sub("none"));
  EXPECT_TRUE(store.Names().empty());
  EXPECT_EQ(store.NewestIndexByName(), 0u);
  EXPECT_FALSE(store.Newest().has_value());
  ASSERT_TRUE(store.CreateDir().ok());
  EXPECT_TRUE(store.Names().empty());
}

TEST(SnapshotStoreTest, NewestSkipsUnreadableFilesAndHonoursTheIndexBound) {
  TempDir tmp;
  SnapshotStore store(tmp.Sub("snapshots"));
  ASSERT_TRUE(store.CreateDir().ok());
  WriteSnapshotAt(tmp, 3, store.PathFor(3, 1));
  WriteSnapshotAt(tmp, 5, store.PathFor(5, 1));
  // A newer name whose file is garbage, and files that are not snapshots at all.
  std::ofstream(store.PathFor(9, 2)) << "not a database";
  std::ofstream(store.dir() + "/export-1-0.db") << "x";
  std::ofstream(store.dir() + "/notes.txt") << "x";

  EXPECT_EQ(store.Names().size(), 3u);
  EXPECT_EQ(store.NewestIndexByName(), 9u);  // by name only: the garbage file counts
  auto newest = store.Newest();
  ASSERT_TRUE(newest.has_value());
  EXPECT_EQ(newest->meta.applied_index, 5u);
  EXPECT_EQ(newest->path, store.PathFor(5, 1));
  auto bounded = store.Newest(4);
  ASSERT_TRUE(bounded.has_value());
  EXPECT_EQ(bounded->meta.applied_index, 3u);
  EXPECT_FALSE(store.Newest(2).has_value());
}

TEST(SnapshotStoreTest, PruneKeepsTheNewestAndTouchesNothingElse) {
  TempDir tmp;
  SnapshotStore store(tmp.Sub("snapshots"));
  ASSERT_TRUE(store.CreateDir().ok());
  for (uint64_t index : {10, 2, 30, 4}) std::ofstream(store.PathFor(index, 1)) << "x";
  std::ofstream(store.dir() + "/export-1-0.db") << "x";
  store.Prune(2, /*applied_index=*/UINT64_MAX);
  EXPECT_EQ(store.Names(),
            (std::vector<std::string>{SnapshotStore::FileName(10, 1),
                                      SnapshotStore::FileName(30, 1)}));
  EXPECT_TRUE(std::ifstream(store.dir() + "/export-1-0.db").good());
  store.Prune(5, UINT64_MAX);  // fewer than kept: nothing goes
  EXPECT_EQ(store.Names().size(), 2u);
}

// A store over both directories, and one naming files in the received directory only.
class SnapshotStoreBothDirsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(store.CreateDir().ok());
    ASSERT_TRUE(received.CreateDir().ok());
  }

  TempDir tmp;
  SnapshotStore store{tmp.Sub("snapshots"), tmp.Sub("snapshots/received")};
  SnapshotStore received{store.received_dir()};
};

// Issue 9: snapshots received from a leader, and partial transfers, were never deleted.
TEST_F(SnapshotStoreBothDirsTest, PruneCoversReceivedSnapshotsAndPartialTransfers) {
  for (uint64_t index : {10, 20}) std::ofstream(store.PathFor(index, 1)) << "x";
  for (uint64_t index : {30, 50}) std::ofstream(received.PathFor(index, 2)) << "x";
  const std::string old_part = received.PathFor(25, 2) + ".4096.part";
  const std::string new_part = received.PathFor(60, 2) + ".4096.part";
  std::ofstream(old_part) << "x";
  std::ofstream(new_part) << "x";
  std::ofstream(received.dir() + "/notes.txt") << "x";

  // Applied through 40: of 10, 20 and 30 the newest two stay; 50 is not installed yet; the
  // transfer of 25 is obsolete, the one of 60 may still resume.
  store.Prune(2, /*applied_index=*/40);
  EXPECT_EQ(store.Names(), (std::vector<std::string>{SnapshotStore::FileName(20, 1)}));
  EXPECT_EQ(received.Names(), (std::vector<std::string>{SnapshotStore::FileName(30, 2),
                                                        SnapshotStore::FileName(50, 2)}));
  EXPECT_FALSE(std::filesystem::exists(old_part));
  EXPECT_TRUE(std::filesystem::exists(new_part));
  EXPECT_TRUE(std::filesystem::exists(received.dir() + "/notes.txt"));
  EXPECT_EQ(store.NewestIndexByName(), 50u);

  // Applied through 60 (installed 50, say): keep 30 and 50; the last partial file goes.
  store.Prune(2, 60);
  EXPECT_TRUE(store.Names().empty());
  EXPECT_EQ(received.Names(), (std::vector<std::string>{SnapshotStore::FileName(30, 2),
                                                        SnapshotStore::FileName(50, 2)}));
  EXPECT_FALSE(std::filesystem::exists(new_part));
}

TEST_F(SnapshotStoreBothDirsTest, NewestLooksAtReceivedSnapshotsToo) {
  WriteSnapshotAt(tmp, 3, store.PathFor(3, 1));
  WriteSnapshotAt(tmp, 5, received.PathFor(5, 1));
  auto newest = store.Newest();
  ASSERT_TRUE(newest.has_value());
  EXPECT_EQ(newest->path, received.PathFor(5, 1));
  auto bounded = store.Newest(4);
  ASSERT_TRUE(bounded.has_value());
  EXPECT_EQ(bounded->path, store.PathFor(3, 1));
}

}  // namespace
}  // namespace raftkv::server
