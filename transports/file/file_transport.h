// The file transport: a session stored in files, for snapshots to disk. connect() writes (the
// sending side of a migration), listen()+accept() reads (the receiving side). Channel 0 is the
// path itself, channel i > 0 is "path.i". Each file starts with the 64-byte handshake
// (transports/handshake.h, role "file writer") and the stream follows it; the reader checks
// magic, version, session, index and count before handing out a channel. Writes and reads go
// through the same io_uring channel as sockets (writev/readv at the stream offset); there is no
// zero-copy and no O_DIRECT.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "ferry/transport.h"

namespace ferry::transport::file {

std::string channel_path(const std::string& base, uint32_t index);

std::unique_ptr<Listener> listen(const Uri& uri, const Options& options);
std::vector<ChannelPtr> connect(const Uri& uri, const Options& options);

}  // namespace ferry::transport::file
