// One member of the cluster as node_config.json lists it.
#pragma once

#include <cstdint>
#include <string>

namespace raftkv::server {

struct NodeAddress {
  std::string ip;
  uint16_t port = 0;        // text + RESP
  uint16_t grpc_port = 0;   // etcd API + peer Raft service

  std::string client_address() const;  // "ip:port"
  std::string grpc_address() const;     // "ip:grpc_port"
};

}  // namespace raftkv::server
