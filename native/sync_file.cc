// sync_file ioctls (merge, info, deadline) and the sw_sync debugfs timeline
// that makes test fences userspace can signal.
#include <linux/sync_file.h>
#include <sys/ioctl.h>

#include <cstring>
#include <vector>

#include "addon.h"

// sw_sync's interface is not in the uapi headers: it is a debugfs test device.
struct sw_sync_create_fence_data {
  __u32 value;
  char name[32];
  __s32 fence;
};
#define SW_SYNC_IOC_MAGIC 'W'
#define SW_SYNC_IOC_CREATE_FENCE _IOWR(SW_SYNC_IOC_MAGIC, 0, struct sw_sync_create_fence_data)
#define SW_SYNC_IOC_INC _IOW(SW_SYNC_IOC_MAGIC, 1, __u32)
// Linux 6.12+ (sw_sync.c): reads back the earliest deadline set on a sw_sync
// fence, so a test can see what SYNC_IOC_SET_DEADLINE handed the driver.
struct sw_sync_get_deadline {
  __u64 deadline_ns;
  __u32 pad;
  __s32 fence_fd;
};
#define SW_SYNC_GET_DEADLINE _IOWR(SW_SYNC_IOC_MAGIC, 2, struct sw_sync_get_deadline)

// Linux 6.12 added SYNC_IOC_SET_DEADLINE to the uapi header; headers older
// than that lack it. Layout and number as in 6.12's include/uapi/linux/sync_file.h.
#ifndef SYNC_IOC_SET_DEADLINE
struct sync_set_deadline {
  __u64 deadline_ns;
  __u64 pad;
};
#define SYNC_IOC_SET_DEADLINE _IOW(SYNC_IOC_MAGIC, 5, struct sync_set_deadline)
#endif
static_assert(sizeof(struct sync_set_deadline) == 16, "uapi layout of struct sync_set_deadline");
static_assert(sizeof(struct sw_sync_get_deadline) == 16, "layout of sw_sync's struct sw_sync_get_deadline");
// One name limit for merged sync_files and sw_sync fences (SYNC_NAME_MAX_BYTES).
static_assert(sizeof(sw_sync_create_fence_data::name) == sizeof(sync_merge_data::name), "sw_sync and sync_file names hold the same");

namespace dmabuf {

static bool ArgName(const Napi::CallbackInfo& info, size_t index, char (&out)[32]) {
  std::string name;
  if (!ArgString(info, index, "name", &name)) return false;
  if (name.size() >= sizeof(out)) {
    return ThrowInvalidValue(info.Env(), "name must be at most 31 bytes of UTF-8");
  }
  memset(out, 0, sizeof(out));
  memcpy(out, name.data(), name.size());
  return true;
}

static Napi::Value Merge(const Napi::CallbackInfo& info) {
  struct sync_merge_data data = {};
  int32_t first, second;
  if (!ArgName(info, 0, data.name) || !ArgInt32(info, 1, "first", &first) || !ArgInt32(info, 2, "second", &second)) {
    return info.Env().Undefined();
  }
  data.fd2 = second;
  data.fence = -1;
  if (ioctl(first, SYNC_IOC_MERGE, &data) < 0) return Errno(info.Env(), errno);
  return Napi::Number::New(info.Env(), data.fence);
}

// The kernel fills the fence array only when asked with the right count: ask
// for the count first, then again with room for that many.
static Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  if (!ArgInt32(info, 0, "fd", &fd)) return env.Undefined();
  struct sync_file_info header = {};
  if (ioctl(fd, SYNC_IOC_FILE_INFO, &header) < 0) return Errno(env, errno);
  std::vector<struct sync_fence_info> fences(header.num_fences);
  struct sync_file_info full = {};
  full.num_fences = header.num_fences;
  full.sync_fence_info = reinterpret_cast<__u64>(fences.data());
  if (header.num_fences > 0 && ioctl(fd, SYNC_IOC_FILE_INFO, &full) < 0) return Errno(env, errno);
  if (header.num_fences == 0) full = header;

  Napi::Object result = Napi::Object::New(env);
  result.Set("name", Napi::String::New(env, full.name, strnlen(full.name, sizeof(full.name))));
  result.Set("status", Napi::Number::New(env, full.status));
  Napi::Array list = Napi::Array::New(env, full.num_fences);
  for (uint32_t i = 0; i < full.num_fences; i++) {
    const struct sync_fence_info& fence = fences[i];
    Napi::Object item = Napi::Object::New(env);
    item.Set("timeline", Napi::String::New(env, fence.obj_name, strnlen(fence.obj_name, sizeof(fence.obj_name))));
    item.Set("driver", Napi::String::New(env, fence.driver_name, strnlen(fence.driver_name, sizeof(fence.driver_name))));
    item.Set("status", Napi::Number::New(env, fence.status));
    item.Set("flags", Napi::Number::New(env, fence.flags));
    item.Set("timestampNs", Napi::BigInt::New(env, static_cast<uint64_t>(fence.timestamp_ns)));
    list.Set(i, item);
  }
  result.Set("fences", list);
  return result;
}

