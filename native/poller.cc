// The one libuv poll user: waits for an fd (dma-buf or sync_file) to become
// readable or writable without a blocked thread.
//
// libuv's rules: one poll handle per fd, never close a polled fd, free the
// handle only in uv_close's callback. By default the poll is one-shot
// (stopped on the first event) because fence readiness is level-triggered: an
// event that is still true would otherwise fire on every loop turn. A socket
// whose reader drains it on every event asks to stay armed instead, which
// spares an epoll_ctl removal and re-add per message.
#include <uv.h>

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
                                                            });
    DefineMethod<Poller, &Poller::Start>(env, constructor, "start");
    DefineMethod<Poller, &Poller::Stop>(env, constructor, "stop");
    DefineMethod<Poller, &Poller::Close>(env, constructor, "close");
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
    // Status and events are handed on as they are; the callback may close us.
    Napi::FunctionReference& callback = self->callback_;
    if (!callback.IsEmpty()) {
      callback.MakeCallback(env.Global(), {Napi::Number::New(env, status), Napi::Number::New(env, events)});
    }
  }

  uv_poll_t* handle_ = nullptr;
  bool active_ = false;
  bool oneShot_ = true;
  bool cleanupHookAdded_ = false;
  Napi::FunctionReference callback_;
};

void InitPoller(Napi::Env env, Napi::Object exports) {
  exports.Set("Poller", Poller::Define(env));
}

}  // namespace dmabuf
