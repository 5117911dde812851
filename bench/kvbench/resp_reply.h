// The RESP replies kvbench reads: finds where one complete reply ends in a buffer, without
// copying it. kvbench only needs to know that a reply arrived and whether it is an error.
#pragma once

#include <cstddef>
#include <string_view>

namespace raftkv::bench {

enum class ReplyParse { kIncomplete, kOk, kError, kMalformed };

// Parses one RESP2 reply at the start of `in` (simple string, error, integer, bulk string,
// array, including nil bulk/array). On kOk or kError sets *consumed to its length in bytes;
// kError means a top-level error reply ("-ERR ..."). kIncomplete: more bytes are needed.
// kMalformed: the bytes are not RESP (the caller drops the connection).
ReplyParse ParseReply(std::string_view in, size_t* consumed);

// RESP request encoding: appends the array of bulk strings `args` to *out.
void AppendCommand(std::initializer_list<std::string_view> args, std::string* out);

}  // namespace raftkv::bench
