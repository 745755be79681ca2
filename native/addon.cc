// Registers each kernel interface's bindings; nothing else lives here.
#include <napi.h>

#include "addon.h"

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) {
  dmabuf::InitSystem(env, exports);
  return exports;
}

NODE_API_MODULE(dmabuf_native, InitAddon)
