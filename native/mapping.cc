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

class Mapping : public Napi::ObjectWrap<Mapping> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Mapping", {InstanceMethod("unmap", &Mapping::Unmap), InstanceAccessor("buffer", &Mapping::Buffer, nullptr)});
  }

  explicit Mapping(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Mapping>(info) {
    // Only MapShared makes these, through the constructor reference; a call
    // from JavaScript gets an object that owns nothing.
  }

  void Attach(Napi::Env env, std::shared_ptr<Region> region) {
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
  }

 private:
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

  std::shared_ptr<Region> region_;
  Napi::Reference<Napi::ArrayBuffer> buffer_;
};

static Napi::Value MapShared(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  uint64_t length;
  if (!ArgInt32(info, 0, "fd", &fd) || !ArgSize(info, 1, "length", &length)) return env.Undefined();
  if (!info[2].IsBoolean()) {
    Napi::TypeError::New(env, "argument writable must be a boolean").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::vector<int> keepAlive;
  if (info.Length() > 3 && !info[3].IsUndefined()) {
    if (!info[3].IsArray()) {
      Napi::TypeError::New(env, "argument keepAlive must be an array of fds").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Array list = info[3].As<Napi::Array>();
    for (uint32_t i = 0; i < list.Length(); i++) {
      Napi::Value item = list[i];
      if (!item.IsNumber()) {
        Napi::TypeError::New(env, "keepAlive must hold fds").ThrowAsJavaScriptException();
        return env.Undefined();
      }
      keepAlive.push_back(item.As<Napi::Number>().Int32Value());
    }
  }
  if (length == 0) return Errno(env, EINVAL);
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
  void* address = mmap(nullptr, length, protection, MAP_SHARED, fd, 0);
  if (address == MAP_FAILED) {
    int error = errno;
    for (int fdHeld : held) close(fdHeld);
    return Errno(env, error);
  }
  auto region = std::make_shared<Region>(Region{address, static_cast<size_t>(length), false, std::move(held)});
  Napi::Object object = DataOf(env)->mappingConstructor.New({});
  Mapping::Unwrap(object)->Attach(env, region);
  return object;
}

void InitMapping(Napi::Env env, Napi::Object exports) {
  DataOf(env)->mappingConstructor = Napi::Persistent(Mapping::Define(env));
  exports.Set("mapShared", Napi::Function::New(env, MapShared));
}

}  // namespace dmabuf
