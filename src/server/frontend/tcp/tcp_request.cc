#include "server/frontend/tcp/tcp_request.h"

namespace raftkv::server {

std::string StatusReason(const absl::Status& status) {
  std::string reason(status.message());
  if (reason.empty()) reason = absl::StatusCodeToString(status.code());
  constexpr size_t kMaxReasonBytes = 200;
  if (reason.size() > kMaxReasonBytes) reason.resize(kMaxReasonBytes);
  for (char& c : reason) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  }
  return reason;
}

std::string PrintableExcerpt(std::string_view text, size_t max_bytes) {
  std::string out(text.substr(0, max_bytes));
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  }
  return out;
}

}  // namespace raftkv::server
