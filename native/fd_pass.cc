// Unix sockets that carry fds (SCM_RIGHTS), and pidfd_getfd: how dma-bufs and
// sync_files move between processes. Sockets are non-blocking and
// close-on-exec; every received fd is close-on-exec (MSG_CMSG_CLOEXEC).
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "addon.h"

#ifndef SCM_MAX_FD
#define SCM_MAX_FD 253  // include/net/scm.h: the most fds one message may carry
#endif

namespace dmabuf {

// A name starting with NUL is Linux's abstract namespace (no file).
static bool ArgAddress(const Napi::CallbackInfo& info, size_t index, struct sockaddr_un* address, socklen_t* length) {
  std::string path;
  if (!ArgString(info, index, "path", &path)) return false;
  if (path.empty() || path.size() >= sizeof(address->sun_path)) {
    return ThrowInvalidValue(info.Env(), "path must be 1 to 107 bytes");
  }
  memset(address, 0, sizeof(*address));
  address->sun_family = AF_UNIX;
  memcpy(address->sun_path, path.data(), path.size());
  *length = static_cast<socklen_t>(offsetof(struct sockaddr_un, sun_path) + path.size() + (path[0] == '\0' ? 0 : 1));
  return true;
}

// socketPair(type): a connected pair of a Unix socket type; the kernel
// refuses a number that is not one (EINVAL or EPROTONOSUPPORT).
static Napi::Value SocketPair(const Napi::CallbackInfo& info) {
  int32_t type;
  if (!ArgInt32(info, 0, "type", &type)) return info.Env().Undefined();
  if ((type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC)) != type) {
    ThrowInvalidValue(info.Env(), "type must be a socket type without flags");
    return info.Env().Undefined();
  }
  int fds[2];
  if (socketpair(AF_UNIX, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) < 0) return Errno(info.Env(), errno);
  Napi::Array pair = Napi::Array::New(info.Env(), 2);
  pair.Set(0u, Napi::Number::New(info.Env(), fds[0]));
  pair.Set(1u, Napi::Number::New(info.Env(), fds[1]));
  return pair;
}

static Napi::Value UnixListen(const Napi::CallbackInfo& info) {
  struct sockaddr_un address;
  socklen_t length;
  uint32_t backlog;
  if (!ArgAddress(info, 0, &address, &length) || !ArgUint32(info, 1, "backlog", &backlog)) return info.Env().Undefined();
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return Errno(info.Env(), errno);
  if (bind(fd, reinterpret_cast<struct sockaddr*>(&address), length) < 0 || listen(fd, static_cast<int>(backlog)) < 0) {
    int error = errno;
    close(fd);
    return Errno(info.Env(), error);
  }
  return Napi::Number::New(info.Env(), fd);
}

