// libFuzzer target for the connector's side of the channel handshake (transports/handshake.h,
// transports/auth.h): each input is what an acceptor answers, read from a real socket. The first
// input byte says whether this end holds a pre-shared key (bit 0); the rest is the acceptor's
// hello, its proof or refusal frame, and whatever follows. connect_exchange() must return the
// peer's hello or throw TransportError: never crash, hang or leak. (A forged proof cannot pass:
// the fuzzer cannot find an HMAC-SHA256 tag, so the accepting path ends at the tag check.)
// Also each input's first 104 bytes go, as a connector's frame, through the acceptor's check.
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "ferry/transport.h"
#include "ferry/transport_error.h"
#include "transports/auth.h"
#include "transports/handshake.h"

namespace {

using namespace ferry::transport;

const std::vector<uint8_t> kKey(32, 0x6b);

void connector_side(bool keyed, const uint8_t* data, size_t size) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) std::abort();
  // The acceptor's bytes wait in the socket, then end of stream.
  size_t off = 0;
  while (off < size) {
    const ssize_t n = ::write(sv[1], data + off, size - off);
    if (n <= 0) break;  // more than the socket holds: the rest is cut, as a closed peer would
    off += static_cast<size_t>(n);
  }
  ::shutdown(sv[1], SHUT_WR);
  Options o;
  if (keyed) o.psk = kKey;
  const handshake::Hello local =
      handshake::local_hello(o, handshake::Role::kConnector, 7, 0, 1, 0);
  try {
    handshake::connect_exchange(sv[0], local, std::chrono::milliseconds(200), 0, "fuzz",
                                keyed ? std::span<const uint8_t>(kKey)
                                      : std::span<const uint8_t>());
  } catch (const TransportError&) {
  }
  ::close(sv[0]);
  ::close(sv[1]);
}

void acceptor_check(const uint8_t* data, size_t size) {
  if (size < handshake::kSize + auth::kFrameSize) return;
  handshake::Wire connector{}, acceptor{};
  std::memcpy(connector.data(), data, handshake::kSize);
  acceptor = connector;
  acceptor[6] = static_cast<uint8_t>(handshake::Role::kAcceptor);
  auth::FrameWire frame{};
  std::memcpy(frame.data(), data + handshake::kSize, auth::kFrameSize);
  if (auth::connector_proved(kKey, connector, acceptor, frame)) {
    std::abort();  // a frame the fuzzer made up proved a key it does not know
  }
  (void)auth::decode(frame);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  connector_side(data[0] & 1, data + 1, size - 1);
  acceptor_check(data + 1, size - 1);
  return 0;
}
