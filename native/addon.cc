// Registers each kernel interface's bindings, and holds the argument readers
// they share.
#include "addon.h"

#include <unistd.h>

#include <cmath>

namespace dmabuf {

bool ThrowTypeError(Napi::Env env, const std::string& message) {
  Napi::TypeError error = Napi::TypeError::New(env, message);
  error.Set("code", Napi::String::New(env, "ERR_INVALID_ARG_TYPE"));
  error.ThrowAsJavaScriptException();
  return false;
}

bool ThrowRangeError(Napi::Env env, const std::string& message) {
  Napi::RangeError error = Napi::RangeError::New(env, message);
  error.Set("code", Napi::String::New(env, "ERR_OUT_OF_RANGE"));
  error.ThrowAsJavaScriptException();
  return false;
}

bool ThrowInvalidValue(Napi::Env env, const std::string& message) {
  Napi::RangeError error = Napi::RangeError::New(env, message);
  error.Set("code", Napi::String::New(env, "ERR_INVALID_ARG_VALUE"));
  error.ThrowAsJavaScriptException();
  return false;
}

static bool WrongType(Napi::Env env, const std::string& name, const std::string& expected) {
  return ThrowTypeError(env, "argument " + name + " must be " + expected);
}

static bool Fail(const Napi::CallbackInfo& info, const char* name, const std::string& expected) {
  return WrongType(info.Env(), name, expected);
}

static bool OutOfRange(Napi::Env env, const std::string& name, const char* expected) {
  return ThrowRangeError(env, "argument " + name + " must be " + expected);
}

// A number that is whole and within [min, max]; NaN fails every comparison,
// so it is refused by the first test.
static bool WholeIn(double value, double min, double max) {
  return value == std::trunc(value) && value >= min && value <= max;
}

// napi_get_value_double refuses what is not a number by itself: one napi
// call per number, where a type check first made two.
bool ArgListNumber(Napi::Env env, Napi::Value value, const std::string& name, double min, double max, const char* expected, double* out) {
  double number;
  if (napi_get_value_double(env, value, &number) != napi_ok) return WrongType(env, name, expected);
  if (!WholeIn(number, min, max)) return OutOfRange(env, name, expected);
  *out = number;
  return true;
}

// The common case, a whole number in range, in one napi call and with no
// string made: the names and expectations are built only to throw.
static bool WholeNumber(napi_env env, napi_value value, double min, double max, double* out) {
  return napi_get_value_double(env, value, out) == napi_ok && WholeIn(*out, min, max);
}

bool ArgInt32(const Napi::CallbackInfo& info, size_t index, const char* name, int32_t* out) {
  double value;
  if (!WholeNumber(info.Env(), info[index], INT32_MIN, INT32_MAX, &value) && !ArgListNumber(info.Env(), info[index], name, INT32_MIN, INT32_MAX, "a 32-bit integer", &value)) return false;
  *out = static_cast<int32_t>(value);
  return true;
}

bool ArgUint32(const Napi::CallbackInfo& info, size_t index, const char* name, uint32_t* out, uint32_t max) {
  double value;
  if (!WholeNumber(info.Env(), info[index], 0, max, &value)) {
    std::string expected = max == UINT32_MAX ? "an unsigned 32-bit integer" : "an integer from 0 to " + std::to_string(max);
    if (!ArgListNumber(info.Env(), info[index], name, 0, max, expected.c_str(), &value)) return false;
  }
  *out = static_cast<uint32_t>(value);
  return true;
}

bool ArgSize(const Napi::CallbackInfo& info, size_t index, const char* name, uint64_t* out) {
  double value;
  if (!WholeNumber(info.Env(), info[index], 0, 9007199254740991.0, &value) && !ArgListNumber(info.Env(), info[index], name, 0, 9007199254740991.0, "a non-negative safe integer", &value)) return false;
  *out = static_cast<uint64_t>(value);
  return true;
}

bool ArgFdList(const Napi::CallbackInfo& info, size_t index, const char* name, size_t maxLength, std::vector<int>* out) {
  // napi_get_array_length refuses what is not an array.
  uint32_t length;
  if (napi_get_array_length(info.Env(), info[index], &length) != napi_ok) return Fail(info, name, "an array of fds");
  Napi::Array list = info[index].As<Napi::Array>();
  if (length > maxLength) return ThrowInvalidValue(info.Env(), std::string("argument ") + name + " must hold at most " + std::to_string(maxLength) + " fds");
  out->clear();
  out->reserve(length);
  for (uint32_t i = 0; i < length; i++) {
    // A getter on the array may throw: that exception is the caller's.
    Napi::Value item = list.Get(i);
    if (info.Env().IsExceptionPending()) return false;
    double fd;
    if (!WholeNumber(info.Env(), item, 0, INT32_MAX, &fd) && !ArgListNumber(info.Env(), item, std::string(name) + "[" + std::to_string(i) + "]", 0, INT32_MAX, "an fd (an integer from 0 to 2^31-1)", &fd)) return false;
    out->push_back(static_cast<int>(fd));
  }
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

// One napi_get_typedarray_info per argument (it refuses what is not a typed
// array): under TCG each napi call costs about a microsecond, and these
// arguments are on every message's path.
static bool TypedArrayOf(const Napi::CallbackInfo& info, size_t index, napi_typedarray_type expected, void** data, size_t* length) {
  napi_typedarray_type type;
  return napi_get_typedarray_info(info.Env(), info[index], &type, length, data, nullptr, nullptr) == napi_ok && type == expected;
}

bool ArgInt32Array(const Napi::CallbackInfo& info, size_t index, const char* name, size_t minLength, int32_t** data, size_t* length) {
  void* start;
  if (!TypedArrayOf(info, index, napi_int32_array, &start, length) || *length < minLength) {
    return Fail(info, name, (std::string("an Int32Array of at least ") + std::to_string(minLength) + " elements").c_str());
  }
  *data = static_cast<int32_t*>(start);
  return true;
}

bool ArgBuffer(const Napi::CallbackInfo& info, size_t index, const char* name, char** data, size_t* length) {
  void* start;
  if (!TypedArrayOf(info, index, napi_uint8_array, &start, length)) return Fail(info, name, "a Buffer or Uint8Array");
  *data = static_cast<char*>(start);
  return true;
}

Napi::Object Constants(Napi::Object exports) {
  if (!exports.Has("constants")) exports.Set("constants", Napi::Object::New(exports.Env()));
  return exports.Get("constants").As<Napi::Object>();
}

}  // namespace dmabuf

// Runs when the environment ends, a worker's included (a terminate() too),
// after the cleanup hooks registered later (each live Poller's), so no poll
// is left on an fd closed here.
static void CloseOwnedFds(dmabuf::AddonData* data) {
  for (int fd : data->ownedFds) close(fd);
  data->ownedFds.clear();
}

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) {
  auto* data = new dmabuf::AddonData();
  env.SetInstanceData<dmabuf::AddonData>(data);
  env.AddCleanupHook(CloseOwnedFds, data);
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
  dmabuf::InitDrm(env, exports);
  dmabuf::InitV4l2(env, exports);
  // Shared by every caller in this environment: no caller may change a value for the others.
  dmabuf::Constants(exports).Freeze();
  return exports;
}

NODE_API_MODULE(dmabuf_native, InitAddon)
