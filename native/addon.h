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

// State of one Node environment (the main thread, or a worker thread): never
// process-wide, because each environment has its own JavaScript objects and
// tears them down at its own time.
struct AddonData {
  Napi::FunctionReference mappingConstructor;
};

inline AddonData* DataOf(Napi::Env env) { return env.GetInstanceData<AddonData>(); }

// The result of a syscall as JavaScript sees it: the value, or -errno.
inline Napi::Value Result(Napi::Env env, long long value) {
  return Napi::Number::New(env, static_cast<double>(value < 0 ? -errno : value));
}

inline Napi::Value Errno(Napi::Env env, int error) {
  return Napi::Number::New(env, -error);
}

// Argument readers: on a wrong type they throw a TypeError and return false,
// and the binding returns at once.
bool ArgInt32(const Napi::CallbackInfo& info, size_t index, const char* name, int32_t* out);
bool ArgUint32(const Napi::CallbackInfo& info, size_t index, const char* name, uint32_t* out);
// Integers up to 2^53 (sizes, offsets), refused when negative or fractional.
bool ArgSize(const Napi::CallbackInfo& info, size_t index, const char* name, uint64_t* out);
bool ArgString(const Napi::CallbackInfo& info, size_t index, const char* name, std::string* out);
bool ArgFunction(const Napi::CallbackInfo& info, size_t index, const char* name, Napi::Function* out);
// An Int32Array of at least minLength elements, for results written in place.
bool ArgInt32Array(const Napi::CallbackInfo& info, size_t index, const char* name, size_t minLength, Napi::Int32Array* out);
// A Buffer (or any Uint8Array) the call may read or write in place.
bool ArgBuffer(const Napi::CallbackInfo& info, size_t index, const char* name, char** data, size_t* length);

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
