#include "server/node_address.h"

#include "absl/strings/str_cat.h"

namespace raftkv::server {

std::string NodeAddress::client_address() const { return absl::StrCat(ip, ":", port); }
std::string NodeAddress::grpc_address() const { return absl::StrCat(ip, ":", grpc_port); }

}  // namespace raftkv::server
