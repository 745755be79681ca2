// /dev/udmabuf: UDMABUF_CREATE and UDMABUF_CREATE_LIST, always close-on-exec.
#include <linux/udmabuf.h>
#include <sys/ioctl.h>

#include <vector>

#include "addon.h"

namespace dmabuf {

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
    Napi::TypeError::New(info.Env(), "argument segments must be an array").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  Napi::Array flat = info[1].As<Napi::Array>();
  uint32_t length = flat.Length();
  if (length == 0 || length % 3 != 0) {
    Napi::RangeError::New(info.Env(), "segments must hold memfd, offset, size triples").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  uint32_t count = length / 3;
  std::vector<char> storage(sizeof(struct udmabuf_create_list) + count * sizeof(struct udmabuf_create_item));
  auto* list = reinterpret_cast<struct udmabuf_create_list*>(storage.data());
  list->flags = UDMABUF_FLAGS_CLOEXEC;
  list->count = count;
  for (uint32_t i = 0; i < count; i++) {
    Napi::Value memfd = flat[i * 3], offset = flat[i * 3 + 1], size = flat[i * 3 + 2];
    double values[3];
    const Napi::Value parts[3] = {memfd, offset, size};
    for (int part = 0; part < 3; part++) {
      if (!parts[part].IsNumber()) {
        Napi::TypeError::New(info.Env(), "segments must hold numbers").ThrowAsJavaScriptException();
        return info.Env().Undefined();
      }
      values[part] = parts[part].As<Napi::Number>().DoubleValue();
      if (values[part] < 0 || values[part] > 9007199254740991.0 || values[part] != static_cast<double>(static_cast<uint64_t>(values[part]))) {
        Napi::RangeError::New(info.Env(), "segment values must be non-negative safe integers").ThrowAsJavaScriptException();
        return info.Env().Undefined();
      }
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
