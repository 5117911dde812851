// WalStorage behaviour that the shared contract suite cannot see: what survives a reopen,
// segment rollover and deletion, group commit, recovery edge cases, and failed I/O.
#include "raft/wal/wal_storage.h"

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "raft/wal/wal_format.h"
#include "raft/wal/wal_test_util.h"

namespace raftkv::raft::wal {
namespace {

using testing::FaultEnv;
using testing::MakeEntries;
using testing::MakeEntry;
using testing::MakeHardState;
using testing::TempDir;

std::unique_ptr<WalStorage> OpenOk(const std::string& dir, WalOptions opts = {}) {
  absl::StatusOr<std::unique_ptr<WalStorage>> w = WalStorage::Open(dir, opts);
  EXPECT_TRUE(w.ok()) << w.status();
  if (!w.ok()) return nullptr;
  return std::move(*w);
}

std::vector<std::string> SegmentFiles(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name != "LOCK") out.push_back(name);  // segments and *.tmp files
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<uint64_t> Terms(const WalStorage& w) {
  std::vector<uint64_t> out;
  for (uint64_t i = w.FirstIndex(); i <= w.LastIndex(); ++i) out.push_back(*w.Term(i));
  return out;
}

// Everything observable through LogStorage, captured so it can be compared after a reopen
// (the directory lock allows one open WalStorage at a time).
struct LogImage {
  std::string hard_state, snapshot;
  uint64_t first = 0, last = 0;
  std::vector<std::string> entries;
};

LogImage Capture(const WalStorage& w) {
  LogImage img{w.hard_state().SerializeAsString(), w.snapshot_metadata().SerializeAsString(),
               w.FirstIndex(), w.LastIndex(), {}};
  auto e = w.Entries(w.FirstIndex(), w.LastIndex() + 1, ~0ull);
  EXPECT_TRUE(e.ok());
  if (e.ok()) {
    for (const raftpb::Entry& x : *e) img.entries.push_back(x.SerializeAsString());
  }
  return img;
}

void ExpectSameLog(const LogImage& want, const WalStorage& got) {
  const LogImage g = Capture(got);
  EXPECT_EQ(want.hard_state, g.hard_state);
  EXPECT_EQ(want.snapshot, g.snapshot);
  EXPECT_EQ(want.first, g.first);
  EXPECT_EQ(want.last, g.last);
  EXPECT_EQ(want.entries, g.entries);
}

// Closes `w` (like a crash: its unsynced writes are lost), reopens `dir`, and checks that the
// reopened log shows exactly what `w` showed. Callers Sync first.
std::unique_ptr<WalStorage> ReopenSame(std::unique_ptr<WalStorage>& w, const std::string& dir,
                                       WalOptions opts = {}) {
  const LogImage before = Capture(*w);
  w.reset();
  auto r = OpenOk(dir, opts);
  if (r != nullptr) ExpectSameLog(before, *r);
  return r;
}

TEST(WalStorageTest, NewDirectoryStartsEmptyWithOneSegment) {
  TempDir tmp;
  auto w = OpenOk(tmp.wal());
  EXPECT_EQ(1u, w->FirstIndex());
  EXPECT_EQ(0u, w->LastIndex());
  EXPECT_EQ(0u, *w->Term(0));
  EXPECT_EQ((std::vector<std::string>{SegmentFileName(1)}), SegmentFiles(tmp.wal()));
  w.reset();
  auto again = OpenOk(tmp.wal());
  EXPECT_EQ(0u, again->LastIndex());
  EXPECT_FALSE(again->recovery_report().truncated_torn_tail);
}

TEST(WalStorageTest, CreatesMissingParentDirectories) {
  TempDir tmp;
  auto w = OpenOk(tmp.path() + "/data/node1/wal");
  ASSERT_NE(nullptr, w);
  EXPECT_TRUE(std::filesystem::exists(tmp.path() + "/data/node1/wal/" + SegmentFileName(1)));
}

TEST(WalStorageTest, ReopenPreservesSyncedStateAndDropsUnsynced) {
  TempDir tmp;
  auto w = OpenOk(tmp.wal());
  ASSERT_TRUE(w->SetHardState(MakeHardState(2, 1, 3)).ok());
  ASSERT_TRUE(w->Append(MakeEntries(1, 6, 2)).ok());
  ASSERT_TRUE(w->Sync().ok());
  // Not synced: a crash (destruction without Sync) loses these.
  ASSERT_TRUE(w->Append(MakeEntries(6, 8, 2)).ok());
  ASSERT_TRUE(w->SetHardState(MakeHardState(3, 0, 5)).ok());
  w.reset();

  auto r = OpenOk(tmp.wal());
  EXPECT_EQ(5u, r->LastIndex());
  EXPECT_EQ(2u, r->hard_state().term());
  EXPECT_EQ(1u, r->hard_state().vote());
  EXPECT_EQ(3u, r->hard_state().commit());
  auto e = r->Entries(1, 6, ~0ull);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(MakeEntry(4, 2).data(), (*e)[3].data());
}

TEST(WalStorageTest, ConflictTruncationIsDurable) {
  TempDir tmp;
  auto w = OpenOk(tmp.wal());
  ASSERT_TRUE(w->Append(MakeEntries(1, 11, 1)).ok());
  ASSERT_TRUE(w->Sync().ok());
  ASSERT_TRUE(w->Append(MakeEntries(4, 6, 2)).ok());  // replaces 4..10 with 4..5
  ASSERT_TRUE(w->Sync().ok());
  EXPECT_EQ(5u, w->LastIndex());
  auto r = ReopenSame(w, tmp.wal());
  EXPECT_EQ((std::vector<uint64_t>{1, 1, 1, 2, 2}), Terms(*r));
}

TEST(WalStorageTest, OneFsyncPerBatch) {
  TempDir tmp;
  FaultEnv env;
  WalOptions opts;
  opts.env = &env;
  auto w = OpenOk(tmp.wal(), opts);
  const uint64_t before = w->fsync_count();
  for (uint64_t i = 1; i <= 100; ++i) ASSERT_TRUE(w->Append({MakeEntry(i, 1)}).ok());
  ASSERT_TRUE(w->SetHardState(MakeHardState(1, 1, 50)).ok());
  const int env_before = env.file_syncs();
  ASSERT_TRUE(w->Sync().ok());
  EXPECT_EQ(before + 1, w->fsync_count());
  EXPECT_EQ(env_before + 1, env.file_syncs());
  ASSERT_TRUE(w->Sync().ok());  // nothing new: no fsync
  EXPECT_EQ(env_before + 1, env.file_syncs());
}

TEST(WalStorageTest, RolloverAndReopenAcrossSegments) {
  TempDir tmp;
  WalOptions opts;
  opts.max_segment_bytes = 4096;
  auto w = OpenOk(tmp.wal(), opts);
  const std::string payload(200, 'x');
  for (uint64_t i = 1; i <= 100; ++i) {
    ASSERT_TRUE(w->Append({MakeEntry(i, 1 + i / 30, payload)}).ok());
    if (i % 7 == 0) {
      ASSERT_TRUE(w->SetHardState(MakeHardState(1 + i / 30, 1, i - 3)).ok());
    }
  }
  ASSERT_TRUE(w->Sync().ok());
  EXPECT_GT(w->segment_count(), 4u);
  EXPECT_EQ(w->segment_count(), SegmentFiles(tmp.wal()).size());
  for (const std::string& f : SegmentFiles(tmp.wal())) {
    // Each segment is at most one record past the limit.
    EXPECT_LE(std::filesystem::file_size(tmp.wal() + "/" + f), 4096u + 300u) << f;
  }
  const size_t segments = w->segment_count();
  auto r = ReopenSame(w, tmp.wal(), opts);
  EXPECT_EQ(segments, r->recovery_report().segments);
}

TEST(WalStorageTest, ConflictTruncationAcrossSegments) {
  TempDir tmp;
  WalOptions opts;
  opts.max_segment_bytes = 4096;
  auto w = OpenOk(tmp.wal(), opts);
  const std::string payload(300, 'y');
  for (uint64_t i = 1; i <= 60; ++i) ASSERT_TRUE(w->Append({MakeEntry(i, 1, payload)}).ok());
  ASSERT_TRUE(w->Sync().ok());
  ASSERT_GT(w->segment_count(), 3u);
  ASSERT_TRUE(w->Append(MakeEntries(5, 8, 2)).ok());  // entry 5 lives in the first segment
  ASSERT_TRUE(w->Sync().ok());
  w.reset();
  auto r = OpenOk(tmp.wal(), opts);
  EXPECT_EQ(7u, r->LastIndex());
  EXPECT_EQ((std::vector<uint64_t>{1, 1, 1, 1, 2, 2, 2}), Terms(*r));
}

TEST(WalStorageTest, CompactDeletesWholeSegmentsAndReopenKnowsTheStart) {
  TempDir tmp;
  WalOptions opts;
  opts.max_segment_bytes = 4096;
  FaultEnv env;
  opts.env = &env;
  auto w = OpenOk(tmp.wal(), opts);
  const std::string payload(300, 'z');
  for (uint64_t i = 1; i <= 60; ++i) {
    ASSERT_TRUE(w->Append({MakeEntry(i, i < 30 ? 1 : 2, payload)}).ok());
  }
  ASSERT_TRUE(w->SetHardState(MakeHardState(2, 3, 55)).ok());
  ASSERT_TRUE(w->Sync().ok());
  const size_t segments = w->segment_count();
  ASSERT_GT(segments, 4u);

  // Nothing below index 1's segment end can go yet.
  ASSERT_TRUE(w->Compact(1).ok());
  EXPECT_EQ(segments, SegmentFiles(tmp.wal()).size());

  const int dir_syncs = env.dir_syncs();
  ASSERT_TRUE(w->Compact(45).ok());
  EXPECT_EQ(46u, w->FirstIndex());
  EXPECT_EQ(2u, *w->Term(45));
  EXPECT_EQ(absl::StatusCode::kOutOfRange, w->Term(44).status().code());
  EXPECT_LT(w->segment_count(), segments);
  EXPECT_EQ(w->segment_count(), SegmentFiles(tmp.wal()).size());
  // Each deletion made durable before the next.
  EXPECT_EQ(dir_syncs + static_cast<int>(segments - w->segment_count()), env.dir_syncs());

  // The compaction marker was synced before deleting, so a crash now keeps the right start.
  auto r = ReopenSame(w, tmp.wal(), opts);
  EXPECT_EQ(46u, r->FirstIndex());
  EXPECT_EQ(2u, *r->Term(45));
  EXPECT_EQ(55u, r->hard_state().commit());

  // And the reopened log keeps working: more appends, compaction of everything, reopen.
  ASSERT_TRUE(r->Append(MakeEntries(61, 70, 3)).ok());
  ASSERT_TRUE(r->Compact(69).ok());
  ASSERT_TRUE(r->Sync().ok());
  auto r2 = ReopenSame(r, tmp.wal(), opts);
  EXPECT_EQ(70u, r2->FirstIndex());
  EXPECT_EQ(69u, r2->LastIndex());
  EXPECT_EQ(3u, *r2->Term(69));
}

TEST(WalStorageTest, ApplySnapshotIsDurableOnReturnAndDeletesOldSegments) {
  TempDir tmp;
  WalOptions opts;
  opts.max_segment_bytes = 4096;
  auto w = OpenOk(tmp.wal(), opts);
  for (uint64_t i = 1; i <= 40; ++i) {
    ASSERT_TRUE(w->Append({MakeEntry(i, 1, std::string(300, 'q'))}).ok());
  }
  ASSERT_TRUE(w->Sync().ok());
  ASSERT_TRUE(w->SetHardState(MakeHardState(4, 2, 100)).ok());  // not synced explicitly
  raftpb::SnapshotMetadata meta;
  meta.set_index(100);
  meta.set_term(4);
  meta.mutable_conf_state()->add_voters(1);
  meta.mutable_conf_state()->add_voters(2);
  ASSERT_TRUE(w->ApplySnapshot(meta).ok());
  EXPECT_EQ(1u, SegmentFiles(tmp.wal()).size());
  EXPECT_EQ(101u, w->FirstIndex());
  EXPECT_EQ(100u, w->LastIndex());
  w.reset();  // no Sync: ApplySnapshot alone must be durable

  auto r = OpenOk(tmp.wal(), opts);
  EXPECT_EQ(101u, r->FirstIndex());
  EXPECT_EQ(4u, *r->Term(100));
  EXPECT_EQ(2, r->snapshot_metadata().conf_state().voters_size());
  EXPECT_EQ(100u, r->hard_state().commit());
  ASSERT_TRUE(r->Append(MakeEntries(101, 103, 4)).ok());
  ASSERT_TRUE(r->Sync().ok());
  auto r2 = ReopenSame(r, tmp.wal(), opts);
  EXPECT_EQ(102u, r2->LastIndex());
}

// A crash between sealing a segment and naming its successor leaves a sealed newest segment
// and a *.tmp file. Emulated by failing the rename; the restart must keep every entry of the
// sealed segment, drop the tmp file and start a fresh segment.
TEST(WalStorageTest, CrashAfterSealBeforeNextSegmentRecovers) {
  TempDir tmp;
  FaultEnv env;
  WalOptions opts;
  opts.max_segment_bytes = 4096;
  opts.env = &env;
  auto w = OpenOk(tmp.wal(), opts);
  env.FailRenameAfter(1);
  uint64_t appended = 0;
  absl::Status s;
  for (uint64_t i = 1; i <= 40 && s.ok(); ++i) {
    s = w->Append({MakeEntry(i, 1, std::string(300, 'a'))});
    if (s.ok()) appended = i;
  }
  ASSERT_EQ(absl::StatusCode::kInternal, s.code());
  ASSERT_GT(appended, 5u);
  w.reset();
  ASSERT_EQ(2u, SegmentFiles(tmp.wal()).size());  // sealed segment 1 and segment 2's tmp

  auto r = OpenOk(tmp.wal(), {.max_segment_bytes = 4096});
  EXPECT_EQ(appended, r->LastIndex());  // the seal fsynced them, unasked
  EXPECT_EQ((std::vector<std::string>{SegmentFileName(1), SegmentFileName(2)}),
            SegmentFiles(tmp.wal()));
  ASSERT_TRUE(r->Append({MakeEntry(appended + 1, 1)}).ok());
  ASSERT_TRUE(r->Sync().ok());
  auto r2 = ReopenSame(r, tmp.wal(), {.max_segment_bytes = 4096});
}

TEST(WalStorageTest, DirectoryIsLockedWhileOpen) {
  TempDir tmp;
  auto w = OpenOk(tmp.wal());
  absl::StatusOr<std::unique_ptr<WalStorage>> second = WalStorage::Open(tmp.wal(), {});
  EXPECT_EQ(absl::StatusCode::kFailedPrecondition, second.status().code()) << second.status();
  w.reset();
  EXPECT_TRUE(WalStorage::Open(tmp.wal(), {}).ok());
}

TEST(WalStorageTest, MissingMiddleSegmentIsDataLoss) {
  TempDir tmp;
  WalOptions opts;
  opts.max_segment_bytes = 4096;
  auto w = OpenOk(tmp.wal(), opts);
  for (uint64_t i = 1; i <= 40; ++i) {
    ASSERT_TRUE(w->Append({MakeEntry(i, 1, std::string(300, 'm'))}).ok());
  }
  ASSERT_TRUE(w->Sync().ok());
  w.reset();
  const std::vector<std::string> files = SegmentFiles(tmp.wal());
  ASSERT_GE(files.size(), 3u);
  std::filesystem::remove(tmp.wal() + "/" + files[1]);
  absl::StatusOr<std::unique_ptr<WalStorage>> r = WalStorage::Open(tmp.wal(), opts);
  EXPECT_EQ(absl::StatusCode::kDataLoss, r.status().code());
  EXPECT_NE(std::string::npos, r.status().message().find(files[1])) << r.status();
}

// Deleting the oldest segment leaves no hole in the sequence numbers, but its entries were
// not compacted: the start records of the next segment reveal the gap.
TEST(WalStorageTest, MissingOldestUncompactedSegmentIsDataLoss) {
  TempDir tmp;
  WalOptions opts;
  opts.max_segment_bytes = 4096;
  auto w = OpenOk(tmp.wal(), opts);
  for (uint64_t i = 1; i <= 30; ++i) {
    ASSERT_TRUE(w->Append({MakeEntry(i, 1, std::string(300, 'o'))}).ok());
  }
  ASSERT_TRUE(w->Sync().ok());
  w.reset();
  std::filesystem::remove(tmp.wal() + "/" + SegmentFileName(1));
  absl::StatusOr<std::unique_ptr<WalStorage>> r = WalStorage::Open(tmp.wal(), opts);
  EXPECT_EQ(absl::StatusCode::kDataLoss, r.status().code());
  EXPECT_NE(std::string::npos, r.status().message().find("missing")) << r.status();
}

TEST(WalStorageTest, RenamedSegmentWithWrongSeqIsDataLoss) {
  TempDir tmp;
  { auto w = OpenOk(tmp.wal()); }
  std::filesystem::rename(tmp.wal() + "/" + SegmentFileName(1),
                          tmp.wal() + "/" + SegmentFileName(2));
  EXPECT_EQ(absl::StatusCode::kDataLoss, WalStorage::Open(tmp.wal(), {}).status().code());
}

TEST(WalStorageTest, FailedFsyncIsStickyAndFatal) {
  TempDir tmp;
  FaultEnv env;
  WalOptions opts;
  opts.env = &env;
  auto w = OpenOk(tmp.wal(), opts);
  ASSERT_TRUE(w->Append(MakeEntries(1, 4, 1)).ok());
  ASSERT_TRUE(w->Sync().ok());
  ASSERT_TRUE(w->Append(MakeEntries(4, 6, 1)).ok());
  env.FailFileSyncAfter(1);
  const absl::Status s = w->Sync();
  ASSERT_EQ(absl::StatusCode::kInternal, s.code());
  EXPECT_NE(std::string::npos, s.message().find("must exit")) << s;
  // Every later write fails with the same error, even though the disk is fine again.
  EXPECT_EQ(s, w->Sync());
  EXPECT_EQ(s, w->Append({MakeEntry(6, 1)}));
  EXPECT_EQ(s, w->SetHardState(MakeHardState(9, 9, 0)));
  EXPECT_EQ(s, w->Compact(2));
  raftpb::SnapshotMetadata meta;
  meta.set_index(10);
  EXPECT_EQ(s, w->ApplySnapshot(meta));
  EXPECT_EQ(s, w->error());
  // Reads still answer from memory; nothing changed after the failure.
  EXPECT_EQ(5u, w->LastIndex());
  EXPECT_EQ(0u, w->hard_state().term());
  w.reset();
  // Restart: what was acknowledged (synced) is there.
  auto r = OpenOk(tmp.wal());
  EXPECT_GE(r->LastIndex(), 3u);
}

TEST(WalStorageTest, FailedDirectorySyncDuringRolloverIsSticky) {
  TempDir tmp;
  FaultEnv env;
  WalOptions opts;
  opts.env = &env;
  opts.max_segment_bytes = 4096;
  auto w = OpenOk(tmp.wal(), opts);
  env.FailDirSyncAfter(1);
  absl::Status s;
  for (uint64_t i = 1; i <= 40 && s.ok(); ++i) {
    s = w->Append({MakeEntry(i, 1, std::string(300, 'd'))});
  }
  ASSERT_EQ(absl::StatusCode::kInternal, s.code());
  EXPECT_EQ(s, w->Sync());
}

TEST(WalStorageTest, FailedWriteIsSticky) {
  TempDir tmp;
  FaultEnv env;
  WalOptions opts;
  opts.env = &env;
  auto w = OpenOk(tmp.wal(), opts);
  ASSERT_TRUE(w->Append(MakeEntries(1, 3, 1)).ok());
  env.FailAppendAfter(1);
  const absl::Status s = w->Sync();
  ASSERT_EQ(absl::StatusCode::kInternal, s.code());
  EXPECT_EQ(s, w->Sync());
  EXPECT_EQ(s, w->Append({MakeEntry(3, 1)}));
}

TEST(WalStorageTest, ContractViolationsAreNotSticky) {
  TempDir tmp;
  auto w = OpenOk(tmp.wal());
  EXPECT_EQ(absl::StatusCode::kInvalidArgument, w->Append({MakeEntry(5, 1)}).code());
  EXPECT_EQ(absl::StatusCode::kInvalidArgument, w->Compact(3).code());
  WalOptions small;
  small.max_record_bytes = 1024;
  auto w2 = OpenOk(tmp.path() + "/other", small);
  EXPECT_EQ(absl::StatusCode::kInvalidArgument,
            w2->Append({MakeEntry(1, 1, std::string(2000, 'b'))}).code());
  EXPECT_TRUE(w->error().ok());
  EXPECT_TRUE(w->Append({MakeEntry(1, 1)}).ok());
  EXPECT_TRUE(w2->Append({MakeEntry(1, 1)}).ok());
}

TEST(WalStorageTest, OptionsAreValidated) {
  TempDir tmp;
  WalOptions bad;
  bad.max_segment_bytes = 10;
  EXPECT_EQ(absl::StatusCode::kInvalidArgument, WalStorage::Open(tmp.wal(), bad).status().code());
  bad = WalOptions();
  bad.max_buffer_bytes = 0;
  EXPECT_EQ(absl::StatusCode::kInvalidArgument, WalStorage::Open(tmp.wal(), bad).status().code());
}

TEST(WalStorageTest, SmallWriteBufferStillSyncsCorrectly) {
  TempDir tmp;
  WalOptions opts;
  opts.max_buffer_bytes = 100;  // flushes (without fsync) almost every record
  auto w = OpenOk(tmp.wal(), opts);
  ASSERT_TRUE(w->Append(MakeEntries(1, 50, 1)).ok());
  ASSERT_TRUE(w->Sync().ok());
  ReopenSame(w, tmp.wal(), opts);
}


// Issue 9, item 3: Open cannot know whether the newest segment's bytes were synced before the
// last stop (a killed process leaves them in the page cache), so it fsyncs that segment and
// the directory before it reports anything as stable. (wal_crash_test.cc shows the loss.)
TEST(WalStorageTest, OpenSyncsTheNewestSegmentAndTheDirectory) {
  TempDir tmp;
  {
    auto w = OpenOk(tmp.wal());
    ASSERT_TRUE(w->Append(MakeEntries(1, 4, 1)).ok());
    ASSERT_TRUE(w->Sync().ok());
  }
  FaultEnv env;
  WalOptions opts;
  opts.env = &env;
  auto r = OpenOk(tmp.wal(), opts);
  ASSERT_NE(nullptr, r);
  EXPECT_EQ(3u, r->LastIndex());
  EXPECT_EQ(1, env.file_syncs());
  EXPECT_EQ(1, env.dir_syncs());
  EXPECT_EQ(1u, r->fsync_count());
}

// A failed fsync at recovery is as fatal as one later: Open fails and says so.
TEST(WalStorageTest, FailedFsyncDuringRecoveryFailsOpen) {
  TempDir tmp;
  {
    auto w = OpenOk(tmp.wal());
    ASSERT_TRUE(w->Append(MakeEntries(1, 4, 1)).ok());
    ASSERT_TRUE(w->Sync().ok());
  }
  for (const bool fail_dir : {false, true}) {
    SCOPED_TRACE(fail_dir ? "directory fsync fails" : "segment fsync fails");
    FaultEnv env;
    if (fail_dir) {
      env.FailDirSyncAfter(1);
    } else {
      env.FailFileSyncAfter(1);
    }
    WalOptions opts;
    opts.env = &env;
    absl::StatusOr<std::unique_ptr<WalStorage>> r = WalStorage::Open(tmp.wal(), opts);
    EXPECT_EQ(absl::StatusCode::kInternal, r.status().code()) << r.status();
    EXPECT_NE(std::string::npos, r.status().message().find("injected")) << r.status();
  }
}


// ---- The entry cache (issue 9, item 4): memory bounded by max_cached_bytes ----

std::string FileContents(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
}

TEST(WalStorageTest, CacheIsBoundedAndOlderEntriesAreReadFromTheSegments) {
  TempDir tmp;
  FaultEnv env;
  WalOptions opts;
  opts.env = &env;
  opts.max_segment_bytes = 4096;
  const uint64_t entry_bytes = MakeEntry(1, 1, std::string(300, 'c')).ByteSizeLong();
  opts.max_cached_bytes = 10 * entry_bytes + entry_bytes / 2;  // room for 10 entries
  auto w = OpenOk(tmp.wal(), opts);
  std::vector<raftpb::Entry> want;
  for (uint64_t i = 1; i <= 100; ++i) {
    want.push_back(MakeEntry(i, 1 + i / 40, std::string(300, 'c')));
    ASSERT_TRUE(w->Append({want.back()}).ok());
    if (i % 7 == 0) ASSERT_TRUE(w->Sync().ok());
  }
  ASSERT_GT(w->segment_count(), 5u);
  EXPECT_EQ(10u, w->cached_entries());
  EXPECT_EQ(10 * entry_bytes, w->cached_bytes());
  // Term() and reads of the cached entries never touch the files.
  for (uint64_t i = 1; i <= 100; ++i) EXPECT_EQ(want[i - 1].term(), *w->Term(i));
  auto recent = w->Entries(91, 101, ~0ull);
  ASSERT_TRUE(recent.ok());
  EXPECT_EQ(10u, recent->size());
  EXPECT_EQ(0, env.file_reads());
  // The 90 older ones are read back, one pread each, across the segments and the buffer.
  auto all = w->Entries(1, 101, ~0ull);
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(100u, all->size());
  for (size_t i = 0; i < 100; ++i) {
    ASSERT_EQ(want[i].SerializeAsString(), (*all)[i].SerializeAsString()) << i;
  }
  EXPECT_LE(env.file_reads(), 90);
  // A byte limit stops before reading more than it returns.
  const int reads = env.file_reads();
  auto limited = w->Entries(1, 101, 3 * entry_bytes);
  ASSERT_TRUE(limited.ok());
  EXPECT_EQ(3u, limited->size());
  EXPECT_EQ(reads + 3, env.file_reads());
}

TEST(WalStorageTest, CacheLimitZeroReadsEverythingBackAndUnlimitedKeepsAll) {
  TempDir tmp;
  for (const uint64_t limit : {uint64_t{0}, ~uint64_t{0}}) {
    SCOPED_TRACE(limit == 0 ? "no cache" : "unlimited");
    FaultEnv env;
    WalOptions opts;
    opts.env = &env;
    opts.max_cached_bytes = limit;
    const std::string dir = tmp.path() + (limit == 0 ? "/none" : "/all");
    auto w = OpenOk(dir, opts);
    ASSERT_TRUE(w->Append(MakeEntries(1, 21, 1)).ok());
    // Not yet written (the batch is in the write buffer): still readable.
    auto e = w->Entries(1, 21, ~0ull);
    ASSERT_TRUE(e.ok()) << e.status();
    EXPECT_EQ(MakeEntry(20, 1).data(), e->back().data());
    ASSERT_TRUE(w->Sync().ok());
    e = w->Entries(1, 21, ~0ull);
    ASSERT_TRUE(e.ok()) << e.status();
    EXPECT_EQ(MakeEntry(7, 1).data(), (*e)[6].data());
    EXPECT_EQ(limit == 0 ? 0u : 20u, w->cached_entries());
    EXPECT_EQ(limit == 0 ? 20 : 0, env.file_reads());
  }
}

// After a restart the cache is empty: every entry is read from the files until new ones are
// appended; a conflicting suffix that starts below the cache drops it.
TEST(WalStorageTest, RestartAndConflictTruncationWithTheCache) {
  TempDir tmp;
  WalOptions opts;
  opts.max_segment_bytes = 4096;
  opts.max_cached_bytes = 2000;
  auto w = OpenOk(tmp.wal(), opts);
  for (uint64_t i = 1; i <= 60; ++i) {
    ASSERT_TRUE(w->Append({MakeEntry(i, 1, std::string(200, 'k'))}).ok());
  }
  ASSERT_TRUE(w->Sync().ok());
  auto r = ReopenSame(w, tmp.wal(), opts);
  EXPECT_EQ(0u, r->cached_entries());
  ASSERT_TRUE(r->Append(MakeEntries(61, 64, 1)).ok());
  EXPECT_EQ(3u, r->cached_entries());
  // Replace 10..63 (the cache and many evicted entries in older segments) with 10..12.
  ASSERT_TRUE(r->Append(MakeEntries(10, 13, 2)).ok());
  EXPECT_EQ(3u, r->cached_entries());
  EXPECT_EQ(12u, r->LastIndex());
  auto e = r->Entries(8, 13, ~0ull);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(std::string(200, 'k'), (*e)[0].data());
  EXPECT_EQ(MakeEntry(10, 2).data(), (*e)[2].data());
  ASSERT_TRUE(r->Sync().ok());
  auto r2 = ReopenSame(r, tmp.wal(), opts);
  const std::vector<uint64_t> terms = Terms(*r2);
  ASSERT_EQ(12u, terms.size());
  EXPECT_EQ((std::vector<uint64_t>{1, 2, 2, 2}), std::vector<uint64_t>(terms.begin() + 8, terms.end()));
}

// A record read back that is not what the index says is corruption: kDataLoss naming the
// file and the offset, and the WAL stops accepting writes (the caller exits).
TEST(WalStorageTest, BadRecordReadBackIsDataLoss) {
  TempDir tmp;
  WalOptions opts;
  opts.max_cached_bytes = 0;
  auto w = OpenOk(tmp.wal(), opts);
  ASSERT_TRUE(w->Append(MakeEntries(1, 11, 1)).ok());
  ASSERT_TRUE(w->Sync().ok());
  const std::string path = tmp.wal() + "/" + SegmentFileName(1);
  std::string data = FileContents(path);
  const size_t at = data.find(MakeEntry(5, 1).data());
  ASSERT_NE(std::string::npos, at);
  data[at] ^= 0x01;
  WriteFile(path, data);

  EXPECT_TRUE(w->Entries(1, 5, ~0ull).ok());  // the entries before it are fine
  auto bad = w->Entries(3, 8, ~0ull);
  ASSERT_EQ(absl::StatusCode::kDataLoss, bad.status().code()) << bad.status();
  EXPECT_NE(std::string::npos, bad.status().message().find(SegmentFileName(1))) << bad.status();
  EXPECT_NE(std::string::npos, bad.status().message().find("checksum")) << bad.status();
  EXPECT_EQ(bad.status(), w->Append({MakeEntry(11, 1)}));
  EXPECT_EQ(bad.status(), w->Sync());

  // A segment cut short under the WAL: the read runs past its end.
  w.reset();
  auto r = OpenOk(tmp.path() + "/short", opts);
  ASSERT_TRUE(r->Append(MakeEntries(1, 11, 1)).ok());
  ASSERT_TRUE(r->Sync().ok());
  const std::string short_path = tmp.path() + "/short/" + SegmentFileName(1);
  std::filesystem::resize_file(short_path, std::filesystem::file_size(short_path) - 5);
  auto cut = r->Entries(10, 11, ~0ull);
  EXPECT_EQ(absl::StatusCode::kDataLoss, cut.status().code()) << cut.status();
  EXPECT_NE(std::string::npos, cut.status().message().find(SegmentFileName(1))) << cut.status();
}

TEST(WalStorageTest, CompactionDropsCachedEntries) {
  TempDir tmp;
  WalOptions opts;
  const uint64_t entry_bytes = MakeEntry(1, 1, "same size").ByteSizeLong();
  opts.max_cached_bytes = 5 * entry_bytes;
  auto w = OpenOk(tmp.wal(), opts);
  for (uint64_t i = 1; i <= 10; ++i) {
    ASSERT_TRUE(w->Append({MakeEntry(i, 1, "same size")}).ok());
  }
  EXPECT_EQ(5u, w->cached_entries());
  ASSERT_TRUE(w->Compact(3).ok());  // below the cache: nothing cached goes
  EXPECT_EQ(5u, w->cached_entries());
  ASSERT_TRUE(w->Compact(8).ok());
  EXPECT_EQ(2u, w->cached_entries());
  EXPECT_EQ(2 * entry_bytes, w->cached_bytes());
  ASSERT_TRUE(w->Compact(10).ok());
  EXPECT_EQ(0u, w->cached_entries());
  EXPECT_EQ(0u, w->cached_bytes());
  raftpb::SnapshotMetadata meta;
  meta.set_index(20);
  meta.set_term(2);
  ASSERT_TRUE(w->Append(MakeEntries(11, 13, 1)).ok());
  ASSERT_TRUE(w->ApplySnapshot(meta).ok());
  EXPECT_EQ(0u, w->cached_entries());
  EXPECT_EQ(0u, w->cached_bytes());
}

}  // namespace
}  // namespace raftkv::raft::wal
