// The test module's ioctls (kernel-module/uapi/dmabuf_test.h). TypeScript
// packs the argument structs; this only checks that a command is the
// module's and that its argument fits the buffer given, so that no command
// number, even a random one from a fuzzer, lets the kernel write past it.
#include <sys/ioctl.h>

#include "../kernel-module/uapi/dmabuf_test.h"
#include "addon.h"

namespace dmabuf {

static Napi::Value TestIoctl(const Napi::CallbackInfo& info) {
  int32_t fd;
  uint32_t command;
  char* data;
  size_t length;
  if (!ArgInt32(info, 0, "fd", &fd) || !ArgUint32(info, 1, "command", &command) || !ArgBuffer(info, 2, "argument", &data, &length)) {
    return info.Env().Undefined();
  }
  if (_IOC_TYPE(command) != DBT_IOC_MAGIC) {
    ThrowInvalidValue(info.Env(), "command must be a dmabuf_test ioctl (type 0xDB)");
    return info.Env().Undefined();
  }
  if (_IOC_SIZE(command) > length) {
    ThrowInvalidValue(info.Env(), "argument is smaller than the command's size");
    return info.Env().Undefined();
  }
  return Result(info.Env(), Restarting([&] { return ioctl(fd, command, data); }));
}

void InitDmabufTest(Napi::Env env, Napi::Object exports) {
  exports.Set("dmabufTestIoctl", Napi::Function::New(env, TestIoctl));
  Napi::Object commands = Napi::Object::New(env);
  commands.Set("EXPORT", Napi::Number::New(env, DBT_IOCTL_EXPORT));
  commands.Set("MOVE", Napi::Number::New(env, DBT_IOCTL_MOVE));
  commands.Set("EXPORTER_INFO", Napi::Number::New(env, DBT_IOCTL_EXPORTER_INFO));
  commands.Set("ATTACH", Napi::Number::New(env, DBT_IOCTL_ATTACH));
  commands.Set("DETACH", Napi::Number::New(env, DBT_IOCTL_DETACH));
  commands.Set("MAP", Napi::Number::New(env, DBT_IOCTL_MAP));
  commands.Set("UNMAP", Napi::Number::New(env, DBT_IOCTL_UNMAP));
  commands.Set("PIN", Napi::Number::New(env, DBT_IOCTL_PIN));
  commands.Set("UNPIN", Napi::Number::New(env, DBT_IOCTL_UNPIN));
  commands.Set("ATTACHMENT_INFO", Napi::Number::New(env, DBT_IOCTL_ATTACHMENT_INFO));
  commands.Set("FENCE_CREATE", Napi::Number::New(env, DBT_IOCTL_FENCE_CREATE));
  commands.Set("FENCE_SIGNAL", Napi::Number::New(env, DBT_IOCTL_FENCE_SIGNAL));
  exports.Set("dmabufTestCommands", commands);

  // The header's other values, under its own names, so that TypeScript
  // retypes none of them (test/host/uapi-values.test.ts holds this table to
  // the header).
  Napi::Object values = Napi::Object::New(env);
#define DBT_VALUE(name) values.Set(#name, Napi::Number::New(env, name))
  DBT_VALUE(DBT_MAX_PAGES);
  DBT_VALUE(DBT_EXPORT_DYNAMIC);
  DBT_VALUE(DBT_MOVE_FENCED);
  DBT_VALUE(DBT_MOVE_REVOKE);
  DBT_VALUE(DBT_ATTACH_DYNAMIC);
  DBT_VALUE(DBT_ATTACH_REVOCABLE);
  DBT_VALUE(DBT_DIR_BIDIRECTIONAL);
  DBT_VALUE(DBT_DIR_TO_DEVICE);
  DBT_VALUE(DBT_DIR_FROM_DEVICE);
  DBT_VALUE(DBT_STATE_MAPPED);
  DBT_VALUE(DBT_STATE_INVALIDATED);
  DBT_VALUE(DBT_STATE_CORE_CACHED);
  DBT_VALUE(DBT_STATE_REVOKED);
  DBT_VALUE(DBT_STATE_CORE_REVOCABLE);
  DBT_VALUE(DBT_STATE_EXPORTER_DYNAMIC);
  DBT_VALUE(DBT_USAGE_KERNEL);
  DBT_VALUE(DBT_USAGE_WRITE);
  DBT_VALUE(DBT_USAGE_READ);
  DBT_VALUE(DBT_USAGE_BOOKKEEP);
  DBT_VALUE(DBT_FENCE_ADD);
  DBT_VALUE(DBT_FENCE_SYNC_FILE);
  DBT_VALUE(DBT_EVENT_MOVE_NOTIFY);
  DBT_VALUE(DBT_EVENT_OVERFLOW);
  DBT_VALUE(DBT_IOC_MAGIC);
#undef DBT_VALUE
  exports.Set("dmabufTestValues", values);

  // sizeof each struct as this compiler lays it out: the layouts TypeScript
  // packs by hand must come to the same.
  Napi::Object sizes = Napi::Object::New(env);
#define DBT_SIZE(tag) sizes.Set(#tag, Napi::Number::New(env, sizeof(struct tag)))
  DBT_SIZE(dbt_export);
  DBT_SIZE(dbt_move);
  DBT_SIZE(dbt_exporter_info);
  DBT_SIZE(dbt_attach);
  DBT_SIZE(dbt_attachment_id);
  DBT_SIZE(dbt_map);
  DBT_SIZE(dbt_attachment_info);
  DBT_SIZE(dbt_fence_create);
  DBT_SIZE(dbt_fence_signal);
  DBT_SIZE(dbt_event);
#undef DBT_SIZE
  exports.Set("dmabufTestSizes", sizes);
}

}  // namespace dmabuf
