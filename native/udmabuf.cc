// /dev/udmabuf: UDMABUF_CREATE and UDMABUF_CREATE_LIST, always close-on-exec.
#include <linux/udmabuf.h>
#include <sys/ioctl.h>

#include <vector>

#include "addon.h"

namespace dmabuf {

constexpr uint32_t kMaxSegments = 1 << 20;

static Napi::Value UdmabufCreate(const Napi::CallbackInfo& info) {
  int32_t device, memfd;
  uint64_t offset, size;
  if (!ArgInt32(info, 0, "device", &device) || !ArgInt32(info, 1, "memfd", &memfd) ||
      !ArgSize(info, 2, "offset", &offset) || !ArgSize(info, 3, "size", &size)) {
    return info.Env().Undefined();
  }
  struct udmabuf_create create = {};
  create.memfd = static_cast<__u32>(memfd);
  create.flags = UDMABUF_FLAGS_CLOEXEC;
  create.offset = offset;
  create.size = size;
  return Result(info.Env(), ioctl(device, UDMABUF_CREATE, &create));
}

// Segments arrive flattened as [memfd, offset, size, memfd, offset, size, ...].
static Napi::Value UdmabufCreateList(const Napi::CallbackInfo& info) {
  int32_t device;
  if (!ArgInt32(info, 0, "device", &device)) return info.Env().Undefined();
  if (!info[1].IsArray()) {
    ThrowTypeError(info.Env(), "argument segments must be an array");
    return info.Env().Undefined();
  }
  Napi::Array flat = info[1].As<Napi::Array>();
  uint32_t length = flat.Length();
  if (length == 0 || length % 3 != 0) {
    ThrowInvalidValue(info.Env(), "segments must hold memfd, offset, size triples");
    return info.Env().Undefined();
  }
  uint32_t count = length / 3;
  // The kernel refuses more than its list_limit parameter (1024 by default)
  // anyway; this bound keeps a sparse array of billions of holes from
  // sizing the allocation below.
  if (count > kMaxSegments) {
    ThrowInvalidValue(info.Env(), "segments must hold at most " + std::to_string(kMaxSegments) + " triples");
    return info.Env().Undefined();
  }
  std::vector<char> storage(sizeof(struct udmabuf_create_list) + count * sizeof(struct udmabuf_create_item));
  auto* list = reinterpret_cast<struct udmabuf_create_list*>(storage.data());
  list->flags = UDMABUF_FLAGS_CLOEXEC;
  list->count = count;
  for (uint32_t i = 0; i < count; i++) {
    double values[3];
    for (uint32_t part = 0; part < 3; part++) {
      uint32_t at = i * 3 + part;
      // A memfd is an fd; offsets and sizes are byte counts.
      double max = part == 0 ? INT32_MAX : 9007199254740991.0;
      const char* expected = part == 0 ? "a memfd (an integer from 0 to 2^31-1)" : "a non-negative safe integer";
      Napi::Value value = flat.Get(at);
      if (info.Env().IsExceptionPending()) return info.Env().Undefined();
      if (!ArgListNumber(info.Env(), value, "segments[" + std::to_string(at) + "]", 0, max, expected, &values[part])) return info.Env().Undefined();
    }
    list->list[i].memfd = static_cast<__u32>(values[0]);
    list->list[i].offset = static_cast<__u64>(values[1]);
    list->list[i].size = static_cast<__u64>(values[2]);
  }
  return Result(info.Env(), ioctl(device, UDMABUF_CREATE_LIST, list));
}

void InitUdmabuf(Napi::Env env, Napi::Object exports) {
  exports.Set("udmabufCreate", Napi::Function::New(env, UdmabufCreate));
  exports.Set("udmabufCreateList", Napi::Function::New(env, UdmabufCreateList));
}

}  // namespace dmabuf
