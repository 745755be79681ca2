// DRM devices (/dev/dri/card*, renderD*): driver version, caps, dumb
// buffers, GEM handles and PRIME, vgem's fences, and the KMS ioctls a
// framebuffer needs to reach a CRTC. Exported as exports.drm; the policy
// (whose handle is it, how many objects share it) is lib/drm.ts's.
//
// The uapi headers are libdrm-dev's (/usr/include/libdrm): binding.gyp
// defines DMABUF_HAVE_DRM_HEADERS when they are there. Without them every
// function exists and returns -ENOTSUP, and drm.available is false.
#include "addon.h"

#ifdef DMABUF_HAVE_DRM_HEADERS
#include <drm.h>
#include <drm_fourcc.h>
#include <drm_mode.h>
#include <fcntl.h>  // drm.h defines DRM_CLOEXEC and DRM_RDWR as O_CLOEXEC and O_RDWR
#include <sys/ioctl.h>

#include <algorithm>
#include <cstring>
#include <vector>

// vgem's uapi is not shipped by libdrm-dev: include/uapi/drm/vgem_drm.h,
// byte-identical in Linux 6.1, 6.12 and 7.2. test/host/drm.test.ts holds these
// to a built kernel's exported header.
struct drm_vgem_fence_attach {
  __u32 handle;
  __u32 flags;
  __u32 out_fence;
  __u32 pad;
};
struct drm_vgem_fence_signal {
  __u32 fence;
  __u32 flags;
};
#define VGEM_FENCE_WRITE 0x1
#define DRM_IOCTL_VGEM_FENCE_ATTACH DRM_IOWR(DRM_COMMAND_BASE + 0x1, struct drm_vgem_fence_attach)
#define DRM_IOCTL_VGEM_FENCE_SIGNAL DRM_IOW(DRM_COMMAND_BASE + 0x2, struct drm_vgem_fence_signal)
#endif

