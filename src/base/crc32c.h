// CRC32C (Castagnoli, polynomial 0x1EDC6F41, reflected 0x82F63B78), as used by iSCSI
// (RFC 3720), ext4 and LevelDB. abseil 20220623 has no absl/crc, so we carry our own.
//
// Value() uses the SSE4.2 crc32 instruction when the CPU has it (checked once at run time)
// and a table-driven software loop otherwise; both give identical results (crc32c_test.cc).
#pragma once

#include <cstddef>
#include <cstdint>

namespace raftkv::base::crc32c {

// CRC32C of data[0, n) continued from `crc` (the CRC of the bytes before). Extend(0, ...)
// is the CRC of the bytes alone, so Extend(Extend(0, a), b) == Value(a ++ b).
uint32_t Extend(uint32_t crc, const char* data, size_t n);

inline uint32_t Value(const char* data, size_t n) { return Extend(0, data, n); }

// The two implementations, exposed so tests can check they agree.
uint32_t ExtendPortable(uint32_t crc, const char* data, size_t n);
// REQUIRES: HardwareAvailable().
uint32_t ExtendHardware(uint32_t crc, const char* data, size_t n);
bool HardwareAvailable();

}  // namespace raftkv::base::crc32c
