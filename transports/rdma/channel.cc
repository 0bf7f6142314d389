#include "transports/rdma/channel.h"

#include "transports/rdma/endpoint.h"

namespace ferry::transport::rdma {
namespace {

namespace hs = handshake;

class RdmaChannel final : public Channel {
 public:
  RdmaChannel(std::unique_ptr<Endpoint> ep, Identity id) : Channel(std::move(id)), ep_(std::move(ep)) {
    ep_->channel_ = static_cast<int>(index());
    ep_->callback_ = &on_send_;
    ep_->stats_ = ChannelStats{};  // the handshake is not the caller's traffic
  }
  ~RdmaChannel() override = default;

  static ChannelPtr make(std::unique_ptr<Endpoint> ep, const hs::Hello& local,
                         const hs::Hello& peer) {
    Identity id;
    id.index = local.index;
    id.count = local.count;
    id.session_id = local.session_id;
    id.peer = ep->peer_;
    id.peer_caps = peer.capabilities;
    return std::make_unique<RdmaChannel>(std::move(ep), std::move(id));
  }

  Capabilities capabilities() const override { return kCaps; }
  ChannelStats stats() const override { return ep_->stats_; }
  std::string send_path() const override { return ep_->send_path(); }

  void send(std::span<const iovec> iov, uint64_t cookie) override {
    ep_->check_usable("send");
    ep_->send(iov, cookie, "send");
  }
  size_t poll_completions() override { return ep_->poll_completions(); }
  void wait_all() override {
    ep_->check_usable("wait_all");
    ep_->wait_all("wait_all");
  }
  void recv(std::span<const iovec> iov) override {
    ep_->check_usable("recv");
    ep_->recv(iov, ep_->opts_.io_timeout, "recv");
  }
  void close() override { ep_->close(); }
  void abort() noexcept override { ep_->abort(); }
  MemoryRegion register_memory(void* addr, size_t len) override {
    return ep_->register_memory(addr, len);
  }
  void deregister_memory(const MemoryRegion& region) override { ep_->deregister_memory(region); }
  void write_remote(std::span<const iovec> local, const RemoteRegion& remote, uint64_t offset,
                    uint64_t cookie) override {
    ep_->check_usable("write_remote");
    ep_->write_remote(local, remote, offset, cookie);
  }

 private:
  std::unique_ptr<Endpoint> ep_;
};

}  // namespace

ChannelPtr make_channel(std::unique_ptr<Endpoint> ep, const hs::Hello& local,
                        const hs::Hello& peer) {
  return RdmaChannel::make(std::move(ep), local, peer);
}

}  // namespace ferry::transport::rdma