namespace dmabuf {

#ifdef DMABUF_HAVE_DRM_HEADERS

// DRM's ioctls restart themselves on a signal only when asked: drmIoctl in
// libdrm restarts on EINTR and EAGAIN, and so does this.
static long long DrmIoctl(int fd, unsigned long request, void* argument) {
  return RestartingSync([&] { return ioctl(fd, request, argument); });
}

// A list of unsigned 32-bit ids (connectors, handles, pitches).
static bool ArgU32List(const Napi::CallbackInfo& info, size_t index, const char* name, size_t maxLength, std::vector<uint32_t>* out) {
  Napi::Env env = info.Env();
  uint32_t length;
  if (napi_get_array_length(env, info[index], &length) != napi_ok) return ThrowTypeError(env, std::string("argument ") + name + " must be an array of unsigned 32-bit integers");
  if (length > maxLength) return ThrowInvalidValue(env, std::string("argument ") + name + " must hold at most " + std::to_string(maxLength) + " numbers");
  Napi::Array list = info[index].As<Napi::Array>();
  out->clear();
  for (uint32_t i = 0; i < length; i++) {
    Napi::Value item = list.Get(i);
    if (env.IsExceptionPending()) return false;
    double value;
    if (!ArgListNumber(env, item, std::string(name) + "[" + std::to_string(i) + "]", 0, UINT32_MAX, "an unsigned 32-bit integer", &value)) return false;
    out->push_back(static_cast<uint32_t>(value));
  }
  return true;
}

static Napi::Array U32List(Napi::Env env, const std::vector<uint32_t>& values) {
  Napi::Array list = Napi::Array::New(env, values.size());
  for (size_t i = 0; i < values.size(); i++) list.Set(static_cast<uint32_t>(i), Napi::Number::New(env, values[i]));
  return list;
}

static Napi::Value Version(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  if (!ArgInt32(info, 0, "fd", &fd)) return env.Undefined();
  struct drm_version lengths = {};
  if (DrmIoctl(fd, DRM_IOCTL_VERSION, &lengths) < 0) return Errno(env, errno);
  std::vector<char> name(lengths.name_len + 1), date(lengths.date_len + 1), desc(lengths.desc_len + 1);
  struct drm_version version = {};
  version.name_len = lengths.name_len;
  version.name = name.data();
  version.date_len = lengths.date_len;
  version.date = date.data();
  version.desc_len = lengths.desc_len;
  version.desc = desc.data();
  if (DrmIoctl(fd, DRM_IOCTL_VERSION, &version) < 0) return Errno(env, errno);
  Napi::Object result = Napi::Object::New(env);
  result.Set("name", Napi::String::New(env, name.data(), strnlen(name.data(), version.name_len)));
  result.Set("major", Napi::Number::New(env, version.version_major));
  result.Set("minor", Napi::Number::New(env, version.version_minor));
  result.Set("patchlevel", Napi::Number::New(env, version.version_patchlevel));
  result.Set("date", Napi::String::New(env, date.data(), strnlen(date.data(), version.date_len)));
  result.Set("description", Napi::String::New(env, desc.data(), strnlen(desc.data(), version.desc_len)));
  return result;
}

// A cap's value is a __u64; every cap the kernel defines fits a double.
static Napi::Value GetCap(const Napi::CallbackInfo& info) {
  int32_t fd;
  uint32_t capability;
  if (!ArgInt32(info, 0, "fd", &fd) || !ArgUint32(info, 1, "capability", &capability)) return info.Env().Undefined();
  struct drm_get_cap cap = {};
  cap.capability = capability;
  if (DrmIoctl(fd, DRM_IOCTL_GET_CAP, &cap) < 0) return Errno(info.Env(), errno);
  return Napi::Number::New(info.Env(), static_cast<double>(cap.value));
}

static Napi::Value SetClientCap(const Napi::CallbackInfo& info) {
  int32_t fd;
  uint32_t capability, value;
  if (!ArgInt32(info, 0, "fd", &fd) || !ArgUint32(info, 1, "capability", &capability) || !ArgUint32(info, 2, "value", &value)) return info.Env().Undefined();
  struct drm_set_client_cap cap = {};
  cap.capability = capability;
  cap.value = value;
  return Result(info.Env(), DrmIoctl(fd, DRM_IOCTL_SET_CLIENT_CAP, &cap));
}

static Napi::Value CreateDumb(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  uint32_t width, height, bpp, flags;
  if (!ArgInt32(info, 0, "fd", &fd) || !ArgUint32(info, 1, "width", &width) || !ArgUint32(info, 2, "height", &height) ||
      !ArgUint32(info, 3, "bpp", &bpp) || !ArgUint32(info, 4, "flags", &flags)) {
    return env.Undefined();
  }
  struct drm_mode_create_dumb dumb = {};
  dumb.width = width;
  dumb.height = height;
  dumb.bpp = bpp;
  dumb.flags = flags;
  if (DrmIoctl(fd, DRM_IOCTL_MODE_CREATE_DUMB, &dumb) < 0) return Errno(env, errno);
  Napi::Object result = Napi::Object::New(env);
  result.Set("handle", Napi::Number::New(env, dumb.handle));
  result.Set("pitch", Napi::Number::New(env, dumb.pitch));
  result.Set("size", Napi::Number::New(env, static_cast<double>(dumb.size)));
  return result;
}

// The fake offset to mmap the device fd at; the kernel keeps it below 2^53.
static Napi::Value MapDumb(const Napi::CallbackInfo& info) {
  int32_t fd;
  uint32_t handle;
  if (!ArgInt32(info, 0, "fd", &fd) || !ArgUint32(info, 1, "handle", &handle)) return info.Env().Undefined();
  struct drm_mode_map_dumb map = {};
  map.handle = handle;
  if (DrmIoctl(fd, DRM_IOCTL_MODE_MAP_DUMB, &map) < 0) return Errno(info.Env(), errno);
  return Napi::Number::New(info.Env(), static_cast<double>(map.offset));
}

static Napi::Value DestroyDumb(const Napi::CallbackInfo& info) {
  int32_t fd;
  uint32_t handle;
  if (!ArgInt32(info, 0, "fd", &fd) || !ArgUint32(info, 1, "handle", &handle)) return info.Env().Undefined();
  struct drm_mode_destroy_dumb destroy = {};
  destroy.handle = handle;
  return Result(info.Env(), DrmIoctl(fd, DRM_IOCTL_MODE_DESTROY_DUMB, &destroy));
}

static Napi::Value GemClose(const Napi::CallbackInfo& info) {
  int32_t fd;
  uint32_t handle;
  if (!ArgInt32(info, 0, "fd", &fd) || !ArgUint32(info, 1, "handle", &handle)) return info.Env().Undefined();
  struct drm_gem_close close = {};
  close.handle = handle;
  return Result(info.Env(), DrmIoctl(fd, DRM_IOCTL_GEM_CLOSE, &close));
}

static Napi::Value PrimeHandleToFd(const Napi::CallbackInfo& info) {
  int32_t fd;
  uint32_t handle, flags;
  if (!ArgInt32(info, 0, "fd", &fd) || !ArgUint32(info, 1, "handle", &handle) || !ArgUint32(info, 2, "flags", &flags)) return info.Env().Undefined();
  struct drm_prime_handle prime = {};
  prime.handle = handle;
  prime.flags = flags;
  prime.fd = -1;
  if (DrmIoctl(fd, DRM_IOCTL_PRIME_HANDLE_TO_FD, &prime) < 0) return Errno(info.Env(), errno);
  return Napi::Number::New(info.Env(), prime.fd);
}

static Napi::Value PrimeFdToHandle(const Napi::CallbackInfo& info) {
  int32_t fd, dmaBuf;
  if (!ArgInt32(info, 0, "fd", &fd) || !ArgInt32(info, 1, "dmaBuf", &dmaBuf)) return info.Env().Undefined();
  struct drm_prime_handle prime = {};
  prime.fd = dmaBuf;
  if (DrmIoctl(fd, DRM_IOCTL_PRIME_FD_TO_HANDLE, &prime) < 0) return Errno(info.Env(), errno);
  return Napi::Number::New(info.Env(), prime.handle);
}

static Napi::Value VgemFenceAttach(const Napi::CallbackInfo& info) {
  int32_t fd;
  uint32_t handle, flags;
  if (!ArgInt32(info, 0, "fd", &fd) || !ArgUint32(info, 1, "handle", &handle) || !ArgUint32(info, 2, "flags", &flags)) return info.Env().Undefined();
  struct drm_vgem_fence_attach attach = {};
  attach.handle = handle;
  attach.flags = flags;
  if (DrmIoctl(fd, DRM_IOCTL_VGEM_FENCE_ATTACH, &attach) < 0) return Errno(info.Env(), errno);
  return Napi::Number::New(info.Env(), attach.out_fence);
}

static Napi::Value VgemFenceSignal(const Napi::CallbackInfo& info) {
  int32_t fd;
  uint32_t fence, flags;
  if (!ArgInt32(info, 0, "fd", &fd) || !ArgUint32(info, 1, "fence", &fence) || !ArgUint32(info, 2, "flags", &flags)) return info.Env().Undefined();
  struct drm_vgem_fence_signal signal = {};
  signal.fence = fence;
  signal.flags = flags;
  return Result(info.Env(), DrmIoctl(fd, DRM_IOCTL_VGEM_FENCE_SIGNAL, &signal));
}

// The KMS getters fill arrays only as long as the counts the caller passes:
// ask for the counts, make room, ask again, and start over if a hotplug
// grew a count in between (as libdrm's drmModeGetResources does).
constexpr int kCountRetries = 8;

static Napi::Value GetResources(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  if (!ArgInt32(info, 0, "fd", &fd)) return env.Undefined();
  std::vector<uint32_t> fbs, crtcs, connectors, encoders;
  struct drm_mode_card_res res = {};
  for (int attempt = 0;; attempt++) {
    struct drm_mode_card_res counts = {};
    if (DrmIoctl(fd, DRM_IOCTL_MODE_GETRESOURCES, &counts) < 0) return Errno(env, errno);
    fbs.resize(counts.count_fbs);
    crtcs.resize(counts.count_crtcs);
    connectors.resize(counts.count_connectors);
    encoders.resize(counts.count_encoders);
    res = counts;
    res.fb_id_ptr = reinterpret_cast<__u64>(fbs.data());
    res.crtc_id_ptr = reinterpret_cast<__u64>(crtcs.data());
    res.connector_id_ptr = reinterpret_cast<__u64>(connectors.data());
    res.encoder_id_ptr = reinterpret_cast<__u64>(encoders.data());
    if (DrmIoctl(fd, DRM_IOCTL_MODE_GETRESOURCES, &res) < 0) return Errno(env, errno);
    bool grew = res.count_fbs > fbs.size() || res.count_crtcs > crtcs.size() || res.count_connectors > connectors.size() || res.count_encoders > encoders.size();
    if (!grew) break;
    if (attempt == kCountRetries) return Errno(env, EAGAIN);
  }
  fbs.resize(res.count_fbs);
  crtcs.resize(res.count_crtcs);
  connectors.resize(res.count_connectors);
  encoders.resize(res.count_encoders);
  Napi::Object result = Napi::Object::New(env);
  result.Set("fbs", U32List(env, fbs));
  result.Set("crtcs", U32List(env, crtcs));
  result.Set("connectors", U32List(env, connectors));
  result.Set("encoders", U32List(env, encoders));
  result.Set("minWidth", Napi::Number::New(env, res.min_width));
  result.Set("maxWidth", Napi::Number::New(env, res.max_width));
  result.Set("minHeight", Napi::Number::New(env, res.min_height));
  result.Set("maxHeight", Napi::Number::New(env, res.max_height));
  return result;
}

static Napi::Object ModeObject(Napi::Env env, const struct drm_mode_modeinfo& mode) {
  Napi::Object result = Napi::Object::New(env);
  result.Set("clock", Napi::Number::New(env, mode.clock));
  result.Set("hdisplay", Napi::Number::New(env, mode.hdisplay));
  result.Set("hsyncStart", Napi::Number::New(env, mode.hsync_start));
  result.Set("hsyncEnd", Napi::Number::New(env, mode.hsync_end));
  result.Set("htotal", Napi::Number::New(env, mode.htotal));
  result.Set("hskew", Napi::Number::New(env, mode.hskew));
  result.Set("vdisplay", Napi::Number::New(env, mode.vdisplay));
  result.Set("vsyncStart", Napi::Number::New(env, mode.vsync_start));
  result.Set("vsyncEnd", Napi::Number::New(env, mode.vsync_end));
  result.Set("vtotal", Napi::Number::New(env, mode.vtotal));
  result.Set("vscan", Napi::Number::New(env, mode.vscan));
  result.Set("vrefresh", Napi::Number::New(env, mode.vrefresh));
  result.Set("flags", Napi::Number::New(env, mode.flags));
  result.Set("type", Napi::Number::New(env, mode.type));
  result.Set("name", Napi::String::New(env, mode.name, strnlen(mode.name, sizeof(mode.name))));
  return result;
}

// A mode as ModeObject made it. Every field is checked: the kernel takes the
// struct as it is, and a field a getter left out would otherwise be 0.
static bool ReadMode(Napi::Env env, Napi::Value value, struct drm_mode_modeinfo* mode) {
  if (!value.IsObject()) return ThrowTypeError(env, "argument mode must be an object");
  Napi::Object object = value.As<Napi::Object>();
  struct Field {
    const char* name;
    double max;
    double* out;
  };
  double clock, hdisplay, hsyncStart, hsyncEnd, htotal, hskew, vdisplay, vsyncStart, vsyncEnd, vtotal, vscan, vrefresh, flags, type;
  const Field fields[] = {
      {"clock", UINT32_MAX, &clock},
      {"hdisplay", UINT16_MAX, &hdisplay},
      {"hsyncStart", UINT16_MAX, &hsyncStart},
      {"hsyncEnd", UINT16_MAX, &hsyncEnd},
      {"htotal", UINT16_MAX, &htotal},
      {"hskew", UINT16_MAX, &hskew},
      {"vdisplay", UINT16_MAX, &vdisplay},
      {"vsyncStart", UINT16_MAX, &vsyncStart},
      {"vsyncEnd", UINT16_MAX, &vsyncEnd},
      {"vtotal", UINT16_MAX, &vtotal},
      {"vscan", UINT16_MAX, &vscan},
      {"vrefresh", UINT32_MAX, &vrefresh},
      {"flags", UINT32_MAX, &flags},
      {"type", UINT32_MAX, &type},
  };
  for (const Field& field : fields) {
    Napi::Value item = object.Get(field.name);
    if (env.IsExceptionPending()) return false;
    if (!ArgListNumber(env, item, std::string("mode.") + field.name, 0, field.max, "an unsigned integer", field.out)) return false;
  }
  Napi::Value name = object.Get("name");
  if (env.IsExceptionPending()) return false;
  if (!name.IsString()) return ThrowTypeError(env, "argument mode.name must be a string");
  std::string text = name.As<Napi::String>().Utf8Value();
  if (text.size() >= DRM_DISPLAY_MODE_LEN) return ThrowInvalidValue(env, "mode.name must be at most 31 bytes of UTF-8");
  *mode = {};
  mode->clock = static_cast<__u32>(clock);
  mode->hdisplay = static_cast<__u16>(hdisplay);
  mode->hsync_start = static_cast<__u16>(hsyncStart);
  mode->hsync_end = static_cast<__u16>(hsyncEnd);
  mode->htotal = static_cast<__u16>(htotal);
  mode->hskew = static_cast<__u16>(hskew);
  mode->vdisplay = static_cast<__u16>(vdisplay);
  mode->vsync_start = static_cast<__u16>(vsyncStart);
  mode->vsync_end = static_cast<__u16>(vsyncEnd);
  mode->vtotal = static_cast<__u16>(vtotal);
  mode->vscan = static_cast<__u16>(vscan);
  mode->vrefresh = static_cast<__u32>(vrefresh);
  mode->flags = static_cast<__u32>(flags);
  mode->type = static_cast<__u32>(type);
  memcpy(mode->name, text.data(), text.size());
  return true;
}

// enum drm_connector_status (include/drm/drm_connector.h), which no uapi
// header carries: the values are ABI all the same.
static const char* ConnectionName(uint32_t status) {
  switch (status) {
    case 1:
      return "connected";
    case 2:
      return "disconnected";
    default:
      return "unknown";
  }
}

static Napi::Value GetConnector(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  uint32_t id;
  if (!ArgInt32(info, 0, "fd", &fd) || !ArgUint32(info, 1, "connectorId", &id)) return env.Undefined();
  std::vector<uint32_t> encoders, props;
  std::vector<uint64_t> values;
  std::vector<struct drm_mode_modeinfo> modes;
  struct drm_mode_get_connector connector = {};
  for (int attempt = 0;; attempt++) {
    struct drm_mode_get_connector counts = {};
    counts.connector_id = id;
    // count_modes 0 asks the kernel to probe the connector for its modes.
    if (DrmIoctl(fd, DRM_IOCTL_MODE_GETCONNECTOR, &counts) < 0) return Errno(env, errno);
    encoders.resize(counts.count_encoders);
    props.resize(counts.count_props);
    values.resize(counts.count_props);
    modes.resize(counts.count_modes);
    connector = {};
    connector.connector_id = id;
    connector.count_encoders = counts.count_encoders;
    connector.count_props = counts.count_props;
    connector.count_modes = counts.count_modes;
    connector.encoders_ptr = reinterpret_cast<__u64>(encoders.data());
    connector.props_ptr = reinterpret_cast<__u64>(props.data());
    connector.prop_values_ptr = reinterpret_cast<__u64>(values.data());
    connector.modes_ptr = reinterpret_cast<__u64>(modes.data());
    if (DrmIoctl(fd, DRM_IOCTL_MODE_GETCONNECTOR, &connector) < 0) return Errno(env, errno);
    bool grew = connector.count_encoders > encoders.size() || connector.count_props > props.size() || connector.count_modes > modes.size();
    if (!grew) break;
    if (attempt == kCountRetries) return Errno(env, EAGAIN);
  }
  encoders.resize(connector.count_encoders);
  modes.resize(connector.count_modes);
  Napi::Object result = Napi::Object::New(env);
  result.Set("connectorId", Napi::Number::New(env, connector.connector_id));
  result.Set("encoderId", Napi::Number::New(env, connector.encoder_id));
  result.Set("connectorType", Napi::Number::New(env, connector.connector_type));
  result.Set("connectorTypeId", Napi::Number::New(env, connector.connector_type_id));
  result.Set("connection", Napi::String::New(env, ConnectionName(connector.connection)));
  result.Set("mmWidth", Napi::Number::New(env, connector.mm_width));
  result.Set("mmHeight", Napi::Number::New(env, connector.mm_height));
  result.Set("encoders", U32List(env, encoders));
  Napi::Array modeList = Napi::Array::New(env, modes.size());
  for (size_t i = 0; i < modes.size(); i++) modeList.Set(static_cast<uint32_t>(i), ModeObject(env, modes[i]));
  result.Set("modes", modeList);
  return result;
}

static Napi::Value GetEncoder(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  uint32_t id;
  if (!ArgInt32(info, 0, "fd", &fd) || !ArgUint32(info, 1, "encoderId", &id)) return env.Undefined();
  struct drm_mode_get_encoder encoder = {};
  encoder.encoder_id = id;
  if (DrmIoctl(fd, DRM_IOCTL_MODE_GETENCODER, &encoder) < 0) return Errno(env, errno);
  Napi::Object result = Napi::Object::New(env);
  result.Set("encoderId", Napi::Number::New(env, encoder.encoder_id));
  result.Set("encoderType", Napi::Number::New(env, encoder.encoder_type));
  result.Set("crtcId", Napi::Number::New(env, encoder.crtc_id));
  result.Set("possibleCrtcs", Napi::Number::New(env, encoder.possible_crtcs));
  result.Set("possibleClones", Napi::Number::New(env, encoder.possible_clones));
  return result;
}

static Napi::Value GetCrtc(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  uint32_t id;
  if (!ArgInt32(info, 0, "fd", &fd) || !ArgUint32(info, 1, "crtcId", &id)) return env.Undefined();
  struct drm_mode_crtc crtc = {};
  crtc.crtc_id = id;
  if (DrmIoctl(fd, DRM_IOCTL_MODE_GETCRTC, &crtc) < 0) return Errno(env, errno);
  Napi::Object result = Napi::Object::New(env);
  result.Set("crtcId", Napi::Number::New(env, crtc.crtc_id));
  result.Set("fbId", Napi::Number::New(env, crtc.fb_id));
  result.Set("x", Napi::Number::New(env, crtc.x));
  result.Set("y", Napi::Number::New(env, crtc.y));
  result.Set("gammaSize", Napi::Number::New(env, crtc.gamma_size));
  result.Set("mode", crtc.mode_valid ? Napi::Value(ModeObject(env, crtc.mode)) : env.Null());
  return result;
}

// setCrtc(fd, crtcId, fbId, x, y, connectorIds, mode | null): fbId 0 and
// mode null turn the CRTC off.
static Napi::Value SetCrtc(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  uint32_t crtcId, fbId, x, y;
  std::vector<uint32_t> ids;
  if (!ArgInt32(info, 0, "fd", &fd) || !ArgUint32(info, 1, "crtcId", &crtcId) || !ArgUint32(info, 2, "fbId", &fbId) ||
      !ArgUint32(info, 3, "x", &x) || !ArgUint32(info, 4, "y", &y) || !ArgU32List(info, 5, "connectorIds", 64, &ids)) {
    return env.Undefined();
  }
  struct drm_mode_crtc crtc = {};
  if (!info[6].IsNull()) {  // undefined too is refused, by ReadMode
    if (!ReadMode(env, info[6], &crtc.mode)) return env.Undefined();
    crtc.mode_valid = 1;
  }
  crtc.crtc_id = crtcId;
  crtc.fb_id = fbId;
  crtc.x = x;
  crtc.y = y;
  crtc.count_connectors = static_cast<__u32>(ids.size());
  crtc.set_connectors_ptr = reinterpret_cast<__u64>(ids.data());
  return Result(env, DrmIoctl(fd, DRM_IOCTL_MODE_SETCRTC, &crtc));
}

static Napi::Value GetPlaneResources(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  if (!ArgInt32(info, 0, "fd", &fd)) return env.Undefined();
  std::vector<uint32_t> planes;
  for (int attempt = 0;; attempt++) {
    struct drm_mode_get_plane_res counts = {};
    if (DrmIoctl(fd, DRM_IOCTL_MODE_GETPLANERESOURCES, &counts) < 0) return Errno(env, errno);
    planes.resize(counts.count_planes);
    struct drm_mode_get_plane_res res = {};
    res.count_planes = counts.count_planes;
    res.plane_id_ptr = reinterpret_cast<__u64>(planes.data());
    if (DrmIoctl(fd, DRM_IOCTL_MODE_GETPLANERESOURCES, &res) < 0) return Errno(env, errno);
    if (res.count_planes <= planes.size()) {
      planes.resize(res.count_planes);
      break;
    }
    if (attempt == kCountRetries) return Errno(env, EAGAIN);
  }
  return U32List(env, planes);
}

static Napi::Value GetPlane(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  uint32_t id;
  if (!ArgInt32(info, 0, "fd", &fd) || !ArgUint32(info, 1, "planeId", &id)) return env.Undefined();
  struct drm_mode_get_plane counts = {};
  counts.plane_id = id;
  if (DrmIoctl(fd, DRM_IOCTL_MODE_GETPLANE, &counts) < 0) return Errno(env, errno);
  // A plane's format list is fixed when the driver creates it.
  std::vector<uint32_t> formats(counts.count_format_types);
  struct drm_mode_get_plane plane = {};
  plane.plane_id = id;
  plane.count_format_types = counts.count_format_types;
  plane.format_type_ptr = reinterpret_cast<__u64>(formats.data());
  if (DrmIoctl(fd, DRM_IOCTL_MODE_GETPLANE, &plane) < 0) return Errno(env, errno);
  formats.resize(std::min<size_t>(formats.size(), plane.count_format_types));
  Napi::Object result = Napi::Object::New(env);
  result.Set("planeId", Napi::Number::New(env, plane.plane_id));
  result.Set("crtcId", Napi::Number::New(env, plane.crtc_id));
  result.Set("fbId", Napi::Number::New(env, plane.fb_id));
  result.Set("possibleCrtcs", Napi::Number::New(env, plane.possible_crtcs));
  result.Set("formats", U32List(env, formats));
  return result;
}

// addFb2(fd, width, height, format, flags, [handle, pitch, offset] * up to 4).
static Napi::Value AddFb2(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  uint32_t width, height, format, flags;
  std::vector<uint32_t> planes;
  if (!ArgInt32(info, 0, "fd", &fd) || !ArgUint32(info, 1, "width", &width) || !ArgUint32(info, 2, "height", &height) ||
      !ArgUint32(info, 3, "format", &format) || !ArgUint32(info, 4, "flags", &flags) || !ArgU32List(info, 5, "planes", 12, &planes)) {
    return env.Undefined();
  }
  if (planes.empty() || planes.size() % 3 != 0) {
    ThrowInvalidValue(env, "argument planes must hold 1 to 4 [handle, pitch, offset] triples");
    return env.Undefined();
  }
  struct drm_mode_fb_cmd2 fb = {};
  fb.width = width;
  fb.height = height;
  fb.pixel_format = format;
  fb.flags = flags;
  for (size_t i = 0; i < planes.size() / 3; i++) {
    fb.handles[i] = planes[i * 3];
    fb.pitches[i] = planes[i * 3 + 1];
    fb.offsets[i] = planes[i * 3 + 2];
  }
  if (DrmIoctl(fd, DRM_IOCTL_MODE_ADDFB2, &fb) < 0) return Errno(env, errno);
  return Napi::Number::New(env, fb.fb_id);
}

static Napi::Value RmFb(const Napi::CallbackInfo& info) {
  int32_t fd;
  uint32_t id;
  if (!ArgInt32(info, 0, "fd", &fd) || !ArgUint32(info, 1, "fbId", &id)) return info.Env().Undefined();
  unsigned int fbId = id;
  return Result(info.Env(), DrmIoctl(fd, DRM_IOCTL_MODE_RMFB, &fbId));
}

// { ids, values }: values as bigints, since a property holds a __u64.
static Napi::Value ObjectProperties(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  uint32_t id, type;
  if (!ArgInt32(info, 0, "fd", &fd) || !ArgUint32(info, 1, "objectId", &id) || !ArgUint32(info, 2, "objectType", &type)) return env.Undefined();
  std::vector<uint32_t> props;
  std::vector<uint64_t> values;
  for (int attempt = 0;; attempt++) {
    struct drm_mode_obj_get_properties counts = {};
    counts.obj_id = id;
    counts.obj_type = type;
    if (DrmIoctl(fd, DRM_IOCTL_MODE_OBJ_GETPROPERTIES, &counts) < 0) return Errno(env, errno);
    props.resize(counts.count_props);
    values.resize(counts.count_props);
    struct drm_mode_obj_get_properties request = counts;
    request.props_ptr = reinterpret_cast<__u64>(props.data());
    request.prop_values_ptr = reinterpret_cast<__u64>(values.data());
    if (DrmIoctl(fd, DRM_IOCTL_MODE_OBJ_GETPROPERTIES, &request) < 0) return Errno(env, errno);
    if (request.count_props <= props.size()) {
      props.resize(request.count_props);
      values.resize(request.count_props);
      break;
    }
    if (attempt == kCountRetries) return Errno(env, EAGAIN);
  }
  Napi::Array valueList = Napi::Array::New(env, values.size());
  for (size_t i = 0; i < values.size(); i++) valueList.Set(static_cast<uint32_t>(i), Napi::BigInt::New(env, static_cast<uint64_t>(values[i])));
  Napi::Object result = Napi::Object::New(env);
  result.Set("ids", U32List(env, props));
  result.Set("values", valueList);
  return result;
}

// A property's name and flags, and an enum's or bitmask's names with their values.
static Napi::Value GetProperty(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  uint32_t id;
  if (!ArgInt32(info, 0, "fd", &fd) || !ArgUint32(info, 1, "propertyId", &id)) return env.Undefined();
  struct drm_mode_get_property counts = {};
  counts.prop_id = id;
  if (DrmIoctl(fd, DRM_IOCTL_MODE_GETPROPERTY, &counts) < 0) return Errno(env, errno);
  // A property's values and enum entries are fixed when the driver makes it.
  bool named = (counts.flags & (DRM_MODE_PROP_ENUM | DRM_MODE_PROP_BITMASK)) != 0;
  std::vector<struct drm_mode_property_enum> enums(named ? counts.count_enum_blobs : 0);
  std::vector<uint64_t> values(named ? counts.count_values : 0);
  struct drm_mode_get_property property = counts;
  if (named) {
    property.enum_blob_ptr = reinterpret_cast<__u64>(enums.data());
    property.values_ptr = reinterpret_cast<__u64>(values.data());
    if (DrmIoctl(fd, DRM_IOCTL_MODE_GETPROPERTY, &property) < 0) return Errno(env, errno);
  }
  Napi::Object result = Napi::Object::New(env);
  result.Set("propertyId", Napi::Number::New(env, property.prop_id));
  result.Set("name", Napi::String::New(env, property.name, strnlen(property.name, sizeof(property.name))));
  result.Set("flags", Napi::Number::New(env, property.flags));
  Napi::Array list = Napi::Array::New(env, enums.size());
  for (size_t i = 0; i < enums.size(); i++) {
    Napi::Object entry = Napi::Object::New(env);
    entry.Set("name", Napi::String::New(env, enums[i].name, strnlen(enums[i].name, sizeof(enums[i].name))));
    entry.Set("value", Napi::BigInt::New(env, static_cast<uint64_t>(enums[i].value)));
    list.Set(static_cast<uint32_t>(i), entry);
  }
  result.Set("enums", list);
  return result;
}

static Napi::Value CreateModeBlob(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  if (!ArgInt32(info, 0, "fd", &fd)) return env.Undefined();
  struct drm_mode_modeinfo mode;
  if (!ReadMode(env, info[1], &mode)) return env.Undefined();
  struct drm_mode_create_blob blob = {};
  blob.data = reinterpret_cast<__u64>(&mode);
  blob.length = sizeof(mode);
  if (DrmIoctl(fd, DRM_IOCTL_MODE_CREATEPROPBLOB, &blob) < 0) return Errno(env, errno);
  return Napi::Number::New(env, blob.blob_id);
}

static Napi::Value DestroyBlob(const Napi::CallbackInfo& info) {
  int32_t fd;
  uint32_t id;
  if (!ArgInt32(info, 0, "fd", &fd) || !ArgUint32(info, 1, "blobId", &id)) return info.Env().Undefined();
  struct drm_mode_destroy_blob blob = {};
  blob.blob_id = id;
  return Result(info.Env(), DrmIoctl(fd, DRM_IOCTL_MODE_DESTROYPROPBLOB, &blob));
}

template <typename T>
static bool TypedList(const Napi::CallbackInfo& info, size_t index, const char* name, napi_typedarray_type expected, const char* what, T** data, size_t* length) {
  napi_typedarray_type type;
  void* start;
  if (napi_get_typedarray_info(info.Env(), info[index], &type, length, &start, nullptr, nullptr) != napi_ok || type != expected) {
    return ThrowTypeError(info.Env(), std::string("argument ") + name + " must be " + what);
  }
  *data = static_cast<T*>(start);
  return true;
}

// atomicCommit(fd, flags, objectIds, propCounts, propIds, values, outFences,
// fencePropIndexes?): values[i] is the value of propIds[i]. A property whose
// value is a pointer the kernel writes an fd through (WRITEBACK_OUT_FENCE_PTR,
// OUT_FENCE_PTR) is named by its index in fencePropIndexes: its value becomes
// a pointer made here, and the fd lands in outFences at the same position
// (no fd: -1 as the kernel writes it, -2 if it never took the property).
static Napi::Value AtomicCommit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  uint32_t flags;
  uint32_t *objects = nullptr, *counts = nullptr, *props = nullptr;
  uint64_t* values = nullptr;
  int32_t* fences = nullptr;
  size_t objectCount, countCount, propCount, valueCount, fenceCount;
  // Read first: a list's elements may be getters, and JavaScript that runs
  // must find no pointer into a typed array yet (it could transfer or
  // rewrite the array under it).
  std::vector<uint32_t> pointerProps;
  if (info.Length() > 7 && !info[7].IsUndefined() && !ArgU32List(info, 7, "fencePropIndexes", 16, &pointerProps)) {
    return env.Undefined();
  }
  if (!ArgInt32(info, 0, "fd", &fd) || !ArgUint32(info, 1, "flags", &flags) ||
      !TypedList(info, 2, "objectIds", napi_uint32_array, "a Uint32Array", &objects, &objectCount) ||
      !TypedList(info, 3, "propCounts", napi_uint32_array, "a Uint32Array", &counts, &countCount) ||
      !TypedList(info, 4, "propIds", napi_uint32_array, "a Uint32Array", &props, &propCount) ||
      !TypedList(info, 5, "values", napi_biguint64_array, "a BigUint64Array", &values, &valueCount) ||
      !TypedList(info, 6, "outFences", napi_int32_array, "an Int32Array", &fences, &fenceCount)) {
    return env.Undefined();
  }
  // Copied: the kernel reads them after the checks, and no JavaScript
  // memory is trusted to hold still that long.
  std::vector<uint32_t> objectIds(objects, objects + objectCount);
  std::vector<uint32_t> propCounts(counts, counts + countCount);
  std::vector<uint32_t> propIds(props, props + propCount);
  uint64_t total = 0;
  for (size_t i = 0; i < countCount; i++) total += propCounts[i];
  if (countCount != objectCount || valueCount != propCount || total != propCount) {
    ThrowInvalidValue(env, "atomicCommit: one prop count per object, one value per prop, and the counts summing to the props");
    return env.Undefined();
  }
  // Copied: the kernel must never write through a pointer JavaScript chose.
  std::vector<uint64_t> kernelValues(values, values + valueCount);
  // -2, not -1: the kernel writes -1 into a fence slot as soon as it takes
  // the property (drm_atomic_uapi.c), and a test can then tell that it did.
  std::vector<int32_t> fenceSlots(fenceCount, -2);
  std::vector<bool> isPointer(propCount, false);
  {
    if (pointerProps.size() > fenceCount) {
      ThrowInvalidValue(env, "atomicCommit: more fence props than outFences");
      return env.Undefined();
    }
    for (size_t i = 0; i < pointerProps.size(); i++) {
      if (pointerProps[i] >= propCount) {
        ThrowInvalidValue(env, "atomicCommit: a fence prop index past the props");
        return env.Undefined();
      }
      kernelValues[pointerProps[i]] = reinterpret_cast<uint64_t>(&fenceSlots[i]);
      isPointer[pointerProps[i]] = true;
    }
  }
  // Any other property the kernel writes through (its name ends in _PTR)
  // would be given a number JavaScript chose as an address in this process.
  for (size_t i = 0; i < propCount; i++) {
    if (isPointer[i]) continue;
    struct drm_mode_get_property property = {};
    property.prop_id = propIds[i];
    if (DrmIoctl(fd, DRM_IOCTL_MODE_GETPROPERTY, &property) < 0) return Errno(env, errno);
    size_t length = strnlen(property.name, sizeof(property.name));
    if (length >= 4 && memcmp(property.name + length - 4, "_PTR", 4) == 0) {
      ThrowInvalidValue(env, std::string("atomicCommit: property ") + std::string(property.name, length) + " is a pointer: name its index in fencePropIndexes");
      return env.Undefined();
    }
  }
  struct drm_mode_atomic atomic = {};
  atomic.flags = flags;
  atomic.count_objs = static_cast<__u32>(objectCount);
  atomic.objs_ptr = reinterpret_cast<__u64>(objectIds.data());
  atomic.count_props_ptr = reinterpret_cast<__u64>(propCounts.data());
  atomic.props_ptr = reinterpret_cast<__u64>(propIds.data());
  atomic.prop_values_ptr = reinterpret_cast<__u64>(kernelValues.data());
  long long result = DrmIoctl(fd, DRM_IOCTL_MODE_ATOMIC, &atomic);
  int error = errno;
  for (size_t i = 0; i < fenceCount; i++) fences[i] = fenceSlots[i];
  return result < 0 ? Errno(env, error) : Napi::Number::New(env, 0);
}

