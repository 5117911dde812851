// etcd Cluster service: MemberList, MemberAdd, MemberPromote, MemberRemove, MemberUpdate
// (README.md, "Operating a cluster"). Member ids are etcd member ids (server/node_id.h
// converts them to raft ids); peer URLs are http://ip:grpc_port. Changes are made by the
// leader and answered once applied there; a follower that knows the leader passes the
// request on to it (once: a passed-on request is never passed on again) and returns its
// answer, so etcdctl, which does not look for the leader, works against any member. With no
// leader known, UNAVAILABLE.
//
// MemberAdd always adds a learner: a new voter that has not caught up would make every
// quorum wait for it (raftkv's rule; etcd allows a voter add). isLearner=false is accepted
// and the answer's member says isLearner=true; promote it with MemberPromote once caught up.
#pragma once

#include <optional>

#include "server/frontend/etcd/etcd_shared.h"

namespace raftkv::server::etcd {

class EtcdCluster final : public pb::Cluster::Service {
 public:
  explicit EtcdCluster(const Shared* shared) : s_(shared) {}

  grpc::Status MemberList(grpc::ServerContext*, const pb::MemberListRequest*,
                          pb::MemberListResponse* resp) override;
  grpc::Status MemberAdd(grpc::ServerContext* context, const pb::MemberAddRequest* req,
                         pb::MemberAddResponse* resp) override;
  grpc::Status MemberPromote(grpc::ServerContext* context, const pb::MemberPromoteRequest* req,
                             pb::MemberPromoteResponse* resp) override;
  grpc::Status MemberRemove(grpc::ServerContext* context, const pb::MemberRemoveRequest* req,
                            pb::MemberRemoveResponse* resp) override;
  grpc::Status MemberUpdate(grpc::ServerContext* context, const pb::MemberUpdateRequest* req,
                            pb::MemberUpdateResponse* resp) override;

 private:
  // The members as this node knows them now, into `out`; the header into `header`.
  void FillMembers(pb::ResponseHeader* header,
                   google::protobuf::RepeatedPtrField<pb::Member>* out) const;
  // On a follower that knows the leader: `call` of the leader's Cluster service with `req`
  // (unless `req` was passed on already), its status; nullopt: serve it here.
  template <typename Request, typename Response>
  std::optional<grpc::Status> RelayToLeader(
      grpc::ServerContext* context, const Request& req, Response* resp,
      grpc::Status (pb::Cluster::Stub::*call)(grpc::ClientContext*, const Request&, Response*))
      const;
  // Proposes `change` and waits until it is applied here (AwaitMembership: the member's raft
  // id), then fills `resp` with the members as they are then.
  template <typename Response>
  absl::StatusOr<uint64_t> Change(grpc::ServerContext* context, const MembershipChange& change,
                                  Response* resp) const;

  const Shared* s_;
};

}  // namespace raftkv::server::etcd
