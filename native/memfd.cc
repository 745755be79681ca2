// memfd_create(2) and file seals: udmabuf's backing store.
#include <fcntl.h>
#include <sys/mman.h>

#include "addon.h"

namespace dmabuf {

static Napi::Value MemfdCreate(const Napi::CallbackInfo& info) {
  std::string name;
  uint32_t flags;
  if (!ArgString(info, 0, "name", &name) || !ArgUint32(info, 1, "flags", &flags)) return info.Env().Undefined();
  return Result(info.Env(), memfd_create(name.c_str(), flags | MFD_CLOEXEC));
}

static Napi::Value AddSeals(const Napi::CallbackInfo& info) {
  int32_t fd;
  uint32_t seals;
  if (!ArgInt32(info, 0, "fd", &fd) || !ArgUint32(info, 1, "seals", &seals)) return info.Env().Undefined();
  return Result(info.Env(), fcntl(fd, F_ADD_SEALS, seals));
}

static Napi::Value GetSeals(const Napi::CallbackInfo& info) {
  int32_t fd;
  if (!ArgInt32(info, 0, "fd", &fd)) return info.Env().Undefined();
  return Result(info.Env(), fcntl(fd, F_GET_SEALS));
}

// udmabuf takes the pages of a hugetlb memfd only when they exist: allocating
// them here fails cleanly (ENOSPC) where touching them through a mapping
// would raise SIGBUS.
static Napi::Value Allocate(const Napi::CallbackInfo& info) {
  int32_t fd;
  uint64_t offset, length;
  if (!ArgInt32(info, 0, "fd", &fd) || !ArgSize(info, 1, "offset", &offset) || !ArgSize(info, 2, "length", &length)) {
    return info.Env().Undefined();
  }
  return Result(info.Env(), Restarting([&] { return fallocate(fd, 0, static_cast<off_t>(offset), static_cast<off_t>(length)); }));
}

void InitMemfd(Napi::Env env, Napi::Object exports) {
  exports.Set("memfdCreate", Napi::Function::New(env, MemfdCreate));
  exports.Set("addSeals", Napi::Function::New(env, AddSeals));
  exports.Set("getSeals", Napi::Function::New(env, GetSeals));
  exports.Set("fallocate", Napi::Function::New(env, Allocate));
  Napi::Object constants = Constants(exports);
  DMABUF_CONSTANT(constants, MFD_ALLOW_SEALING);
  DMABUF_CONSTANT(constants, MFD_HUGETLB);
  DMABUF_CONSTANT(constants, F_SEAL_SEAL);
  DMABUF_CONSTANT(constants, F_SEAL_SHRINK);
  DMABUF_CONSTANT(constants, F_SEAL_GROW);
  DMABUF_CONSTANT(constants, F_SEAL_WRITE);
  DMABUF_CONSTANT(constants, F_SEAL_FUTURE_WRITE);
}

}  // namespace dmabuf
