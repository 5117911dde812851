// RaftPeerService::Forward (peer/peer_service.h): the leader's handler of a forwarded write
// answers by its deadline even when the raft loop never does (issue 10, item 2).
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "grpcpp/grpcpp.h"
#include "server/peer/forwarder.h"
#include "server/peer/peer_channels.h"
#include "server/peer/peer_service.h"

namespace raftkv::server {
namespace {

// Keeps every forwarded write's callback without answering it.
class SilentHandler : public PeerHandler {
 public:
  void Deliver(raftpb::Message) override {}
  bool IsRemovedMember(uint64_t) override { return false; }
  void WriteFromPeer(kvpb::Command, ForwardDone done) override {
    absl::MutexLock lock(&mu_);
    held_ = std::move(done);
  }
  // Answers the held write now (late, after the handler gave up).
  void AnswerLate() {
    ForwardDone done;
    {
      absl::MutexLock lock(&mu_);
      done = std::move(held_);
    }
    if (done) std::move(done)(absl::InternalError("answered after the deadline"));
  }

 private:
  absl::Mutex mu_;
  ForwardDone held_ ABSL_GUARDED_BY(mu_);
};

// Forwards one write to a server running `service` and returns the follower's view of it.
// `timeout_ms`: the follower's deadline for the call.
absl::StatusOr<ForwardResult> ForwardTo(grpc::Service* service, uint32_t timeout_ms = 5000) {
  grpc::ServerBuilder b;
  int port = 0;
  b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  b.RegisterService(service);
  std::unique_ptr<grpc::Server> server = b.BuildAndStart();
  EXPECT_NE(port, 0);
  PeerChannels channels({{2, "127.0.0.1:" + std::to_string(port)}});
  Forwarder forwarder(&channels);
  absl::Notification done;
  absl::StatusOr<ForwardResult> out = absl::InternalError("not answered");
  forwarder.Forward(2, kvpb::Command().SerializeAsString(), timeout_ms,
                    [&](absl::StatusOr<ForwardResult> r) {
                      out = std::move(r);
                      done.Notify();
                    });
  done.WaitForNotification();
  server->Shutdown();
  return out;
}

TEST(PeerForwardTest, ForwardAnswersByItsMaxWaitWhenTheLoopNeverDoes) {
  SilentHandler handler;
  RaftPeerService service(&handler, ::testing::TempDir(), absl::Milliseconds(200));
  // The follower waits up to 60 s: the answer it gets must be the service's, at its bound.
  absl::StatusOr<ForwardResult> r = ForwardTo(&service, 60000);
  handler.AnswerLate();  // after the call ended: must be harmless
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded) << r.status();
  EXPECT_NE(r.status().message().find("the leader did not answer the forwarded write in time; "
                                      "outcome unknown"),
            std::string::npos)
      << r.status();
}

// Answers every forwarded write at once with `answer`.
class AnsweringHandler : public PeerHandler {
 public:
  explicit AnsweringHandler(absl::Status answer) : answer_(std::move(answer)) {}
  void Deliver(raftpb::Message) override {}
  bool IsRemovedMember(uint64_t) override { return false; }
  void WriteFromPeer(kvpb::Command, ForwardDone done) override { std::move(done)(answer_); }

 private:
  const absl::Status answer_;
};

// A RaftPeer server whose Forward fails the way a broken call does: UNAVAILABLE, and not
// from our handler (no raftkv-forward-answered mark).
class BrokenForwardService : public raftpb::RaftPeer::Service {
  grpc::Status Forward(grpc::ServerContext*, const raftpb::ForwardRequest*,
                       raftpb::ForwardResponse*) override {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "Socket closed");
  }
};

// Issue 10: the leader's own "not applied" stays UNAVAILABLE (safe to retry); a Forward that
// failed without the leader's answer (it broke in transport, possibly after the leader
// applied it) is "outcome unknown", never UNAVAILABLE.
TEST(PeerForwardTest, TheLeadersRefusalIsNotAppliedABrokenCallIsOutcomeUnknown) {
  AnsweringHandler refuses(absl::UnavailableError("not the leader; the leader is node 1"));
  RaftPeerService leader(&refuses, ::testing::TempDir(), absl::Seconds(5));
  absl::StatusOr<ForwardResult> refused = ForwardTo(&leader);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable) << refused.status();

  AnsweringHandler times_out(absl::DeadlineExceededError("outcome unknown"));
  RaftPeerService slow(&times_out, ::testing::TempDir(), absl::Seconds(5));
  EXPECT_EQ(ForwardTo(&slow).status().code(), absl::StatusCode::kDeadlineExceeded);

  BrokenForwardService broken;
  absl::StatusOr<ForwardResult> unknown = ForwardTo(&broken);
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kUnknown) << unknown.status();
  EXPECT_NE(unknown.status().message().find("outcome unknown"), std::string::npos)
      << unknown.status();
}

