// The rdma transport's entry points. Its parts: verbs_util (helpers), endpoint* (one RC
// connection), channel (the Channel shell), connector (active side), listener (passive side).
#include "transports/rdma/rdma_transport.h"

#include <infiniband/verbs.h>

#include <cerrno>

#include "transports/auth.h"
#include "transports/handshake.h"
#include "transports/rdma/connector.h"
#include "transports/rdma/listener.h"

namespace ferry::transport::rdma {

namespace hs = handshake;

std::string unavailable_reason() {
  int n = 0;
  ibv_device** list = ibv_get_device_list(&n);
  if (!list || n == 0) {
    if (list) ibv_free_device_list(list);
    return std::string("no RDMA device: ") + kCreateDeviceHint;
  }
  bool active = false;
  std::string names;
  for (int i = 0; i < n && !active; ++i) {
    names += std::string(names.empty() ? "" : ", ") + ibv_get_device_name(list[i]);
    ibv_context* ctx = ibv_open_device(list[i]);
    if (!ctx) continue;
    ibv_port_attr pa{};
    if (ibv_query_port(ctx, 1, &pa) == 0 && pa.state == IBV_PORT_ACTIVE) active = true;
    ibv_close_device(ctx);
  }
  ibv_free_device_list(list);
  if (!active) return "no RDMA device with an active port (devices: " + names + "); " + kCreateDeviceHint;
  return "";
}

std::unique_ptr<Listener> listen(const Uri& uri, const Options& options) {
  auth::check_key(options, uri.to_string());
  return make_listener(uri, options);
}

std::vector<ChannelPtr> connect(const Uri& uri, const Options& options) {
  if (options.channels == 0) {
    throw TransportError(-1, uri.to_string(), EINVAL, "connect: options.channels must be >= 1");
  }
  auth::check_key(options, uri.to_string());
  if (std::string why = unavailable_reason(); !why.empty()) {
    throw TransportError(-1, uri.to_string(), ENODEV, why);
  }
  const uint64_t session = options.session_id ? options.session_id : hs::random_session_id();
  std::vector<ChannelPtr> out;
  out.reserve(options.channels);
  for (uint32_t i = 0; i < options.channels; ++i) {
    out.push_back(connect_channel(uri, options, i, session));
  }
  return out;
}

}  // namespace ferry::transport::rdma
