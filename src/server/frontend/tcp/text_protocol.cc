#include "server/frontend/tcp/text_protocol.h"

#include <optional>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "server/service/kv_service.h"

namespace raftkv::server {
namespace {

constexpr std::string_view kInvalid = "INVALID COMMAND";
constexpr std::string_view kNotFound = "KEY NOT FOUND";
// A value that holds CR or LF cannot be one reply line (text_protocol.h).
constexpr std::string_view kGetLineBreak =
    "ERR value has a line break (CR or LF): read it with RESP GET on this port";
constexpr std::string_view kMgetLineBreak = "VALUE HAS LINE BREAK";
constexpr std::string_view kSetCarriageReturn =
    "ERR value has a CR: a text-protocol value cannot hold line breaks (write it with RESP SET)";

bool HasLineBreak(std::string_view value) {
  return value.find_first_of("\r\n") != std::string_view::npos;
}

// Splits on runs of spaces; no empty tokens.
std::vector<std::string> Tokens(std::string_view s) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && s[i] == ' ') ++i;
    size_t j = i;
    while (j < s.size() && s[j] != ' ') ++j;
    if (j > i) out.emplace_back(s.substr(i, j - i));
    i = j;
  }
  return out;
}

std::optional<TextVerb> VerbOf(std::string_view std_word) {
  absl::string_view word(std_word.data(), std_word.size());  // abseil 20220623: its own type
  if (absl::EqualsIgnoreCase(word, "SET") || absl::EqualsIgnoreCase(word, "PUT")) {
    return TextVerb::kSet;
  }
  if (absl::EqualsIgnoreCase(word, "GET")) return TextVerb::kGet;
  if (absl::EqualsIgnoreCase(word, "DELETE") || absl::EqualsIgnoreCase(word, "DEL")) {
    return TextVerb::kDelete;
  }
  if (absl::EqualsIgnoreCase(word, "MGET")) return TextVerb::kMget;
  if (absl::EqualsIgnoreCase(word, "PING")) return TextVerb::kPing;
  if (absl::EqualsIgnoreCase(word, "QUIT")) return TextVerb::kQuit;
  if (absl::EqualsIgnoreCase(word, "SESSION")) return TextVerb::kSession;
  return std::nullopt;
}

// Builds reply text: each line followed by the terminator the request used.
class Lines {
 public:
  explicit Lines(bool crlf) : eol_(crlf ? "\r\n" : "\n") {}
  // The bytes `lines` take with their terminators.
  size_t BytesOf(const std::vector<std::string_view>& lines) const {
    size_t bytes = lines.size() * eol_.size();
    for (std::string_view line : lines) bytes += line.size();
    return bytes;
  }
  Lines& Add(std::string_view line) {
    out_.append(line);
    out_.append(eol_);
    return *this;
  }
  std::string Take() { return std::move(out_); }

 private:
  std::string_view eol_;
  std::string out_;
};

std::string ErrLine(const absl::Status& status, bool crlf) {
  return Lines(crlf).Add("ERR " + ErrorText(status)).Take();
}

using GetResult = absl::StatusOr<std::vector<std::optional<kv::KeyValue>>>;

// The reply to GET (`mget` false) or MGET: one line per key, or one ERR line.
std::string GetReply(const GetResult& r, bool mget, bool crlf, size_t max_reply_bytes) {
  if (!r.ok()) return ErrLine(r.status(), crlf);
  std::vector<std::string_view> values;
  values.reserve(r->size());
  for (const std::optional<kv::KeyValue>& v : *r) {
    if (!v) {
      values.push_back(kNotFound);
    } else if (HasLineBreak(v->value)) {
      // GET's one line may be an error; in an MGET an "ERR" line would read as the whole
      // request's error, so the key gets its own marker.
      values.push_back(mget ? kMgetLineBreak : kGetLineBreak);
    } else {
      values.push_back(v->value);
    }
  }
  Lines lines(crlf);
  if (size_t bytes = lines.BytesOf(values); bytes > max_reply_bytes) {
    return ErrLine(ReplyTooLarge(bytes, max_reply_bytes), crlf);
  }
  for (std::string_view value : values) lines.Add(value);
  return lines.Take();
}

}  // namespace