static void DrmConstants(Napi::Object table) {
  DMABUF_CONSTANT(table, DRM_CAP_DUMB_BUFFER);
  DMABUF_CONSTANT(table, DRM_CAP_DUMB_PREFERRED_DEPTH);
  DMABUF_CONSTANT(table, DRM_CAP_PRIME);
  DMABUF_CONSTANT(table, DRM_PRIME_CAP_IMPORT);
  DMABUF_CONSTANT(table, DRM_PRIME_CAP_EXPORT);
  DMABUF_CONSTANT(table, DRM_CAP_TIMESTAMP_MONOTONIC);
  DMABUF_CONSTANT(table, DRM_CAP_ADDFB2_MODIFIERS);
  DMABUF_CONSTANT(table, DRM_CAP_SYNCOBJ);
  DMABUF_CONSTANT(table, DRM_CLIENT_CAP_UNIVERSAL_PLANES);
  DMABUF_CONSTANT(table, DRM_CLIENT_CAP_ATOMIC);
  DMABUF_CONSTANT(table, DRM_CLIENT_CAP_WRITEBACK_CONNECTORS);
  DMABUF_CONSTANT(table, DRM_CLOEXEC);
  DMABUF_CONSTANT(table, DRM_RDWR);
  DMABUF_CONSTANT(table, DRM_FORMAT_XRGB8888);
  DMABUF_CONSTANT(table, DRM_FORMAT_ARGB8888);
  DMABUF_CONSTANT(table, DRM_MODE_CONNECTOR_VIRTUAL);
  DMABUF_CONSTANT(table, DRM_MODE_CONNECTOR_WRITEBACK);
  DMABUF_CONSTANT(table, DRM_MODE_OBJECT_CRTC);
  DMABUF_CONSTANT(table, DRM_MODE_OBJECT_CONNECTOR);
  DMABUF_CONSTANT(table, DRM_MODE_OBJECT_PLANE);
  DMABUF_CONSTANT(table, DRM_MODE_ATOMIC_ALLOW_MODESET);
  DMABUF_CONSTANT(table, DRM_MODE_ATOMIC_TEST_ONLY);
  DMABUF_CONSTANT(table, DRM_MODE_TYPE_PREFERRED);
  DMABUF_CONSTANT(table, VGEM_FENCE_WRITE);
  DMABUF_CONSTANT(table, DRM_IOCTL_VGEM_FENCE_ATTACH);
  DMABUF_CONSTANT(table, DRM_IOCTL_VGEM_FENCE_SIGNAL);
}

