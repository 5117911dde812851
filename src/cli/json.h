// Minimal JSON output helpers for kvctl --output json.
#pragma once

#include <string>
#include <string_view>

namespace raftkv::cli {

// `s` as a quoted JSON string. Bytes that are not valid UTF-8 are written as \u00XX (the
// byte's value as a code point), so any key or value gives valid JSON; valid UTF-8 passes
// through unchanged apart from the escapes JSON requires.
std::string JsonString(std::string_view s);

}  // namespace raftkv::cli
