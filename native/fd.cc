// File descriptor facts Node's fs module does not give: which pseudo file
// system an fd lives on (how a dma-buf or sync_file is recognised), and a
// close-on-exec dup.
#include <fcntl.h>
#include <linux/magic.h>
#include <poll.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "addon.h"

namespace dmabuf {

// Every fd the library holds is opened and closed here, never through fs:
// Node tracks the fds a worker thread opens with fs.open and closes them when
// the worker exits, which would close a reused number if the two were mixed.
static Napi::Value OpenFile(const Napi::CallbackInfo& info) {
  std::string path;
  uint32_t flags;
  if (!ArgString(info, 0, "path", &path) || !ArgUint32(info, 1, "flags", &flags)) return info.Env().Undefined();
  return Result(info.Env(), Restarting([&] { return open(path.c_str(), static_cast<int>(flags) | O_CLOEXEC); }));
}

// Never retried: after EINTR the fd is already gone on Linux, and a retry
// could close an fd another thread just opened.
static Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  int32_t fd;
  if (!ArgInt32(info, 0, "fd", &fd)) return info.Env().Undefined();
  DataOf(info.Env())->ownedFds.erase(fd);
  return Result(info.Env(), close(fd));
}

// An FdHandle's fd, closed by the environment's cleanup hook if the handle
// is still open when its thread ends (addon.cc).
static Napi::Value OwnFd(const Napi::CallbackInfo& info) {
  int32_t fd;
  if (!ArgInt32(info, 0, "fd", &fd)) return info.Env().Undefined();
  if (fd < 0) return Errno(info.Env(), EBADF);
  DataOf(info.Env())->ownedFds.insert(fd);
  return Napi::Number::New(info.Env(), 0);
}

// An fd handed to the caller (detach()): no longer this environment's to close.
static Napi::Value DisownFd(const Napi::CallbackInfo& info) {
  int32_t fd;
  if (!ArgInt32(info, 0, "fd", &fd)) return info.Env().Undefined();
  DataOf(info.Env())->ownedFds.erase(fd);
  return Napi::Number::New(info.Env(), 0);
}

static Napi::Value FsMagic(const Napi::CallbackInfo& info) {
  int32_t fd;
  if (!ArgInt32(info, 0, "fd", &fd)) return info.Env().Undefined();
  struct statfs fs;
  if (fstatfs(fd, &fs) != 0) return Errno(info.Env(), errno);
  return Napi::Number::New(info.Env(), static_cast<double>(static_cast<uint32_t>(fs.f_type)));
}

static Napi::Value DupCloexec(const Napi::CallbackInfo& info) {
  int32_t fd;
  if (!ArgInt32(info, 0, "fd", &fd)) return info.Env().Undefined();
  return Result(info.Env(), fcntl(fd, F_DUPFD_CLOEXEC, 0));
}

static Napi::Value FdFlags(const Napi::CallbackInfo& info) {
  int32_t fd;
  if (!ArgInt32(info, 0, "fd", &fd)) return info.Env().Undefined();
  return Result(info.Env(), fcntl(fd, F_GETFD));
}

// read(2) into a Buffer: for devices that report events as records.
static Napi::Value ReadInto(const Napi::CallbackInfo& info) {
  int32_t fd;
  char* data;
  size_t length;
  if (!ArgInt32(info, 0, "fd", &fd) || !ArgBuffer(info, 1, "buffer", &data, &length)) return info.Env().Undefined();
  return Result(info.Env(), Restarting([&] { return read(fd, data, length); }));
}

int PollReady(int fd, short events) {
  struct pollfd entry = {fd, events, 0};
  int ready = Restarting([&] { return poll(&entry, 1, 0); });
  if (ready < 0) return -errno;
  return ready == 0 ? 0 : entry.revents;
}

static Napi::Value PollNow(const Napi::CallbackInfo& info) {
  int32_t fd;
  uint32_t events;
  // poll(2)'s events field is a short.
  if (!ArgInt32(info, 0, "fd", &fd) || !ArgUint32(info, 1, "events", &events, 0xffff)) return info.Env().Undefined();
  return Napi::Number::New(info.Env(), PollReady(fd, static_cast<short>(events)));
}

void InitFd(Napi::Env env, Napi::Object exports) {
  exports.Set("openFile", Napi::Function::New(env, OpenFile));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd));
  exports.Set("ownFd", Napi::Function::New(env, OwnFd));
  exports.Set("disownFd", Napi::Function::New(env, DisownFd));
  exports.Set("fsMagic", Napi::Function::New(env, FsMagic));
  exports.Set("dupCloexec", Napi::Function::New(env, DupCloexec));
  exports.Set("fdFlags", Napi::Function::New(env, FdFlags));
  exports.Set("pollNow", Napi::Function::New(env, PollNow));
  exports.Set("readInto", Napi::Function::New(env, ReadInto));
  Napi::Object constants = Constants(exports);
  DMABUF_CONSTANT(constants, O_ACCMODE);
  DMABUF_CONSTANT(constants, O_RDONLY);
  DMABUF_CONSTANT(constants, O_WRONLY);
  DMABUF_CONSTANT(constants, O_RDWR);
  DMABUF_CONSTANT(constants, O_NONBLOCK);
  DMABUF_CONSTANT(constants, O_CLOEXEC);
  DMABUF_CONSTANT(constants, POLLIN);
  DMABUF_CONSTANT(constants, POLLOUT);
  // What fsMagic returns for a dma-buf, and for a hugetlb memfd.
  DMABUF_CONSTANT(constants, DMA_BUF_MAGIC);
  DMABUF_CONSTANT(constants, HUGETLBFS_MAGIC);
}

}  // namespace dmabuf