#define DMABUF_DRM_BIND(name, function) drm.Set(name, Napi::Function::New(env, function, name));
#else
// Built without libdrm-dev's headers: each function is there, and says so.
static Napi::Value NotSupported(const Napi::CallbackInfo& info) {
  return Errno(info.Env(), ENOTSUP);
}
#define DMABUF_DRM_BIND(name, function) drm.Set(name, Napi::Function::New(env, NotSupported, name));
#endif

#define DMABUF_DRM_FUNCTIONS(X)             \
  X("version", Version)                     \
  X("getCap", GetCap)                       \
  X("setClientCap", SetClientCap)           \
  X("createDumb", CreateDumb)               \
  X("mapDumb", MapDumb)                     \
  X("destroyDumb", DestroyDumb)             \
  X("gemClose", GemClose)                   \
  X("primeHandleToFd", PrimeHandleToFd)     \
  X("primeFdToHandle", PrimeFdToHandle)     \
  X("vgemFenceAttach", VgemFenceAttach)     \
  X("vgemFenceSignal", VgemFenceSignal)     \
  X("getResources", GetResources)           \
  X("getConnector", GetConnector)           \
  X("getEncoder", GetEncoder)               \
  X("getCrtc", GetCrtc)                     \
  X("setCrtc", SetCrtc)                     \
  X("getPlaneResources", GetPlaneResources) \
  X("getPlane", GetPlane)                   \
  X("addFb2", AddFb2)                       \
  X("rmFb", RmFb)                           \
  X("objectProperties", ObjectProperties)   \
  X("getProperty", GetProperty)             \
  X("createModeBlob", CreateModeBlob)       \
  X("destroyBlob", DestroyBlob)             \
  X("atomicCommit", AtomicCommit)

void InitDrm(Napi::Env env, Napi::Object exports) {
  Napi::Object drm = Napi::Object::New(env);
  DMABUF_DRM_FUNCTIONS(DMABUF_DRM_BIND)
  Napi::Object constants = Napi::Object::New(env);
  Napi::Object sizes = Napi::Object::New(env);
#ifdef DMABUF_HAVE_DRM_HEADERS
  drm.Set("available", Napi::Boolean::New(env, true));
  DrmConstants(constants);
  sizes.Set("drm_vgem_fence_attach", Napi::Number::New(env, sizeof(struct drm_vgem_fence_attach)));
  sizes.Set("drm_vgem_fence_signal", Napi::Number::New(env, sizeof(struct drm_vgem_fence_signal)));
#else
  drm.Set("available", Napi::Boolean::New(env, false));
#endif
  constants.Freeze();
  sizes.Freeze();
  drm.Set("constants", constants);
  drm.Set("vgemSizes", sizes);
  drm.Freeze();
  exports.Set("drm", drm);
}

}  // namespace dmabuf