// Records the batches it is handed and answers each write with index 100 + its position in
// the batch, except one position that it refuses (not applied).
class BatchHandler : public PeerHandler {
 public:
  void Deliver(raftpb::Message) override {}
  bool IsRemovedMember(uint64_t) override { return false; }
  void WriteFromPeer(kvpb::Command cmd, ForwardDone done) override {
    std::vector<kvpb::Command> cmds;
    cmds.push_back(std::move(cmd));
    std::vector<ForwardDone> dones;
    dones.push_back(std::move(done));
    WritesFromPeer(std::move(cmds), std::move(dones));
  }
  void WritesFromPeer(std::vector<kvpb::Command> cmds, std::vector<ForwardDone> dones) override {
    {
      absl::MutexLock lock(&mu_);
      std::vector<std::string> keys;
      for (const kvpb::Command& c : cmds) keys.push_back(c.ops(0).put().key());
      batches_.push_back(std::move(keys));
    }
    for (size_t i = 0; i < dones.size(); ++i) {
      if (static_cast<int>(i) == refuse_) {
        std::move(dones[i])(absl::UnavailableError("not the leader"));
        continue;
      }
      ForwardResult r;
      r.index = 100 + i;
      r.result.revision = static_cast<int64_t>(100 + i);
      std::move(dones[i])(r);
    }
  }
  std::vector<std::vector<std::string>> batches() {
    absl::MutexLock lock(&mu_);
    return batches_;
  }
  int refuse_ = -1;

 private:
  absl::Mutex mu_;
  std::vector<std::vector<std::string>> batches_ ABSL_GUARDED_BY(mu_);
};

// A leader of the version before batched forwards: it knows `command` only.
class SingleFormService : public raftpb::RaftPeer::Service {
  grpc::Status Forward(grpc::ServerContext* context, const raftpb::ForwardRequest* request,
                       raftpb::ForwardResponse* response) override {
    context->AddTrailingMetadata(kForwardAnsweredKey, "1");
    kvpb::Command cmd;
    EXPECT_TRUE(cmd.ParseFromString(request->command()));
    EXPECT_EQ(cmd.ops(0).put().key(), "k0");
    response->set_index(7);
    return grpc::Status::OK;
  }
};

kvpb::Command PutOf(std::string key) {
  kvpb::Command cmd;
  cmd.add_ops()->mutable_put()->set_key(std::move(key));
  return cmd;
}

std::vector<absl::StatusOr<ForwardResult>> ForwardBatchTo(grpc::Service* service, int n) {
  grpc::ServerBuilder b;
  int port = 0;
  b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  b.RegisterService(service);
  std::unique_ptr<grpc::Server> server = b.BuildAndStart();
  EXPECT_NE(port, 0);
  PeerChannels channels({{2, "127.0.0.1:" + std::to_string(port)}});
  Forwarder forwarder(&channels);
  std::vector<std::string> commands;
  for (int i = 0; i < n; ++i) {
    commands.push_back(PutOf("k" + std::to_string(i)).SerializeAsString());
  }
  absl::Notification done;
  std::vector<absl::StatusOr<ForwardResult>> out;
  forwarder.ForwardBatch(2, std::move(commands), 5000,
                         [&](std::vector<absl::StatusOr<ForwardResult>> r) {
                           out = std::move(r);
                           done.Notify();
                         });
  done.WaitForNotification();
  server->Shutdown();
  return out;
}

// Issue 14: a follower's batch is ONE Forward; the leader's handler gets the commands in
// order in one call, and each answer comes back in its place.
TEST(PeerForwardTest, ABatchIsOneCallInOrderWithOneAnswerPerWrite) {
  BatchHandler handler;
  handler.refuse_ = 2;
  RaftPeerService leader(&handler, ::testing::TempDir(), absl::Seconds(5));
  std::vector<absl::StatusOr<ForwardResult>> out = ForwardBatchTo(&leader, 5);
  ASSERT_EQ(out.size(), 5u);
  for (int i = 0; i < 5; ++i) {
    if (i == 2) {
      EXPECT_EQ(out[i].status().code(), absl::StatusCode::kUnavailable) << out[i].status();
      continue;
    }
    ASSERT_TRUE(out[i].ok()) << i << ": " << out[i].status();
    EXPECT_EQ(out[i]->index, 100u + i);
    EXPECT_EQ(out[i]->result.revision, 100 + i);
  }
  std::vector<std::vector<std::string>> batches = handler.batches();
  ASSERT_EQ(batches.size(), 1u);
  EXPECT_EQ(batches[0], (std::vector<std::string>{"k0", "k1", "k2", "k3", "k4"}));
}

// A leader that answers in the single form applied the first write only: the others are
// "not applied" (safe to retry), never reported as done.
TEST(PeerForwardTest, ALeaderWithoutBatchesAppliesTheFirstAndTheRestAreNotApplied) {
  SingleFormService old_leader;
  std::vector<absl::StatusOr<ForwardResult>> out = ForwardBatchTo(&old_leader, 3);
  ASSERT_EQ(out.size(), 3u);
  ASSERT_TRUE(out[0].ok()) << out[0].status();
  EXPECT_EQ(out[0]->index, 7u);
  EXPECT_EQ(out[1].status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(out[2].status().code(), absl::StatusCode::kUnavailable);
}

// A broken call: every write of the batch is outcome unknown.
TEST(PeerForwardTest, ABrokenBatchCallIsOutcomeUnknownForEveryWrite) {
  BrokenForwardService broken;
  std::vector<absl::StatusOr<ForwardResult>> out = ForwardBatchTo(&broken, 3);
  ASSERT_EQ(out.size(), 3u);
  for (const auto& r : out) EXPECT_EQ(r.status().code(), absl::StatusCode::kUnknown);
}

}  // namespace
}  // namespace raftkv::server
