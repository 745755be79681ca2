// The one libuv poll user: waits for an fd (dma-buf or sync_file) to become
// readable or writable without a blocked thread.
//
// libuv's rules: one poll handle per fd, never close a polled fd, free the
// handle only in uv_close's callback. By default the poll is one-shot
// (stopped on the first event) because fence readiness is level-triggered: an
// event that is still true would otherwise fire on every loop turn. A socket
// whose reader drains it on every event asks to stay armed instead, which
// spares an epoll_ctl removal and re-add per message.
//
// A socket's reader may also ask the poll to make its recvmsg (receiveInto):
// each message then costs one call into JavaScript and none back, where a
// recvFds call from the callback costs a dozen napi calls (about 14 us under
// TCG, against 3 us for the syscall itself).
#include <sys/stat.h>
#include <sys/vfs.h>
#include <uv.h>

#include <climits>

#include "addon.h"

namespace dmabuf {

class Poller : public Napi::ObjectWrap<Poller> {
 public:
  static constexpr napi_type_tag kTypeTag = {0x3f0c9e7d52a14b86ULL, 0xb41d6e2a7c9f3058ULL};
  static constexpr const char* kName = "Poller";

  static Napi::Function Define(Napi::Env env) {
    Napi::Function constructor = DefineClass(env, "Poller", {
                                                                StaticValue("READABLE", Napi::Number::New(env, UV_READABLE)),
                                                                StaticValue("WRITABLE", Napi::Number::New(env, UV_WRITABLE)),
                                                                StaticValue("NOT_READ", Napi::Number::New(env, kNotRead)),
                                                                StaticValue("FD_STRIDE", Napi::Number::New(env, kFdStride)),
                                                            });
    DefineMethod<Poller, &Poller::Start>(env, constructor, "start");
    DefineMethod<Poller, &Poller::Stop>(env, constructor, "stop");
    DefineMethod<Poller, &Poller::Close>(env, constructor, "close");
    DefineMethod<Poller, &Poller::ReceiveInto>(env, constructor, "receiveInto");
    DefineMethod<Poller, &Poller::ReceiveNow>(env, constructor, "receiveNow");
    DefineMethod<Poller, &Poller::RefLoop>(env, constructor, "ref");
    DefineMethod<Poller, &Poller::UnrefLoop>(env, constructor, "unref");
    return constructor;
  }

  // new Poller(fd, callback(status, events)): status is 0 or -errno.
  explicit Poller(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Poller>(info) {
    int32_t fd;
    Napi::Function callback;
    if (!ArgInt32(info, 0, "fd", &fd) || !ArgFunction(info, 1, "callback", &callback)) return;
    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(info.Env(), &loop) != napi_ok || loop == nullptr) {
      Napi::Error::New(info.Env(), "no event loop").ThrowAsJavaScriptException();
      return;
    }
    auto* handle = new uv_poll_t;
    int status = uv_poll_init(loop, handle, fd);
    if (status != 0) {
      delete handle;
      // Node-shaped, as lib/errors.ts shapes errno errors: libuv's status is -errno.
      Napi::Error error = Napi::Error::New(info.Env(), std::string("uv_poll_init ") + uv_err_name(status) + " (" + uv_strerror(status) + ")");
      error.Set("code", Napi::String::New(info.Env(), uv_err_name(status)));
      error.Set("errno", Napi::Number::New(info.Env(), status));
      error.Set("syscall", Napi::String::New(info.Env(), "uv_poll_init"));
      error.ThrowAsJavaScriptException();
      return;
    }
    handle->data = this;
    handle_ = handle;
    fd_ = fd;
    callback_ = Napi::Persistent(callback);
    // A worker thread's teardown does not close handles it does not know;
    // a live poll would keep its loop from ending.
    napi_add_env_cleanup_hook(info.Env(), OnEnvTeardown, this);
    cleanupHookAdded_ = true;
    info.This().As<Napi::Object>().TypeTag(&kTypeTag);
  }

  ~Poller() override { CloseHandle(); }

