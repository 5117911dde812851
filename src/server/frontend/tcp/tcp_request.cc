#include "server/frontend/tcp/tcp_request.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
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

std::string_view ErrorKindWord(const absl::Status& status) {
  switch (KindOf(status)) {
    case ErrorKind::kNotApplied:
      return "UNAVAILABLE ";
    case ErrorKind::kOutcomeUnknown:
      return "UNKNOWN ";
    case ErrorKind::kRefused:
      break;
  }
  return "";
}

std::string ErrorText(const absl::Status& status) {
  return std::string(ErrorKindWord(status)) + StatusReason(status);
}

bool ParseSessionArgs(std::string_view id, std::string_view sequence,
                      ConnectionSession* session) {
  uint64_t client_id = 0, seq = 0;
  if (!absl::SimpleAtoi(absl::string_view(id.data(), id.size()), &client_id) ||
      !absl::SimpleAtoi(absl::string_view(sequence.data(), sequence.size()), &seq) ||
      client_id == 0 || seq == 0) {
    return false;
  }
  session->client_id = client_id;
  session->next_sequence = seq;
  return true;
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
