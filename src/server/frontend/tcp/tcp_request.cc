#include "server/frontend/tcp/tcp_request.h"

#include "absl/strings/str_format.h"

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

absl::Status ReplyTooLarge(size_t bytes, size_t limit) {
  return absl::ResourceExhaustedError(absl::StrFormat(
      "reply too large (%d bytes, limit %d): ask for fewer keys", bytes, limit));
}

std::string PrintableExcerpt(std::string_view text, size_t max_bytes) {
  std::string out(text.substr(0, max_bytes));
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  }
  return out;
}

}  // namespace raftkv::server
