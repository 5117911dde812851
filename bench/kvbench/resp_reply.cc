#include "kvbench/resp_reply.h"

#include <charconv>
#include <string>

namespace raftkv::bench {
namespace {

constexpr int kMaxDepth = 8;  // nesting of arrays kvbench accepts (its replies have none)

// Reads the line after the type byte at in[pos]; sets *line_end to the index after "\r\n".
bool ReadLine(std::string_view in, size_t pos, std::string_view* line, size_t* line_end) {
  size_t cr = in.find("\r\n", pos + 1);
  if (cr == std::string_view::npos) return false;
  *line = in.substr(pos + 1, cr - pos - 1);
  *line_end = cr + 2;
  return true;
}

bool ToInt(std::string_view s, long long* v) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *v);
  return ec == std::errc() && p == s.data() + s.size();
}

ReplyParse ParseAt(std::string_view in, size_t pos, int depth, size_t* end) {
  if (pos >= in.size()) return ReplyParse::kIncomplete;
  std::string_view line;
  size_t after;
  const char type = in[pos];
  if (type != '+' && type != '-' && type != ':' && type != '$' && type != '*') {
    return ReplyParse::kMalformed;
  }
  if (!ReadLine(in, pos, &line, &after)) {
    // A line longer than this without its end is not a reply kvbench could get.
    return in.size() - pos > 64 * 1024 ? ReplyParse::kMalformed : ReplyParse::kIncomplete;
  }
  long long n = 0;
  switch (type) {
    case '+':
    case ':':
      *end = after;
      return ReplyParse::kOk;
    case '-':
      *end = after;
      return ReplyParse::kError;
    case '$':
      if (!ToInt(line, &n) || n < -1) return ReplyParse::kMalformed;
      if (n == -1) {
        *end = after;
        return ReplyParse::kOk;
      }
      if (in.size() < after + n + 2) return ReplyParse::kIncomplete;
      if (in.substr(after + n, 2) != "\r\n") return ReplyParse::kMalformed;
      *end = after + n + 2;
      return ReplyParse::kOk;
    default:  // '*'
      if (!ToInt(line, &n) || n < -1 || depth >= kMaxDepth) return ReplyParse::kMalformed;
      size_t p = after;
      for (long long i = 0; i < n; ++i) {
        ReplyParse r = ParseAt(in, p, depth + 1, &p);
        if (r == ReplyParse::kIncomplete || r == ReplyParse::kMalformed) return r;
      }
      *end = p;
      return ReplyParse::kOk;
  }
}

}  // namespace

ReplyParse ParseReply(std::string_view in, size_t* consumed) {
  size_t end = 0;
  ReplyParse r = ParseAt(in, 0, 0, &end);
  if (r == ReplyParse::kOk || r == ReplyParse::kError) *consumed = end;
  return r;
}

void AppendCommand(std::initializer_list<std::string_view> args, std::string* out) {
  out->push_back('*');
  out->append(std::to_string(args.size()));
  out->append("\r\n");
  for (std::string_view a : args) {
    out->push_back('$');
    out->append(std::to_string(a.size()));
    out->append("\r\n");
    out->append(a);
    out->append("\r\n");
  }
}

}  // namespace raftkv::bench
