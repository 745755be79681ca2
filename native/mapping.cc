// mmap(2) of a dma-buf as an ArrayBuffer, with no copy.
//
// The memory must never be reachable from JavaScript once unmapped. unmap()
// detaches the ArrayBuffer first (every view of it drops to length 0), then
// unmaps. The ArrayBuffer's finalizer is the safety net for a mapping never
// unmapped; the region state it shares with the Mapping object makes sure the
// range is unmapped exactly once, whichever comes first, because a second
// munmap could hit an unrelated mapping placed at the same address since.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <memory>
#include <vector>

#include "addon.h"

namespace dmabuf {

// A udmabuf has at most list_limit segments (1024 by default), each a memfd.
constexpr size_t kMaxKeepAlive = 1024;

// keepAlive: duplicates of files that must outlive the mapping, closed only
// after munmap. Linux 6.1's udmabuf maps its memfd's page-cache pages
// directly; evicting the memfd's inode while they are mapped corrupts page
// state, so a udmabuf mapping holds its memfds open itself, whatever order
// close() or garbage collection releases everything else in.
struct Region {
  void* address;
  size_t length;
  bool unmapped;
  std::vector<int> keepAlive;

  int Unmap() {
    if (unmapped) return 0;
    unmapped = true;
    int result = munmap(address, length) == 0 ? 0 : -errno;
    for (int fd : keepAlive) close(fd);
    keepAlive.clear();
    return result;
  }
};

// Made only by mapShared: the constructor takes a token JavaScript cannot
// produce, so `new (mapping.constructor)()` throws instead of making an
// object that owns nothing.
static int constructToken;

class Mapping : public Napi::ObjectWrap<Mapping> {
 public:
  static constexpr napi_type_tag kTypeTag = {0x6d1e4a3b9c2f4d11ULL, 0x8a7b5c3d2e1f0a99ULL};
  static constexpr const char* kName = "Mapping";

  static Napi::Function Define(Napi::Env env) {
    Napi::Function constructor = DefineClass(env, "Mapping", {});
    DefineMethod<Mapping, &Mapping::Unmap>(env, constructor, "unmap");
    constructor.Get("prototype").As<Napi::Object>().DefineProperty(Napi::PropertyDescriptor::Accessor<Checked<Mapping, &Mapping::Buffer>>("buffer", napi_configurable));
    return constructor;
  }

  explicit Mapping(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Mapping>(info) {
    if (info.Length() != 1 || !info[0].IsExternal() || info[0].As<Napi::External<int>>().Data() != &constructToken) {
      Napi::TypeError error = Napi::TypeError::New(info.Env(), "Mapping cannot be constructed from JavaScript: mapShared() makes them");
      error.Set("code", Napi::String::New(info.Env(), "ERR_ILLEGAL_CONSTRUCTOR"));
      error.ThrowAsJavaScriptException();
      return;
    }
    info.This().As<Napi::Object>().TypeTag(&kTypeTag);
  }

  // The ArrayBuffer is returned to the caller, which holds it strongly from
  // the start: held here only weakly, it could be collected (and unmapped)
  // before JavaScript read it back through `buffer`. The weak reference is
  // for unmap(), which detaches it if it still lives.
  Napi::ArrayBuffer Attach(Napi::Env env, std::shared_ptr<Region> region) {
    region_ = region;
    auto* hint = new std::shared_ptr<Region>(region);
    Napi::ArrayBuffer buffer = Napi::ArrayBuffer::New(
        env, region->address, region->length,
        [](Napi::Env, void*, std::shared_ptr<Region>* held) {
          (*held)->Unmap();
          delete held;
        },
        hint);
    buffer_ = Napi::Weak(buffer);
    return buffer;
  }

  Napi::Value Buffer(const Napi::CallbackInfo& info) {
    if (buffer_.IsEmpty() || !region_ || region_->unmapped) return info.Env().Null();
    Napi::Value value = buffer_.Value();
    return value.IsEmpty() ? info.Env().Null() : value;
  }

  Napi::Value Unmap(const Napi::CallbackInfo& info) {
    if (!region_) return Napi::Number::New(info.Env(), 0);
    if (!buffer_.IsEmpty()) {
      Napi::Value value = buffer_.Value();
      if (!value.IsEmpty() && value.IsArrayBuffer()) {
        Napi::ArrayBuffer buffer = value.As<Napi::ArrayBuffer>();
        if (!buffer.IsDetached()) buffer.Detach();
      }
    }
    return Napi::Number::New(info.Env(), region_->Unmap());
  }

 private:
  std::shared_ptr<Region> region_;
  Napi::Reference<Napi::ArrayBuffer> buffer_;
};

// mapShared(fd, length, writable, keepAlive?, offset?): { mapping, buffer },
// or -errno. The offset is for files that name buffers by it (a DRM device's
// dumb buffers, at the fake offset DRM_IOCTL_MODE_MAP_DUMB gives).
static Napi::Value MapShared(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  uint64_t length;
  if (!ArgInt32(info, 0, "fd", &fd) || !ArgSize(info, 1, "length", &length)) return env.Undefined();
  if (!info[2].IsBoolean()) {
    ThrowTypeError(env, "argument writable must be a boolean");
    return env.Undefined();
  }
  std::vector<int> keepAlive;
  if (info.Length() > 3 && !info[3].IsUndefined() && !ArgFdList(info, 3, "keepAlive", kMaxKeepAlive, &keepAlive)) return env.Undefined();
  uint64_t offset = 0;
  if (info.Length() > 4 && !info[4].IsUndefined() && !ArgSize(info, 4, "offset", &offset)) return env.Undefined();
  if (length == 0 || length > SIZE_MAX) return Errno(env, EINVAL);
  int protection = PROT_READ | (info[2].As<Napi::Boolean>().Value() ? PROT_WRITE : 0);
  std::vector<int> held;
  for (int keep : keepAlive) {
    int dup = fcntl(keep, F_DUPFD_CLOEXEC, 0);
    if (dup < 0) {
      int error = errno;
      for (int fdHeld : held) close(fdHeld);
      return Errno(env, error);
    }
    held.push_back(dup);
  }
  void* address = mmap(nullptr, length, protection, MAP_SHARED, fd, static_cast<off_t>(offset));
  if (address == MAP_FAILED) {
    int error = errno;
    for (int fdHeld : held) close(fdHeld);
    return Errno(env, error);
  }
  auto region = std::make_shared<Region>(Region{address, static_cast<size_t>(length), false, std::move(held)});
  Napi::Object mapping = DataOf(env)->mappingConstructor.New({Napi::External<int>::New(env, &constructToken)});
  if (env.IsExceptionPending()) {
    region->Unmap();
    return env.Undefined();
  }
  Napi::Object result = Napi::Object::New(env);
  result.Set("mapping", mapping);
  result.Set("buffer", Mapping::Unwrap(mapping)->Attach(env, region));
  return result;
}

void InitMapping(Napi::Env env, Napi::Object exports) {
  DataOf(env)->mappingConstructor = Napi::Persistent(Mapping::Define(env));
  exports.Set("mapShared", Napi::Function::New(env, MapShared));
}

}  // namespace dmabuf
