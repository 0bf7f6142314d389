// --psk-file: the pre-shared key of a migration (transport::Options::psk), read from a file only
// its owner may read, as ssh treats a private key.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ferry/secure_bytes.h"

namespace ferry::cli {

// The key file's bytes, exactly as they are (no trimming): e.g. `head -c 32 /dev/urandom > key`
// or `openssl rand -hex 32 > key` (which is 65 bytes of text, also fine). Both ends must read the
// same bytes.
inline constexpr size_t kMinPskFileBytes = 32;   // 256 bits
inline constexpr size_t kMaxPskFileBytes = 4096;

// Reads path into *key (read straight into it: no other copy of the key is left behind). Refuses, naming the file: one that is not a regular file, one whose mode
// lets group or others in (naming the mode: "mode 0644 ... chmod 600"), fewer than
// kMinPskFileBytes or more than kMaxPskFileBytes bytes. Returns "" or the error message.
std::string read_psk_file(const std::string& path, SecureBytes* key);

}  // namespace ferry::cli
