// Shared conventions of the native layer.
//
// Every binding checks its arguments cheaply (TypeScript has already validated
// them; these checks only keep a bad call from crashing the process), makes one
// syscall, and returns its result. A failed syscall returns -errno as a number:
// TypeScript turns that into a Node-shaped error, so the errno-to-code mapping
// and the actionable messages live in one place (lib/errors.ts).
//
// Built without C++ exceptions: a binding that throws returns right after.
#ifndef DMABUF_NATIVE_ADDON_H_
#define DMABUF_NATIVE_ADDON_H_

#include <errno.h>
#include <napi.h>

#include <cstdint>
#include <string>
#include <unordered_set>
#include <vector>

namespace dmabuf {

void InitSystem(Napi::Env env, Napi::Object exports);
void InitFd(Napi::Env env, Napi::Object exports);
void InitMemfd(Napi::Env env, Napi::Object exports);
void InitUdmabuf(Napi::Env env, Napi::Object exports);
void InitDmaHeap(Napi::Env env, Napi::Object exports);
void InitDmaBuf(Napi::Env env, Napi::Object exports);
void InitSyncFile(Napi::Env env, Napi::Object exports);
void InitMapping(Napi::Env env, Napi::Object exports);
void InitPoller(Napi::Env env, Napi::Object exports);
void InitFdPass(Napi::Env env, Napi::Object exports);
void InitDmabufTest(Napi::Env env, Napi::Object exports);
void InitDrm(Napi::Env env, Napi::Object exports);
void InitV4l2(Napi::Env env, Napi::Object exports);

// exports.constants, the one table of header values TypeScript needs: each
// interface's file adds its own headers' macros (test/host/constants.test.ts
// holds the table to the headers), so none is retyped in TypeScript.
Napi::Object Constants(Napi::Object exports);
#define DMABUF_CONSTANT(table, name) (table).Set(#name, Napi::Number::New((table).Env(), static_cast<double>(name)))

// State of one Node environment (the main thread, or a worker thread): never
// process-wide, because each environment has its own JavaScript objects and
// tears them down at its own time.
struct AddonData {
  Napi::FunctionReference mappingConstructor;
  // The fds this environment's FdHandles own (ownFd/disownFd/closeFd). A
  // worker thread that ends, or is terminated, with handles still open runs
  // no FinalizationRegistry callback: its cleanup hook closes these instead.
  std::unordered_set<int> ownedFds;
};

inline AddonData* DataOf(Napi::Env env) { return env.GetInstanceData<AddonData>(); }

// The result of a syscall as JavaScript sees it: the value, or -errno.
inline Napi::Value Result(Napi::Env env, long long value) {
  return Napi::Number::New(env, static_cast<double>(value < 0 ? -errno : value));
}

inline Napi::Value Errno(Napi::Env env, int error) {
  return Napi::Number::New(env, -error);
}

// Throw Node-shaped argument errors with the codes lib/errors.ts defines,
// and return false: a wrong type is a TypeError (ERR_INVALID_ARG_TYPE), a
// number out of its range a RangeError (ERR_OUT_OF_RANGE), any other value
// refused (a string, a length) a RangeError (ERR_INVALID_ARG_VALUE).
bool ThrowTypeError(Napi::Env env, const std::string& message);
bool ThrowRangeError(Napi::Env env, const std::string& message);
bool ThrowInvalidValue(Napi::Env env, const std::string& message);

// Argument readers: on a wrong type they throw a TypeError
// (ERR_INVALID_ARG_TYPE), on NaN, a fraction or a value out of range a
// RangeError (ERR_OUT_OF_RANGE), as Node's own validators do, and return
// false; the binding returns at once. No reader ever turns a bad number into
// 0: fd 0 is stdin.
bool ArgInt32(const Napi::CallbackInfo& info, size_t index, const char* name, int32_t* out);
bool ArgUint32(const Napi::CallbackInfo& info, size_t index, const char* name, uint32_t* out, uint32_t max = UINT32_MAX);
// Integers up to 2^53 (sizes, offsets), refused when negative or fractional.
bool ArgSize(const Napi::CallbackInfo& info, size_t index, const char* name, uint64_t* out);
bool ArgString(const Napi::CallbackInfo& info, size_t index, const char* name, std::string* out);
bool ArgFunction(const Napi::CallbackInfo& info, size_t index, const char* name, Napi::Function* out);
// One number of a list (name says where, as "segments[4]"): whole, in [min, max].
bool ArgListNumber(Napi::Env env, Napi::Value value, const std::string& name, double min, double max, const char* expected, double* out);
// An array of at most maxLength fds (integers 0 to 2^31-1).
bool ArgFdList(const Napi::CallbackInfo& info, size_t index, const char* name, size_t maxLength, std::vector<int>* out);
// An Int32Array of at least minLength elements, for results written in place.
bool ArgInt32Array(const Napi::CallbackInfo& info, size_t index, const char* name, size_t minLength, int32_t** data, size_t* length);
// A Buffer (or any Uint8Array) the call may read or write in place.
bool ArgBuffer(const Napi::CallbackInfo& info, size_t index, const char* name, char** data, size_t* length);

// recvmsg with fds, as recvFds and the poller's reads make it: the bytes read
// or -errno. out gets the count of fds, the MSG_CTRUNC and MSG_TRUNC flags,
// then the fds, `stride` elements apart (room for maxFds of them).
long long ReceiveWithFds(int fd, char* data, size_t length, int32_t* out, size_t maxFds, size_t stride);

// The `this` of a native class's method. napi_unwrap alone takes any wrapped
// object, of any class, as a T: a method borrowed onto another class's
// object would read that object's memory as its own. Instances are type
// tagged when constructed, and a method checks the tag first.
template <typename T>
T* Self(const Napi::CallbackInfo& info) {
  Napi::Value self = info.This();
  if (!self.IsObject() || !self.As<Napi::Object>().CheckTypeTag(&T::kTypeTag)) {
    Napi::TypeError error = Napi::TypeError::New(info.Env(), std::string("Illegal invocation: this is not a ") + T::kName);
    error.Set("code", Napi::String::New(info.Env(), "ERR_INVALID_THIS"));
    error.ThrowAsJavaScriptException();
    return nullptr;
  }
  return T::Unwrap(self.As<Napi::Object>());
}

// A method as a plain function on the class's prototype that checks `this`
// through Self<T> (ObjectWrap's own method wrapper unwraps unchecked before
// the method runs).
template <typename T, Napi::Value (T::*Method)(const Napi::CallbackInfo&)>
Napi::Value Checked(const Napi::CallbackInfo& info) {
  T* self = Self<T>(info);
  return self == nullptr ? info.Env().Undefined() : (self->*Method)(info);
}

template <typename T, Napi::Value (T::*Method)(const Napi::CallbackInfo&)>
void DefineMethod(Napi::Env env, Napi::Function constructor, const char* name) {
  constructor.Get("prototype").As<Napi::Object>().DefineProperty(Napi::PropertyDescriptor::Value(name, Napi::Function::New<Checked<T, Method>>(env, name), napi_default_method));
}

// Restarts a syscall interrupted by a signal. Not for close(): after EINTR
// the fd is already gone on Linux.
template <typename Call>
long long Restarting(Call call) {
  long long result;
  do {
    result = call();
  } while (result < 0 && errno == EINTR);
  return result;
}

// Also restarts on EAGAIN, which DMA_BUF_IOCTL_SYNC returns when it should
// simply be called again (dma-buf.c's own documentation). Never for a
// non-blocking fd, where EAGAIN means "would block" and retrying spins.
template <typename Call>
long long RestartingSync(Call call) {
  long long result;
  do {
    result = call();
  } while (result < 0 && (errno == EINTR || errno == EAGAIN));
  return result;
}

// Readiness without waiting (timeout 0): the revents, 0 when not ready, or
// -errno. For deciding whether an ioctl that waits on fences would block.
int PollReady(int fd, short events);

}  // namespace dmabuf

#endif  // DMABUF_NATIVE_ADDON_H_
