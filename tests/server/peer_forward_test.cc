// RaftPeerService::Forward (peer/peer_service.h): the leader's handler of a forwarded write
// answers by its deadline even when the raft loop never does (issue 10, item 2).
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "server/peer/peer_service.h"

namespace raftkv::server {
namespace {

// Keeps every forwarded write's callback without answering it.
class SilentHandler : public PeerHandler {
 public:
  void Deliver(raftpb::Message) override {}
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

TEST(PeerForwardTest, ForwardAnswersByItsMaxWaitWhenTheLoopNeverDoes) {
  SilentHandler handler;
  RaftPeerService service(&handler, ::testing::TempDir(), absl::Milliseconds(200));
  raftpb::ForwardRequest request;
  request.set_command(kvpb::Command().SerializeAsString());
  raftpb::ForwardResponse response;
  grpc::ServerContext context;  // no deadline of the caller: only the service's bound
  grpc::Status status;
  absl::Notification returned;
  std::thread rpc([&] {
    status = service.Forward(&context, &request, &response);
    returned.Notify();
  });
  const bool in_time = returned.WaitForNotificationWithTimeout(absl::Seconds(10));
  handler.AnswerLate();  // unblocks the old code (and must be harmless for the new)
  rpc.join();
  ASSERT_TRUE(in_time) << "Forward still waiting 10 s after its 200 ms bound";
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << status.error_message();
  EXPECT_NE(status.error_message().find("outcome unknown"), std::string::npos)
      << status.error_message();
}

}  // namespace
}  // namespace raftkv::server