 private:
  Napi::Value Start(const Napi::CallbackInfo& info) {
    uint32_t events;
    if (!ArgUint32(info, 0, "events", &events)) return info.Env().Undefined();
    if (handle_ == nullptr) return Errno(info.Env(), EBADF);
    oneShot_ = !(info.Length() > 1 && info[1].IsBoolean() && info[1].As<Napi::Boolean>().Value());
    int status = uv_poll_start(handle_, static_cast<int>(events & (UV_READABLE | UV_WRITABLE)), OnEvent);
    // An active poll must keep this object (and its callback) alive.
    if (status == 0 && !active_) {
      active_ = true;
      Ref();
    }
    return Napi::Number::New(info.Env(), status);
  }

  // receiveInto(buffer, io): from now on each readable event first reads
  // into buffer at io[0] (the reader keeps it at the end of its input); the
  // callback finds in io[1] the bytes read or -errno (kNotRead when none was
  // made), in io[2] and io[3] the count of fds and the message's flags, then
  // for each fd four elements: the fd, its file system magic (0 if fstatfs
  // failed), and its size's low and high 32 bits (fstat): a dma-buf
  // is known and wrapped without another call. Received fds belong to the
  // environment from then on (ownedFds), as an FdHandle's do.
  Napi::Value ReceiveInto(const Napi::CallbackInfo& info) {
    char* data;
    size_t length;
    int32_t* io;
    size_t ioLength;
    if (!ArgBuffer(info, 0, "buffer", &data, &length) || !ArgInt32Array(info, 1, "io", 4, &io, &ioLength)) return info.Env().Undefined();
    buffer_ = Napi::Persistent(info[0].As<Napi::Object>());
    ioArray_ = Napi::Persistent(info[1].As<Napi::Object>());
    receiving_ = handle_ != nullptr;
    io[1] = kNotRead;
    return info.Env().Undefined();
  }

  // The same read, now: for a reader that filled its buffer and wants the rest.
  Napi::Value ReceiveNow(const Napi::CallbackInfo& info) {
    if (ioArray_.IsEmpty()) return Errno(info.Env(), EINVAL);
    if (handle_ == nullptr) return Errno(info.Env(), EBADF);
    Arrays arrays;
    if (!ArraysNow(&arrays)) return Errno(info.Env(), ENOBUFS);
    Receive(arrays);
    return Napi::Number::New(info.Env(), arrays.io[1]);
  }

  // The arrays' memory, looked up again for every read: an ArrayBuffer
  // transferred away since receiveInto (detached) took its memory with it,
  // and one resized smaller gave some back, so pointers kept from the call
  // would write into memory that is no longer theirs.
  struct Arrays {
    char* data;
    size_t length;
    int32_t* io;
    size_t maxFds;
  };

  bool ArraysNow(Arrays* out) {
    napi_env env = Env();
    napi_value buffer, io;
    napi_typedarray_type type;
    void* start;
    size_t ioLength;
    if (napi_get_reference_value(env, ioArray_, &io) != napi_ok ||
        napi_get_typedarray_info(env, io, &type, &ioLength, &start, nullptr, nullptr) != napi_ok || ioLength < 4) {
      return false;
    }
    out->io = static_cast<int32_t*>(start);
    out->maxFds = (ioLength - 4) / kFdStride;
    if (napi_get_reference_value(env, buffer_, &buffer) != napi_ok ||
        napi_get_typedarray_info(env, buffer, &type, &out->length, &start, nullptr, nullptr) != napi_ok) {
      out->length = 0;
    }
    out->data = static_cast<char*>(start);
    return true;
  }

