#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "ferry/transport.h"

namespace ferry::transport {
namespace {

using ::testing::HasSubstr;

struct Good {
  const char* text;
  const char* scheme;
  const char* host;
  uint16_t port;
  const char* path;
};

const Good kGood[] = {
    {"tcp:127.0.0.1:0", "tcp", "127.0.0.1", 0, ""},
    {"tcp:10.1.2.3:65535", "tcp", "10.1.2.3", 65535, ""},
    {"tcp:[::1]:5000", "tcp", "::1", 5000, ""},
    {"tcp:[fe80::1:2]:1", "tcp", "fe80::1:2", 1, ""},
    {"tcp:localhost:4444", "tcp", "localhost", 4444, ""},
    {"tcp:dest-host.example.com:80", "tcp", "dest-host.example.com", 80, ""},
    {"rdma:192.168.0.9:4791", "rdma", "192.168.0.9", 4791, ""},
    {"rdma:[2001:db8::7]:4791", "rdma", "2001:db8::7", 4791, ""},
    {"unix:/run/ferry.sock", "unix", "", 0, "/run/ferry.sock"},
    {"unix:relative.sock", "unix", "", 0, "relative.sock"},
    {"file:/var/tmp/snapshot", "file", "", 0, "/var/tmp/snapshot"},
    {"file:/with:colons/x", "file", "", 0, "/with:colons/x"},
};

void PrintTo(const Good& g, std::ostream* os) { *os << g.text; }

class UriGood : public ::testing::TestWithParam<Good> {};

TEST_P(UriGood, ParsesAndRoundTrips) {
  const Good& g = GetParam();
  Uri u = parse_uri(g.text);
  EXPECT_EQ(u.scheme, g.scheme);
  EXPECT_EQ(u.host, g.host);
  EXPECT_EQ(u.port, g.port);
  EXPECT_EQ(u.path, g.path);
  EXPECT_EQ(u.to_string(), g.text);
  EXPECT_EQ(parse_uri(u.to_string()), u);
}

INSTANTIATE_TEST_SUITE_P(Table, UriGood, ::testing::ValuesIn(kGood));

struct Bad {
  std::string text;
  const char* why;
};

const Bad kBad[] = {
    {"", "expected SCHEME:ADDRESS"},
    {"tcp", "expected SCHEME:ADDRESS"},
    {":5000", "expected SCHEME:ADDRESS"},
    {"http:host:80", "unknown scheme 'http'"},
    {"TCP:host:80", "unknown scheme 'TCP'"},
    {"tcp:", "missing HOST:PORT"},
    {"tcp:host", "missing ':PORT'"},
    {"tcp:host:", "missing port"},
    {"tcp::80", "missing host"},
    {"tcp://host:80", "no '//'"},
    {"tcp:::1:80", "IPv6 addresses must be in brackets"},
    {"tcp:[::1:80", "'[' without matching ']'"},
    {"tcp:[]:80", "empty IPv6 address"},
    {"tcp:[::1]80", "expected ':PORT' after ']'"},
    {"tcp:[::1]", "expected ':PORT' after ']'"},
    {"tcp:[not-v6]:80", "is not an IPv6 address"},
    {"tcp:[127.0.0.1]:80", "is not an IPv6 address"},
    {"tcp:host:65536", "out of range"},
    {"tcp:host:99999", "out of range"},
    {"tcp:host:123456", "not a decimal number"},
    {"tcp:host:-1", "not a decimal number"},
    {"tcp:host:80x", "not a decimal number"},
    {"tcp:host: 80", "not a decimal number"},
    {"tcp:999.1.1.1:80", "is not an IPv4 address"},
    {"tcp:1.2.3:80", "is not an IPv4 address"},
    {"tcp:bad_host!:80", "not a valid host name"},
    {"tcp:a..b:80", "not a valid host name"},
    {"rdma:host", "missing ':PORT'"},
    {"unix:", "missing path"},
    {"file:", "missing path"},
    {"unix:/" + std::string(120, 'x'), "at most 107 fit in sockaddr_un"},
    {std::string("file:/a\0b", 9), "NUL"},
};

void PrintTo(const Bad& b, std::ostream* os) { *os << ::testing::PrintToString(b.text); }

class UriBad : public ::testing::TestWithParam<Bad> {};

TEST_P(UriBad, IsRefusedWithAReason) {
  const Bad& b = GetParam();
  try {
    parse_uri(b.text);
    FAIL() << "accepted '" << b.text << "'";
  } catch (const TransportError& e) {
    EXPECT_THAT(e.what(), HasSubstr(b.why)) << b.text;
    EXPECT_THAT(e.what(), HasSubstr("invalid address"));
    EXPECT_EQ(e.channel(), -1);
  }
}

INSTANTIATE_TEST_SUITE_P(Table, UriBad, ::testing::ValuesIn(kBad));

TEST(Registry, RdmaOnLoopbackIsAClearError) {
  // Without an RDMA device: "no RDMA device: create a soft-RoCE device ..."; with one (inside
  // tools/rxe/run-in-vm), lo carries no RDMA device for rdma_cm. Without rdma-core at build
  // time: the build says so.
  try {
    connect("rdma:127.0.0.1:4791");
    FAIL() << "rdma connected";
  } catch (const TransportError& e) {
    EXPECT_THAT(e.what(), HasSubstr("rdma:127.0.0.1:4791"));
#if FERRY_HAVE_RDMA
    EXPECT_THAT(e.what(), ::testing::AnyOf(HasSubstr("rdma link add"), HasSubstr("rdma_")));
#else
    EXPECT_THAT(e.what(), HasSubstr("ferry was built without RDMA support"));
#endif
  }
  EXPECT_THROW(listen("rdma:[::1]:4791"), TransportError);
}

TEST(Registry, RegisteredSchemeReplacesTheFactory) {
  bool called = false;
  register_transport("rdma", TransportFactory{nullptr, [&](const Uri& u, const Options&) {
                                                called = true;
                                                EXPECT_EQ(u.port, 1u);
                                                return std::vector<ChannelPtr>{};
                                              }});
  EXPECT_TRUE(connect("rdma:h:1").empty());
  EXPECT_TRUE(called);
}

}  // namespace
}  // namespace ferry::transport
