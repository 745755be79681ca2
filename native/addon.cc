// Registers each kernel interface's bindings, and holds the argument readers
// they share.
#include "addon.h"

#include <cmath>

namespace dmabuf {

static bool Fail(const Napi::CallbackInfo& info, const char* name, const char* expected) {
  Napi::TypeError::New(info.Env(), std::string("argument ") + name + " must be " + expected)
      .ThrowAsJavaScriptException();
  return false;
}

bool ArgInt32(const Napi::CallbackInfo& info, size_t index, const char* name, int32_t* out) {
  if (!info[index].IsNumber()) return Fail(info, name, "a 32-bit integer");
  double value = info[index].As<Napi::Number>().DoubleValue();
  if (value != std::trunc(value) || value < INT32_MIN || value > INT32_MAX) return Fail(info, name, "a 32-bit integer");
  *out = static_cast<int32_t>(value);
  return true;
}

bool ArgUint32(const Napi::CallbackInfo& info, size_t index, const char* name, uint32_t* out) {
  if (!info[index].IsNumber()) return Fail(info, name, "an unsigned 32-bit integer");
  double value = info[index].As<Napi::Number>().DoubleValue();
  if (value != std::trunc(value) || value < 0 || value > UINT32_MAX) return Fail(info, name, "an unsigned 32-bit integer");
  *out = static_cast<uint32_t>(value);
  return true;
}

bool ArgSize(const Napi::CallbackInfo& info, size_t index, const char* name, uint64_t* out) {
  if (!info[index].IsNumber()) return Fail(info, name, "a non-negative safe integer");
  double value = info[index].As<Napi::Number>().DoubleValue();
  if (value != std::trunc(value) || value < 0 || value > 9007199254740991.0) return Fail(info, name, "a non-negative safe integer");
  *out = static_cast<uint64_t>(value);
  return true;
}

bool ArgString(const Napi::CallbackInfo& info, size_t index, const char* name, std::string* out) {
  if (!info[index].IsString()) return Fail(info, name, "a string");
  *out = info[index].As<Napi::String>().Utf8Value();
  return true;
}

bool ArgFunction(const Napi::CallbackInfo& info, size_t index, const char* name, Napi::Function* out) {
  if (!info[index].IsFunction()) return Fail(info, name, "a function");
  *out = info[index].As<Napi::Function>();
  return true;
}

bool ArgInt32Array(const Napi::CallbackInfo& info, size_t index, const char* name, size_t minLength, Napi::Int32Array* out) {
  if (!info[index].IsTypedArray() || info[index].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array ||
      info[index].As<Napi::TypedArray>().ElementLength() < minLength) {
    return Fail(info, name, (std::string("an Int32Array of at least ") + std::to_string(minLength) + " elements").c_str());
  }
  *out = info[index].As<Napi::Int32Array>();
  return true;
}

bool ArgBuffer(const Napi::CallbackInfo& info, size_t index, const char* name, char** data, size_t* length) {
  if (!info[index].IsTypedArray() || info[index].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    return Fail(info, name, "a Buffer or Uint8Array");
  }
  Napi::Uint8Array array = info[index].As<Napi::Uint8Array>();
  *data = reinterpret_cast<char*>(array.Data());
  *length = array.ByteLength();
  return true;
}

}  // namespace dmabuf

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) {
  env.SetInstanceData<dmabuf::AddonData>(new dmabuf::AddonData());
  dmabuf::InitSystem(env, exports);
  dmabuf::InitFd(env, exports);
  dmabuf::InitMemfd(env, exports);
  dmabuf::InitUdmabuf(env, exports);
  dmabuf::InitDmaHeap(env, exports);
  dmabuf::InitDmaBuf(env, exports);
  dmabuf::InitSyncFile(env, exports);
  dmabuf::InitMapping(env, exports);
  dmabuf::InitPoller(env, exports);
  dmabuf::InitFdPass(env, exports);
  dmabuf::InitDmabufTest(env, exports);
  return exports;
}

NODE_API_MODULE(dmabuf_native, InitAddon)
