// Facts about the running kernel that decide what the library can do here.
#include <errno.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "addon.h"

namespace dmabuf {

static Napi::Value KernelRelease(const Napi::CallbackInfo& info) {
  struct utsname name;
  if (uname(&name) != 0) return Errno(info.Env(), errno);
  return Napi::String::New(info.Env(), name.release);
}

// Probes by calling, not by version: memfd_create can be compiled out, and
// seccomp filters can refuse it on a kernel that has it.
static Napi::Value ProbeMemfdCreate(const Napi::CallbackInfo& info) {
  int fd = memfd_create("dmabuf-probe", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return Errno(info.Env(), errno);
  close(fd);
  return Napi::Number::New(info.Env(), 0);
}

static Napi::Value PageSize(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(sysconf(_SC_PAGESIZE)));
}

void InitSystem(Napi::Env env, Napi::Object exports) {
  exports.Set("kernelRelease", Napi::Function::New(env, KernelRelease));
  exports.Set("probeMemfdCreate", Napi::Function::New(env, ProbeMemfdCreate));
  exports.Set("pageSize", Napi::Function::New(env, PageSize));
  // Errnos the dma-buf interfaces return that Node's os.constants.errno
  // lacks: the library names errors from these, never from literals.
  Napi::Object errnos = Napi::Object::New(env);
  errnos.Set("EBADFD", Napi::Number::New(env, EBADFD));
  exports.Set("errnos", errnos);
}

}  // namespace dmabuf