// A non-blocking, close-on-exec Unix stream socket, for unixConnect.
static Napi::Value UnixSocket(const Napi::CallbackInfo& info) {
  return Result(info.Env(), socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
}

// connect(2) on a non-blocking Unix stream socket completes at once, or
// fails with EAGAIN while the listener's backlog is full. Unlike TCP there
// is no connection in progress then, and nothing to poll for: the socket
// polls writable (and HUP) at once, and the listener's accept wakes only
// blocked connectors. The caller tries again later; the event loop never
// waits in here (a blocking connect to a listener in the same process would
// never return).
static Napi::Value UnixConnect(const Napi::CallbackInfo& info) {
  int32_t fd;
  struct sockaddr_un address;
  socklen_t length;
  if (!ArgInt32(info, 0, "fd", &fd) || !ArgAddress(info, 1, &address, &length)) return info.Env().Undefined();
  return Result(info.Env(), connect(fd, reinterpret_cast<struct sockaddr*>(&address), length));
}

static Napi::Value Accept(const Napi::CallbackInfo& info) {
  int32_t fd;
  if (!ArgInt32(info, 0, "fd", &fd)) return info.Env().Undefined();
  return Result(info.Env(), Restarting([&] { return accept4(fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC); }));
}

static bool ArgBufferRange(const Napi::CallbackInfo& info, size_t index, char** data, size_t* length) {
  char* start;
  size_t size;
  if (!ArgBuffer(info, index, "buffer", &start, &size)) return false;
  uint64_t offset, count;
  if (!ArgSize(info, index + 1, "offset", &offset) || !ArgSize(info, index + 2, "length", &count)) return false;
  if (offset > size || count > size - offset) {
    return ThrowRangeError(info.Env(), "offset and length must lie inside the buffer");
  }
  *data = start + offset;
  *length = static_cast<size_t>(count);
  return true;
}

// sendFds(socket, buffer, offset, length, fds): bytes sent, or -errno.
static Napi::Value SendFds(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  char* data;
  size_t length;
  if (!ArgInt32(info, 0, "fd", &fd) || !ArgBufferRange(info, 1, &data, &length)) return env.Undefined();
  std::vector<int> fds;
  if (!ArgFdList(info, 4, "fds", SCM_MAX_FD, &fds)) return env.Undefined();
  struct iovec vector = {data, length};
  struct msghdr message = {};
  message.msg_iov = &vector;
  message.msg_iovlen = 1;
  std::vector<char> control(CMSG_SPACE(sizeof(int) * (fds.empty() ? 1 : fds.size())));
  if (!fds.empty()) {
    message.msg_control = control.data();
    message.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    struct cmsghdr* header = CMSG_FIRSTHDR(&message);
    header->cmsg_level = SOL_SOCKET;
    header->cmsg_type = SCM_RIGHTS;
    header->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    memcpy(CMSG_DATA(header), fds.data(), sizeof(int) * fds.size());
  }
  return Result(env, Restarting([&] { return sendmsg(fd, &message, MSG_NOSIGNAL | MSG_DONTWAIT); }));
}

long long ReceiveWithFds(int fd, char* data, size_t length, int32_t* out, size_t maxFds, size_t stride) {
  if (maxFds > SCM_MAX_FD) maxFds = SCM_MAX_FD;
  struct iovec vector = {data, length};
  struct msghdr message = {};
  message.msg_iov = &vector;
  message.msg_iovlen = 1;
  // Room besides the fds for what a shared socket may add before them
  // (SO_PASSCRED's credentials, SO_PASSPIDFD's pidfd, a short SO_PASSSEC
  // label): without it they would take the fds' room (MSG_CTRUNC).
  constexpr size_t kOtherControl = CMSG_SPACE(sizeof(struct ucred)) + CMSG_SPACE(sizeof(int)) + CMSG_SPACE(256);
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int) * SCM_MAX_FD) + kOtherControl];
  message.msg_control = control;
  message.msg_controllen = (maxFds == 0 ? 0 : CMSG_SPACE(sizeof(int) * maxFds)) + kOtherControl;
  ssize_t received = Restarting([&] { return recvmsg(fd, &message, MSG_CMSG_CLOEXEC | MSG_DONTWAIT); });
  if (received < 0) return -errno;
  // CMSG_SPACE rounds up, so the kernel may install more fds than asked
  // for: those are closed here and reported as lost, never left open.
  size_t count = 0;
  bool lost = false;
  for (struct cmsghdr* header = CMSG_FIRSTHDR(&message); header != nullptr; header = CMSG_NXTHDR(&message, header)) {
    if (header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS) continue;
    size_t n = (header->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < n; i++) {
      int received_fd;
      memcpy(&received_fd, CMSG_DATA(header) + i * sizeof(int), sizeof(int));
      if (count < maxFds) {
        out[2 + stride * count++] = received_fd;
      } else {
        close(received_fd);
        lost = true;
      }
    }
  }
  out[0] = static_cast<int32_t>(count);
  out[1] = (message.msg_flags & (MSG_CTRUNC | MSG_TRUNC)) | (lost ? MSG_CTRUNC : 0);
  return received;
}

