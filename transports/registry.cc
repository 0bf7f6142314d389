// scheme -> factories. Built-ins are put in the table on first use rather than by static
// constructors, which a static library would drop when nothing references their object file.
#include <cerrno>
#include <map>
#include <mutex>

#include "transports/file/file_transport.h"
#include "transports/rdma/rdma_transport.h"
#include "transports/tcp/stream_transport.h"
#include "transports/tls/context.h"
#include "ferry/transport.h"

namespace ferry::transport {
namespace {

struct Registry {
  std::mutex mu;
  std::map<std::string, TransportFactory> table;

  Registry() {
    table["tcp"] = TransportFactory{tcp::listen, tcp::connect};
    table["unix"] = TransportFactory{tcp::listen, tcp::connect};
    table["file"] = TransportFactory{file::listen, file::connect};
    table["rdma"] = TransportFactory{rdma::listen, rdma::connect};
  }

  TransportFactory find(const Uri& uri) {
    std::lock_guard<std::mutex> lock(mu);
    auto it = table.find(uri.scheme);
    if (it == table.end()) {
      throw TransportError(-1, uri.to_string(), ENOTSUP,
                           "no transport registered for scheme '" + uri.scheme + "'");
    }
    return it->second;
  }
};

Registry& registry() {
  static Registry r;
  return r;
}

}  // namespace

void register_transport(const std::string& scheme, TransportFactory factory) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  r.table[scheme] = std::move(factory);
}

std::unique_ptr<Listener> listen(const Uri& uri, const Options& options) {
  tls::wanted(options, uri);  // refuses TLS options where there is no TLS (file:, rdma:)
  return registry().find(uri).listen(uri, options);
}

std::unique_ptr<Listener> listen(std::string_view uri, const Options& options) {
  return listen(parse_uri(uri), options);
}

std::vector<ChannelPtr> connect(const Uri& uri, const Options& options) {
  tls::wanted(options, uri);
  return registry().find(uri).connect(uri, options);
}

std::vector<ChannelPtr> connect(std::string_view uri, const Options& options) {
  return connect(parse_uri(uri), options);
}

}  // namespace ferry::transport
