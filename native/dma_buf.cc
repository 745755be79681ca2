// ioctls on a dma-buf fd: CPU-access sync, naming, and fence export/import.
#include <linux/dma-buf.h>
#include <sys/ioctl.h>

#include <cstring>

#include "addon.h"

namespace dmabuf {

// DMA_BUF_IOCTL_SYNC. START waits in the kernel, without a timeout, for the
// fences its direction needs. With idleEvents set (POLLIN for a read, POLLOUT
// otherwise), a zero-timeout poll first says whether it would, and the call
// returns -EBUSY instead of blocking the caller's thread. 0 skips the check.
static Napi::Value Sync(const Napi::CallbackInfo& info) {
  int32_t fd;
  uint32_t flags, idleEvents;
  if (!ArgInt32(info, 0, "fd", &fd) || !ArgUint32(info, 1, "flags", &flags) || !ArgUint32(info, 2, "idleEvents", &idleEvents, 0xffff)) {
    return info.Env().Undefined();
  }
  if (idleEvents != 0) {
    int ready = PollReady(fd, static_cast<short>(idleEvents));
    if (ready < 0) return Errno(info.Env(), -ready);
    if ((ready & static_cast<short>(idleEvents)) == 0) return Errno(info.Env(), EBUSY);
  }
  struct dma_buf_sync sync = {};
  sync.flags = flags;
  return Result(info.Env(), RestartingSync([&] { return ioctl(fd, DMA_BUF_IOCTL_SYNC, &sync); }));
}

static Napi::Value SetName(const Napi::CallbackInfo& info) {
  int32_t fd;
  std::string name;
  if (!ArgInt32(info, 0, "fd", &fd) || !ArgString(info, 1, "name", &name)) return info.Env().Undefined();
  // The kernel copies up to DMA_BUF_NAME_LEN bytes with strndup_user and
  // refuses longer names; a NUL inside would silently shorten the name.
  if (name.size() >= DMA_BUF_NAME_LEN || memchr(name.data(), '\0', name.size()) != nullptr) {
    ThrowInvalidValue(info.Env(), "name must be at most 31 bytes of UTF-8 with no NUL");
    return info.Env().Undefined();
  }
  return Result(info.Env(), ioctl(fd, DMA_BUF_SET_NAME, name.c_str()));
}

static Napi::Value ExportSyncFile(const Napi::CallbackInfo& info) {
  int32_t fd;
  uint32_t flags;
  if (!ArgInt32(info, 0, "fd", &fd) || !ArgUint32(info, 1, "flags", &flags)) return info.Env().Undefined();
  struct dma_buf_export_sync_file request = {};
  request.flags = flags;
  request.fd = -1;
  if (ioctl(fd, DMA_BUF_IOCTL_EXPORT_SYNC_FILE, &request) < 0) return Errno(info.Env(), errno);
  return Napi::Number::New(info.Env(), request.fd);
}

static Napi::Value ImportSyncFile(const Napi::CallbackInfo& info) {
  int32_t fd, syncFile;
  uint32_t flags;
  if (!ArgInt32(info, 0, "fd", &fd) || !ArgInt32(info, 1, "syncFile", &syncFile) || !ArgUint32(info, 2, "flags", &flags)) {
    return info.Env().Undefined();
  }
  struct dma_buf_import_sync_file request = {};
  request.flags = flags;
  request.fd = syncFile;
  return Result(info.Env(), ioctl(fd, DMA_BUF_IOCTL_IMPORT_SYNC_FILE, &request));
}

void InitDmaBuf(Napi::Env env, Napi::Object exports) {
  exports.Set("dmaBufSync", Napi::Function::New(env, Sync));
  exports.Set("dmaBufSetName", Napi::Function::New(env, SetName));
  exports.Set("dmaBufExportSyncFile", Napi::Function::New(env, ExportSyncFile));
  exports.Set("dmaBufImportSyncFile", Napi::Function::New(env, ImportSyncFile));
  Napi::Object constants = Constants(exports);
  DMABUF_CONSTANT(constants, DMA_BUF_SYNC_READ);
  DMABUF_CONSTANT(constants, DMA_BUF_SYNC_WRITE);
  DMABUF_CONSTANT(constants, DMA_BUF_SYNC_RW);
  DMABUF_CONSTANT(constants, DMA_BUF_SYNC_START);
  DMABUF_CONSTANT(constants, DMA_BUF_SYNC_END);
  // DMA_BUF_NAME_LEN counts the NUL.
  constants.Set("DMA_BUF_NAME_MAX_BYTES", Napi::Number::New(env, DMA_BUF_NAME_LEN - 1));
}

}  // namespace dmabuf