TextCommand ParseTextLine(std::string_view line) {
  TextCommand invalid;
  // A NUL byte means binary input, not a line of this protocol.
  if (line.find('\0') != std::string_view::npos) return invalid;
  size_t start = line.find_first_not_of(' ');
  if (start == std::string_view::npos) return invalid;
  line.remove_prefix(start);
  size_t verb_end = line.find(' ');
  std::optional<TextVerb> verb = VerbOf(line.substr(0, verb_end));
  if (!verb) return invalid;
  std::string_view rest =
      verb_end == std::string_view::npos ? std::string_view() : line.substr(verb_end + 1);

  TextCommand cmd;
  cmd.verb = *verb;
  switch (*verb) {
    case TextVerb::kSet: {
      size_t key_start = rest.find_first_not_of(' ');
      if (key_start == std::string_view::npos) return invalid;
      rest.remove_prefix(key_start);
      size_t key_end = rest.find(' ');
      // The value is everything after the one space that ends the key; no space, no value.
      if (key_end == std::string_view::npos) return invalid;
      cmd.args.emplace_back(rest.substr(0, key_end));
      cmd.args.emplace_back(rest.substr(key_end + 1));
      return cmd;
    }
    case TextVerb::kGet:
    case TextVerb::kDelete:
      cmd.args = Tokens(rest);
      if (cmd.args.size() != 1) return invalid;
      return cmd;
    case TextVerb::kMget:
      cmd.args = Tokens(rest);
      if (cmd.args.empty()) return invalid;
      return cmd;
    case TextVerb::kPing:
    case TextVerb::kQuit:
      if (!Tokens(rest).empty()) return invalid;
      return cmd;
    case TextVerb::kSession:
      cmd.args = Tokens(rest);
      if (cmd.args.size() != 2) return invalid;
      return cmd;
    case TextVerb::kInvalid:
      break;
  }
  return invalid;
}

TcpRequest PrepareTextRequest(std::string_view line, bool crlf, size_t max_reply_bytes,
                              ConnectionSession* session) {
  TextCommand cmd = ParseTextLine(line);
  TcpRequest req;
  switch (cmd.verb) {
    case TextVerb::kInvalid:
      return TcpRequest::Immediate(Lines(crlf).Add(kInvalid).Take());
    case TextVerb::kPing:
      return TcpRequest::Immediate(crlf ? "+PONG\r\n" : "PONG\n");
    case TextVerb::kQuit:
      return TcpRequest::Immediate("", /*close_after=*/true);
    case TextVerb::kSession:
      if (!ParseSessionArgs(cmd.args[0], cmd.args[1], session)) {
        return TcpRequest::Immediate(Lines(crlf).Add(kInvalid).Take());
      }
      return TcpRequest::Immediate(Lines(crlf).Add("OK").Take());
    case TextVerb::kSet:
      // The line ends at LF, so only a CR can be in the value; refused so that whatever the
      // text protocol writes, it reads back byte for byte.
      if (cmd.args[1].find('\r') != std::string::npos) {
        return TcpRequest::Immediate(Lines(crlf).Add(kSetCarriageReturn).Take());
      }
      req.kind = RequestKind::kWrite;
      req.run = [key = std::move(cmd.args[0]), value = std::move(cmd.args[1]), crlf,
                 write_session = session->Take()](KvService* kv, ReplyFn reply) mutable {
        kv->Put(
            std::move(key), std::move(value),
            [reply = std::move(reply), crlf](absl::StatusOr<kv::ApplyResult> r) mutable {
              std::move(reply)(r.ok() ? Lines(crlf).Add("OK").Take()
                                      : ErrLine(r.status(), crlf));
            },
            write_session);
      };
      return req;
    case TextVerb::kDelete:
      req.kind = RequestKind::kWrite;
      req.run = [key = std::move(cmd.args[0]), crlf, write_session = session->Take()](
                    KvService* kv, ReplyFn reply) mutable {
        kv->Delete(
            std::move(key), "",
            [reply = std::move(reply), crlf](absl::StatusOr<kv::ApplyResult> r) mutable {
              if (!r.ok()) {
                std::move(reply)(ErrLine(r.status(), crlf));
                return;
              }
              bool deleted = !r->ops.empty() && r->ops[0].deleted > 0;
              std::move(reply)(Lines(crlf).Add(deleted ? "OK" : kNotFound).Take());
            },
            write_session);
      };
      return req;
    case TextVerb::kGet:
    case TextVerb::kMget:
      req.kind = RequestKind::kRead;
      req.run = [keys = std::move(cmd.args), mget = cmd.verb == TextVerb::kMget, crlf,
                 max_reply_bytes](KvService* kv, ReplyFn reply) mutable {
        kv->Get(std::move(keys), max_reply_bytes,
                [reply = std::move(reply), mget, crlf, max_reply_bytes](GetResult r) mutable {
                  std::move(reply)(GetReply(r, mget, crlf, max_reply_bytes));
                });
      };
      return req;
  }
  return TcpRequest::Immediate(Lines(crlf).Add(kInvalid).Take());
}

}  // namespace raftkv::server
