#include "ferry/secure_bytes.h"

#include <openssl/crypto.h>

namespace ferry {

void secure_wipe(void* p, size_t n) noexcept {
  if (p && n) OPENSSL_cleanse(p, n);
}

}  // namespace ferry
