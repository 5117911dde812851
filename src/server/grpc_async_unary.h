// AsyncUnary: one unary call of gRPC's callback API whose answer comes later, from an
// asynchronous operation (KvService, a forwarded write), on whatever thread that operation
// ends on. No gRPC thread waits for it: with the sync server, every call in flight held a
// thread blocked on a condition variable (1,000 clients were 1,000 threads).
//
// The call ends exactly once, with the first of:
//   - the operation's answer: its callback calls Claim(), fills the response, then Finish();
//   - the timeout given to Start: `on_late` fills the response (or not) and gives the status;
//   - the client's cancellation or deadline: CANCELLED (the client no longer listens).
// A false Claim() means the call already ended and its request and response are gone: the
// callback must not touch them. A true Claim() obliges the caller to call Finish().
#pragma once

#include <grpcpp/alarm.h>
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <utility>

namespace raftkv::server {

class AsyncUnary {
 public:
  // Starts the call. REQUIRES: the returned reactor is what the handler returns. `on_late`
  // runs on a gRPC thread after `timeout` unless the call ended before; it may write the
  // response (the call is claimed) and returns the status to end it with.
  static std::shared_ptr<AsyncUnary> Start(std::chrono::milliseconds timeout,
                                           std::function<grpc::Status()> on_late) {
    std::shared_ptr<AsyncUnary> call(new AsyncUnary());
    call->reactor_ = new Reactor(call);
    call->reactor_->alarm_.Set(
        std::chrono::system_clock::now() + timeout,
        [call, on_late = std::move(on_late)](bool fired) {
          if (fired && call->Claim()) call->Finish(on_late());
        });
    return call;
  }

  // A call that ends at once with `status` (refused, or answered without waiting).
  static grpc::ServerUnaryReactor* FinishNow(grpc::CallbackServerContext* context,
                                             grpc::Status status) {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(std::move(status));
    return reactor;
  }

  grpc::ServerUnaryReactor* reactor() const { return reactor_; }

  // True once, for whoever ends the call; that caller must then call Finish.
  bool Claim() { return !claimed_.exchange(true, std::memory_order_acq_rel); }

  // REQUIRES: this caller's Claim() returned true. Ends the call (the reactor deletes
  // itself once gRPC is done with it).
  void Finish(grpc::Status status) { reactor_->Finish(std::move(status)); }

 private:
  class Reactor final : public grpc::ServerUnaryReactor {
   public:
    explicit Reactor(std::shared_ptr<AsyncUnary> call) : call_(std::move(call)) {}
    void OnCancel() override {
      if (call_->Claim()) Finish(grpc::Status::CANCELLED);
    }
    // Destroying the alarm cancels it if pending; its callback then sees fired = false.
    void OnDone() override { delete this; }

    grpc::Alarm alarm_;

   private:
    const std::shared_ptr<AsyncUnary> call_;  // until OnDone
  };

  AsyncUnary() = default;

  std::atomic<bool> claimed_{false};
  Reactor* reactor_ = nullptr;  // valid until the call ends (Finish, then OnDone)
};

}  // namespace raftkv::server