  void Receive(const Arrays& arrays) {
    int32_t* io = arrays.io;
    int32_t offset = io[0];
    if (offset < 0 || static_cast<size_t>(offset) >= arrays.length) {
      io[1] = -ENOBUFS;
      io[2] = 0;
      return;
    }
    long long received = ReceiveWithFds(fd_, arrays.data + offset, arrays.length - offset, io + 2, arrays.maxFds, kFdStride);
    io[1] = static_cast<int32_t>(received);
    if (received < 0) {
      io[2] = 0;
      return;
    }
    AddonData* data = DataOf(Env());
    for (int32_t i = 0; i < io[2]; i++) {
      int32_t* item = io + 4 + kFdStride * i;
      data->ownedFds.insert(item[0]);
      struct statfs fs;
      item[1] = fstatfs(item[0], &fs) == 0 ? static_cast<int32_t>(static_cast<uint32_t>(fs.f_type)) : 0;
      struct stat st;
      uint64_t size = fstat(item[0], &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
      item[2] = static_cast<int32_t>(static_cast<uint32_t>(size));
      item[3] = static_cast<int32_t>(static_cast<uint32_t>(size >> 32));
    }
  }

  Napi::Value Stop(const Napi::CallbackInfo& info) {
    StopPolling();
    return info.Env().Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    CloseHandle();
    return info.Env().Undefined();
  }

  Napi::Value RefLoop(const Napi::CallbackInfo& info) {
    if (handle_ != nullptr) uv_ref(reinterpret_cast<uv_handle_t*>(handle_));
    return info.Env().Undefined();
  }

  Napi::Value UnrefLoop(const Napi::CallbackInfo& info) {
    if (handle_ != nullptr) uv_unref(reinterpret_cast<uv_handle_t*>(handle_));
    return info.Env().Undefined();
  }

  void StopPolling() {
    if (handle_ != nullptr) uv_poll_stop(handle_);
    if (active_) {
      active_ = false;
      Unref();
    }
  }

  // uv_close removes the fd from epoll at once, so the caller may close the
  // fd right after; the handle's memory is freed later, in the callback.
  void CloseHandle() {
    if (cleanupHookAdded_) {
      cleanupHookAdded_ = false;
      napi_remove_env_cleanup_hook(Env(), OnEnvTeardown, this);
    }
    if (handle_ == nullptr) return;
    StopPolling();
    handle_->data = nullptr;
    receiving_ = false;
    uv_close(reinterpret_cast<uv_handle_t*>(handle_), [](uv_handle_t* handle) { delete reinterpret_cast<uv_poll_t*>(handle); });
    handle_ = nullptr;
  }

  static void OnEnvTeardown(void* data) {
    auto* self = static_cast<Poller*>(data);
    self->cleanupHookAdded_ = false;
    self->CloseHandle();
  }

  static void OnEvent(uv_poll_t* handle, int status, int events) {
    auto* self = static_cast<Poller*>(handle->data);
    if (self == nullptr) return;
    Napi::Env env = self->Env();
    Napi::HandleScope scope(env);
    // Held in this scope: once StopPolling drops the reference, the callback's
    // JavaScript could otherwise let a collection free us mid-call.
    Napi::Object keepAlive = self->Value();
    (void)keepAlive;
    if (self->oneShot_ || status != 0) self->StopPolling();
    Arrays arrays;
    if (self->receiving_ && self->ArraysNow(&arrays)) {
      if (status == 0 && (events & UV_READABLE)) {
        self->Receive(arrays);
      } else {
        arrays.io[1] = kNotRead;
      }
    }
    // Status and events are handed on as they are; the callback may close us.
    Napi::FunctionReference& callback = self->callback_;
    if (!callback.IsEmpty()) {
      callback.MakeCallback(env.Global(), {Napi::Number::New(env, status), Napi::Number::New(env, events)});
    }
  }

  static constexpr int32_t kNotRead = INT32_MIN;
  static constexpr size_t kFdStride = 4;

  uv_poll_t* handle_ = nullptr;
  int fd_ = -1;
  Napi::ObjectReference buffer_;
  Napi::ObjectReference ioArray_;
  bool receiving_ = false;
  bool active_ = false;
  bool oneShot_ = true;
  bool cleanupHookAdded_ = false;
  Napi::FunctionReference callback_;
};

void InitPoller(Napi::Env env, Napi::Object exports) {
  exports.Set("Poller", Poller::Define(env));
}

}  // namespace dmabuf