// The status alone, in one ioctl (with num_fences 0 the kernel fills only the
// header). A fence's status can itself be a negative errno, so it goes into
// the caller's Int32Array and the return value stays 0 or -errno.
static Napi::Value Status(const Napi::CallbackInfo& info) {
  int32_t fd;
  int32_t* status;
  size_t length;
  if (!ArgInt32(info, 0, "fd", &fd) || !ArgInt32Array(info, 1, "status", 1, &status, &length)) return info.Env().Undefined();
  struct sync_file_info header = {};
  if (ioctl(fd, SYNC_IOC_FILE_INFO, &header) < 0) return Errno(info.Env(), errno);
  status[0] = header.status;
  return Napi::Number::New(info.Env(), 0);
}

// The kernel takes the deadline as a signed ktime: anything above INT64_MAX
// would reach it as a time in the past, so it is refused here as out of range.
static bool ArgDeadline(const Napi::CallbackInfo& info, size_t index, uint64_t* out) {
  if (info.Length() <= index || !info[index].IsBigInt()) {
    return ThrowTypeError(info.Env(), "argument deadlineNs must be a bigint");
  }
  bool lossless = false;
  uint64_t value = info[index].As<Napi::BigInt>().Uint64Value(&lossless);
  if (!lossless || value > static_cast<uint64_t>(INT64_MAX)) {
    return ThrowRangeError(info.Env(), "argument deadlineNs must be a bigint from 0n to 2n ** 63n - 1n");
  }
  *out = value;
  return true;
}

// The deadline is a hint: the kernel passes it to each fence's driver (through
// a fence array, to every fence) and ignores fences already signalled.
static Napi::Value SetDeadline(const Napi::CallbackInfo& info) {
  int32_t fd;
  uint64_t deadline = 0;
  if (!ArgInt32(info, 0, "fd", &fd) || !ArgDeadline(info, 1, &deadline)) return info.Env().Undefined();
  struct sync_set_deadline data = {};
  data.deadline_ns = deadline;
  return Result(info.Env(), ioctl(fd, SYNC_IOC_SET_DEADLINE, &data));
}

// A bigint (CLOCK_MONOTONIC ns), or -errno: ENOENT when no deadline was set.
static Napi::Value SwSyncGetDeadline(const Napi::CallbackInfo& info) {
  int32_t timeline, fence;
  if (!ArgInt32(info, 0, "timeline", &timeline) || !ArgInt32(info, 1, "fence", &fence)) return info.Env().Undefined();
  struct sw_sync_get_deadline data = {};
  data.fence_fd = fence;
  if (ioctl(timeline, SW_SYNC_GET_DEADLINE, &data) < 0) return Errno(info.Env(), errno);
  return Napi::BigInt::New(info.Env(), static_cast<uint64_t>(data.deadline_ns));
}

static Napi::Value SwSyncCreateFence(const Napi::CallbackInfo& info) {
  int32_t timeline;
  uint32_t value;
  struct sw_sync_create_fence_data data = {};
  if (!ArgInt32(info, 0, "timeline", &timeline) || !ArgUint32(info, 1, "value", &value) || !ArgName(info, 2, data.name)) {
    return info.Env().Undefined();
  }
  data.value = value;
  data.fence = -1;
  if (ioctl(timeline, SW_SYNC_IOC_CREATE_FENCE, &data) < 0) return Errno(info.Env(), errno);
  return Napi::Number::New(info.Env(), data.fence);
}

static Napi::Value SwSyncIncrement(const Napi::CallbackInfo& info) {
  int32_t timeline;
  uint32_t count;
  if (!ArgInt32(info, 0, "timeline", &timeline) || !ArgUint32(info, 1, "count", &count)) return info.Env().Undefined();
  __u32 increment = count;
  return Result(info.Env(), ioctl(timeline, SW_SYNC_IOC_INC, &increment));
}

void InitSyncFile(Napi::Env env, Napi::Object exports) {
  exports.Set("syncFileMerge", Napi::Function::New(env, Merge));
  exports.Set("syncFileInfo", Napi::Function::New(env, Info));
  exports.Set("syncFileStatus", Napi::Function::New(env, Status));
  exports.Set("syncFileSetDeadline", Napi::Function::New(env, SetDeadline));
  exports.Set("swSyncCreateFence", Napi::Function::New(env, SwSyncCreateFence));
  exports.Set("swSyncIncrement", Napi::Function::New(env, SwSyncIncrement));
  exports.Set("swSyncGetDeadline", Napi::Function::New(env, SwSyncGetDeadline));
  // The uapi has no macro for it: struct sync_merge_data's name, less its NUL.
  Napi::Object constants = Constants(exports);
  constants.Set("SYNC_NAME_MAX_BYTES", Napi::Number::New(env, sizeof(sync_merge_data::name) - 1));
}

}  // namespace dmabuf
