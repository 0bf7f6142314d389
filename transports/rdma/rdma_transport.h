// The rdma transport: one RC queue pair per channel, set up with librdmacm (rdma_cm), on any verbs
// device including soft-RoCE (rdma_rxe). URI rdma:HOST:PORT.
//
// Per channel: its own rdma_cm event channel, protection domain, completion queue (with a
// completion channel for idle waits, polled by the channel's thread) and QP. The stream part of
// the Channel interface (send/recv) is SEND/RECV: kRecvDepth receive buffers of kMessageBytes are
// pre-posted; send() cuts the byte stream into messages of at most kMessageBytes, taking pieces
// that lie in memory registered with register_memory() straight from the caller (zero copy) and
// copying the others into a registered bounce slot (one per send-queue entry). Small sends (up to
// 4 KiB) made while earlier work requests are in flight are batched: copied into the next slot
// and posted as one SEND when it is nearly full, when anything else is posted, or when the
// caller waits, polls, receives or closes (a small send on an idle QP goes at once; 20000 small
// messages: 64-75 s -> 0.2 s under TCG soft-RoCE). recv() copies out
// of the receive buffers into the caller's scatter list and reposts each buffer once drained.
// Flow control is the RC transport's receiver-not-ready retry (rnr_retry_count 7 = retry forever):
// a sender that outruns the receiver waits in the hardware/rxe, it never loses data.
//
// write_remote() is RDMA WRITE into the peer's registered region (RemoteRegion: address, length,
// rkey as learnt from the peer). The offset and length are checked against the advertised region
// before anything is posted. On one QP, a SEND posted after RDMA WRITEs is delivered after their
// bytes are placed (RC ordering), so a SEND marks "everything written before me is in place": the
// per-iteration SYNC guarantee holds per channel without extra fences.
//
// Work requests: at most kSendDepth outstanding; every kSignalEvery-th and the last of each
// send()/write_remote() are signalled, and a signalled completion retires everything before it.
// send callbacks run in call order. end of stream is a zero-length SEND (close()).
//
// register_memory() registers the whole region with ibv_reg_mr (local + remote write) and returns
// the rkey as MemoryRegion::key. Chunked on-demand registration is not built. RLIMIT_MEMLOCK is
// checked before pinning (root, with CAP_IPC_LOCK, is not limited).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "ferry/transport.h"

namespace ferry::transport::rdma {

inline constexpr size_t kMessageBytes = 32 << 10;
inline constexpr uint32_t kRecvDepth = 64;
inline constexpr uint32_t kSendDepth = 128;
inline constexpr uint32_t kSignalEvery = 16;

std::unique_ptr<Listener> listen(const Uri& uri, const Options& options);
std::vector<ChannelPtr> connect(const Uri& uri, const Options& options);

// "" when at least one RDMA device with an active port exists; otherwise why not, with how to
// create a soft-RoCE device.
std::string unavailable_reason();

// How to create a soft-RoCE device (for messages).
inline constexpr const char* kCreateDeviceHint =
    "create a soft-RoCE device with `modprobe rdma_rxe && rdma link add rxe0 type rxe netdev "
    "eth0` (any Ethernet, veth or dummy netdev; not lo), or run under tools/rxe/run-in-vm";

}  // namespace ferry::transport::rdma
