// PageCounts bookkeeping shared by the source and destination sessions: sums over the
// sender/receiver threads, the per-pass delta, and the completion handshake's comparison.
#pragma once

#include "ferry/migration.h"

namespace ferry::ram {

inline void add_counts(PageCounts& sum, const PageCounts& more) {
  sum.normal += more.normal;
  sum.zero += more.zero;
  sum.xbzrle += more.xbzrle;
  sum.lz4 += more.lz4;
}

inline PageCounts counts_since(const PageCounts& now, const PageCounts& before) {
  return PageCounts{now.normal - before.normal, now.zero - before.zero,
                    now.xbzrle - before.xbzrle, now.lz4 - before.lz4};
}

inline bool same_counts(const PageCounts& a, const PageCounts& b) {
  return a.normal == b.normal && a.zero == b.zero && a.xbzrle == b.xbzrle && a.lz4 == b.lz4;
}

}  // namespace ferry::ram