// recvFds(socket, buffer, offset, length, fdsOut): the bytes read, or -errno.
// fdsOut (an Int32Array of 2 + room) receives the count of fds, the message's
// MSG_CTRUNC and MSG_TRUNC flags (fds lost: the ones that arrived are there,
// for the caller to close; a datagram longer than the buffer: its rest is
// gone), then the fds: one array the caller keeps, instead of an object and
// an array made for every message.
static Napi::Value RecvFds(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  char* data;
  size_t length;
  int32_t* out;
  size_t outLength;
  if (!ArgInt32(info, 0, "fd", &fd) || !ArgBufferRange(info, 1, &data, &length) || !ArgInt32Array(info, 4, "fdsOut", 2, &out, &outLength)) {
    return env.Undefined();
  }
  return Napi::Number::New(env, static_cast<double>(ReceiveWithFds(fd, data, length, out, outLength - 2, 1)));
}

// socketInfo(fd): [SO_DOMAIN, SO_TYPE] of a socket, or -errno (ENOTSOCK for
// another file), so that an fd a program already has is known before use.
static Napi::Value SocketInfo(const Napi::CallbackInfo& info) {
  int32_t fd;
  if (!ArgInt32(info, 0, "fd", &fd)) return info.Env().Undefined();
  int domain, type;
  socklen_t length = sizeof(int);
  if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &length) < 0) return Errno(info.Env(), errno);
  length = sizeof(int);
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &length) < 0) return Errno(info.Env(), errno);
  Napi::Array result = Napi::Array::New(info.Env(), 2);
  result.Set(0u, Napi::Number::New(info.Env(), domain));
  result.Set(1u, Napi::Number::New(info.Env(), type));
  return result;
}

static Napi::Value PidfdOpen(const Napi::CallbackInfo& info) {
  int32_t pid;
  if (!ArgInt32(info, 0, "pid", &pid)) return info.Env().Undefined();
  return Result(info.Env(), syscall(SYS_pidfd_open, pid, 0));
}

static Napi::Value PidfdGetFd(const Napi::CallbackInfo& info) {
  int32_t pidfd, target;
  if (!ArgInt32(info, 0, "pidfd", &pidfd) || !ArgInt32(info, 1, "targetFd", &target)) return info.Env().Undefined();
  // The new fd is always close-on-exec (pidfd_getfd(2)).
  return Result(info.Env(), syscall(SYS_pidfd_getfd, pidfd, target, 0));
}

void InitFdPass(Napi::Env env, Napi::Object exports) {
  exports.Set("socketPair", Napi::Function::New(env, SocketPair));
  exports.Set("unixListen", Napi::Function::New(env, UnixListen));
  exports.Set("unixSocket", Napi::Function::New(env, UnixSocket));
  exports.Set("unixConnect", Napi::Function::New(env, UnixConnect));
  exports.Set("accept", Napi::Function::New(env, Accept));
  exports.Set("sendFds", Napi::Function::New(env, SendFds));
  exports.Set("recvFds", Napi::Function::New(env, RecvFds));
  exports.Set("socketInfo", Napi::Function::New(env, SocketInfo));
  exports.Set("pidfdOpen", Napi::Function::New(env, PidfdOpen));
  exports.Set("pidfdGetFd", Napi::Function::New(env, PidfdGetFd));
  Napi::Object constants = Constants(exports);
  DMABUF_CONSTANT(constants, SCM_MAX_FD);
  DMABUF_CONSTANT(constants, AF_UNIX);
  DMABUF_CONSTANT(constants, SOCK_STREAM);
  DMABUF_CONSTANT(constants, SOCK_SEQPACKET);
  DMABUF_CONSTANT(constants, SOCK_DGRAM);
  DMABUF_CONSTANT(constants, MSG_CTRUNC);
  DMABUF_CONSTANT(constants, MSG_TRUNC);
}

}  // namespace dmabuf
