#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cerrno>
#include <string>

#include "transports/handshake.h"
#include "transports/session_assembly.h"

namespace ferry::transport::handshake {
namespace {

using ::testing::HasSubstr;

Hello sample() {
  Hello h;
  h.role = Role::kAcceptor;
  h.status = Status::kCountMismatch;
  h.session_id = 0x0102030405060708ull;
  h.index = 3;
  h.count = 8;
  h.capabilities = kZeroCopySend | kFixedBuffers;
  return h;
}

TEST(Handshake, WireLayoutIsFixedLittleEndian) {
  Wire w = encode(sample());
  ASSERT_EQ(w.size(), 64u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(w.data()), 4), "FRYC");
  EXPECT_EQ(w[4], kProtocolVersion & 0xff);
  EXPECT_EQ(w[5], kProtocolVersion >> 8);
  EXPECT_EQ(w[6], 2);  // acceptor
  EXPECT_EQ(w[7], static_cast<uint8_t>(Status::kCountMismatch));
  for (int i = 0; i < 8; ++i) EXPECT_EQ(w[8 + i], 8 - i) << i;  // session id, LSB first
  EXPECT_EQ(w[16], 3);
  EXPECT_EQ(w[20], 8);
  EXPECT_EQ(w[24], kZeroCopySend | kFixedBuffers);
  for (int i = 32; i < 60; ++i) EXPECT_EQ(w[i], 0) << i;
}

TEST(Handshake, DecodeInvertsEncode) {
  Hello h = decode(encode(sample()));
  Hello s = sample();
  EXPECT_TRUE(h.checksum_ok);
  EXPECT_EQ(h.magic, kMagic);
  EXPECT_EQ(h.version, kProtocolVersion);
  EXPECT_EQ(h.role, s.role);
  EXPECT_EQ(h.status, s.status);
  EXPECT_EQ(h.session_id, s.session_id);
  EXPECT_EQ(h.index, s.index);
  EXPECT_EQ(h.count, s.count);
  EXPECT_EQ(h.capabilities, s.capabilities);
}

TEST(Handshake, AnyFlippedByteIsCaught) {
  Hello local = sample();
  local.role = Role::kConnector;
  for (size_t i = 0; i < 64; ++i) {
    Wire w = encode(sample());
    w[i] ^= 0x40;
    Hello h = decode(w);
    std::string msg;
    EXPECT_NE(check_basic(local, h, Role::kAcceptor, &msg), Status::kOk) << "byte " << i;
    EXPECT_FALSE(msg.empty());
  }
}

TEST(Handshake, MismatchesNameBothValues) {
  Hello local;
  Hello peer;
  std::string msg;
  peer.magic = 0xDEADBEEF;
  EXPECT_EQ(check_basic(local, peer, Role::kConnector, &msg), Status::kBadMagic);
  EXPECT_EQ(msg, "bad magic: local 0x43595246, peer 0xdeadbeef");
  peer = Hello{};
  peer.version = 9;
  EXPECT_EQ(check_basic(local, peer, Role::kConnector, &msg), Status::kBadVersion);
  EXPECT_EQ(msg, "protocol version mismatch: local 1, peer 9");
  peer = Hello{};
  peer.role = Role::kAcceptor;
  EXPECT_EQ(check_basic(local, peer, Role::kConnector, &msg), Status::kBadRole);
  EXPECT_THAT(msg, HasSubstr("expected connector, peer is acceptor"));
  local.session_id = 1;
  peer.session_id = 2;
  EXPECT_EQ(mismatch_message(Status::kSessionMismatch, local, peer),
            "session id mismatch: local 0x0000000000000001, peer 0x0000000000000002");
  local.count = 2;
  peer.count = 4;
  EXPECT_EQ(mismatch_message(Status::kCountMismatch, local, peer),
            "channel count mismatch: local 2, peer 4");
}

TEST(Handshake, TestingOverridesReachTheWire) {
  Options o;
  o.handshake_magic = 0x11223344;
  o.protocol_version = 3;
  Hello h = decode(encode(local_hello(o, Role::kConnector, 5, 1, 2, 0)));
  EXPECT_EQ(h.magic, 0x11223344u);
  EXPECT_EQ(h.version, 3);
  EXPECT_EQ(h.session_id, 5u);
  EXPECT_NE(random_session_id(), random_session_id());
}

// A connector's hello for channel `index` of a session of `count`.
Hello connector_hello(uint64_t session, uint32_t index, uint32_t count) {
  Hello h;
  h.role = Role::kConnector;
  h.session_id = session;
  h.index = index;
  h.count = count;
  return h;
}

TEST(SessionAssembly, AdoptsTheFirstHelloAndRefusesWhatDoesNotFit) {
  Options o;
  o.channels = 0;
  o.session_id = 0;
  SessionAssembly<int> s;
  s.start(o, "tcp:127.0.0.1:1");
  ASSERT_TRUE(s.judge(connector_hello(7, 1, 2), 0).accepted());
  s.admit(connector_hello(7, 1, 2), "peer-1", 11);
  EXPECT_FALSE(s.complete());
  EXPECT_EQ(s.count(), 2u);
  EXPECT_EQ(s.session_id(), 7u);

  SessionVerdict v = s.judge(connector_hello(8, 0, 2), 0);
  EXPECT_EQ(v.status, Status::kSessionMismatch);
  EXPECT_EQ(v.reply.status, Status::kSessionMismatch);  // what goes back on the wire
  EXPECT_THAT(v.refusal, HasSubstr("local 0x0000000000000007, peer 0x0000000000000008"));
  EXPECT_THAT(s.judge(connector_hello(7, 0, 3), 0).refusal,
              HasSubstr("channel count mismatch: local 2, peer 3"));
  EXPECT_EQ(s.judge(connector_hello(7, 1, 2), 0).status, Status::kDuplicateIndex);
  Hello out_of_range = connector_hello(7, 2, 2);
  EXPECT_EQ(s.judge(out_of_range, 0).status, Status::kIndexOutOfRange);

  s.admit(connector_hello(7, 0, 2), "peer-0", 10);
  ASSERT_TRUE(s.complete());
  EXPECT_EQ(s.take(0), 10);
  EXPECT_EQ(s.take(1), 11);
  EXPECT_EQ(s.peer_text(1), "peer-1");
  EXPECT_EQ(s.local_hello(1, kRemoteWrite).count, 2u);
  EXPECT_EQ(s.local_hello(1, kRemoteWrite).role, Role::kAcceptor);
}

TEST(SessionAssembly, AFirstHelloMayNotAnnounceMoreChannelsThanASessionHas) {
  Options o;
  o.channels = 0;
  SessionAssembly<int> s;
  s.start(o, "tcp:127.0.0.1:1");
  EXPECT_TRUE(s.judge(connector_hello(7, 0, kMaxSessionChannels), 0).accepted());
  for (uint32_t count : {kMaxSessionChannels + 1, 100000u, 0xFFFFFFFFu}) {
    SessionVerdict v = s.judge(connector_hello(7, 0, count), 0);
    EXPECT_EQ(v.status, Status::kCountMismatch) << count;
    EXPECT_EQ(v.reply.count, kMaxSessionChannels) << count;
    EXPECT_THAT(v.refusal, HasSubstr("peer announces " + std::to_string(count) +
                                     " channels, more than the 256 a session may have"));
  }
  // The refusal is remembered for the accept-timeout error.
  s.refuse("rdma:10.0.0.2:4791", 0, "too many", nullptr);
  EXPECT_THAT(s.timeout_error("tcp:127.0.0.1:1").what(),
              HasSubstr("0 of ? channels arrived within 60000 ms; last refusal: transport "
                        "(rdma:10.0.0.2:4791): refused connection: too many"));

  o.channels = kMaxSessionChannels + 1;  // nor may the caller ask for more
  try {
    s.start(o, "tcp:127.0.0.1:1");
    ADD_FAILURE() << "started a session of 257 channels";
  } catch (const TransportError& e) {
    EXPECT_EQ(e.error_code(), EINVAL);
    EXPECT_THAT(e.what(), HasSubstr("options.channels is 257, more than the 256 channels"));
  }
}

}  // namespace
}  // namespace ferry::transport::handshake
