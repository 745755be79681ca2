// V4L2 (linux/videodev2.h): capabilities, formats, inputs and outputs,
// buffers (REQBUFS, QUERYBUF, QBUF, DQBUF, EXPBUF, STREAMON/OFF) and
// controls. Single-planar only. The bindings live on exports.v4l2; names,
// decoding and policy are lib/v4l2.ts's.
#include <linux/videodev2.h>
#include <sys/ioctl.h>

#include <cstring>

#include "addon.h"

namespace dmabuf {

static Napi::String FixedString(Napi::Env env, const __u8* text, size_t size) {
  const char* chars = reinterpret_cast<const char*>(text);
  return Napi::String::New(env, chars, strnlen(chars, size));
}

// The buffer type of a single-planar video queue. Any other type selects
// another member of the unions in v4l2_format and v4l2_buffer: a
// multi-planar buffer's m.planes is a pointer the kernel reads and writes
// through, and would be the dma-buf fd given here read as an address.
static bool ArgBufferType(const Napi::CallbackInfo& info, size_t index, uint32_t* out) {
  if (!ArgUint32(info, index, "type", out)) return false;
  if (*out == V4L2_BUF_TYPE_VIDEO_CAPTURE || *out == V4L2_BUF_TYPE_VIDEO_OUTPUT) return true;
  return ThrowRangeError(info.Env(), "argument type must be V4L2_BUF_TYPE_VIDEO_CAPTURE or V4L2_BUF_TYPE_VIDEO_OUTPUT (single-planar queues only), got " + std::to_string(*out));
}

static bool ArgBool(const Napi::CallbackInfo& info, size_t index, const char* name, bool* out) {
  if (!info[index].IsBoolean()) return ThrowTypeError(info.Env(), std::string("argument ") + name + " must be a boolean");
  *out = info[index].As<Napi::Boolean>().Value();
  return true;
}

static Napi::Value QueryCapabilities(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  if (!ArgInt32(info, 0, "fd", &fd)) return env.Undefined();
  struct v4l2_capability cap = {};
  if (Restarting([&] { return ioctl(fd, VIDIOC_QUERYCAP, &cap); }) < 0) return Errno(env, errno);
  Napi::Object result = Napi::Object::New(env);
  result.Set("driver", FixedString(env, cap.driver, sizeof(cap.driver)));
  result.Set("card", FixedString(env, cap.card, sizeof(cap.card)));
  result.Set("busInfo", FixedString(env, cap.bus_info, sizeof(cap.bus_info)));
  result.Set("version", Napi::Number::New(env, cap.version));
  result.Set("capabilities", Napi::Number::New(env, cap.capabilities));
  result.Set("deviceCaps", Napi::Number::New(env, cap.device_caps));
  return result;
}

static Napi::Value EnumFormat(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  uint32_t type, index;
  if (!ArgInt32(info, 0, "fd", &fd) || !ArgBufferType(info, 1, &type) || !ArgUint32(info, 2, "index", &index)) return env.Undefined();
  struct v4l2_fmtdesc desc = {};
  desc.type = type;
  desc.index = index;
  if (Restarting([&] { return ioctl(fd, VIDIOC_ENUM_FMT, &desc); }) < 0) return Errno(env, errno);
  Napi::Object result = Napi::Object::New(env);
  result.Set("index", Napi::Number::New(env, desc.index));
  result.Set("flags", Napi::Number::New(env, desc.flags));
  result.Set("description", FixedString(env, desc.description, sizeof(desc.description)));
  result.Set("pixelformat", Napi::Number::New(env, desc.pixelformat));
  return result;
}

static Napi::Value PixFormat(Napi::Env env, const struct v4l2_format& format) {
  const struct v4l2_pix_format& pix = format.fmt.pix;
  Napi::Object result = Napi::Object::New(env);
  result.Set("type", Napi::Number::New(env, format.type));
  result.Set("width", Napi::Number::New(env, pix.width));
  result.Set("height", Napi::Number::New(env, pix.height));
  result.Set("pixelformat", Napi::Number::New(env, pix.pixelformat));
  result.Set("field", Napi::Number::New(env, pix.field));
  result.Set("bytesperline", Napi::Number::New(env, pix.bytesperline));
  result.Set("sizeimage", Napi::Number::New(env, pix.sizeimage));
  result.Set("colorspace", Napi::Number::New(env, pix.colorspace));
  result.Set("quantization", Napi::Number::New(env, pix.quantization));
  result.Set("xferFunc", Napi::Number::New(env, pix.xfer_func));
  result.Set("ycbcrEnc", Napi::Number::New(env, pix.ycbcr_enc));
  return result;
}

static Napi::Value GetFormat(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  uint32_t type;
  if (!ArgInt32(info, 0, "fd", &fd) || !ArgBufferType(info, 1, &type)) return env.Undefined();
  struct v4l2_format format = {};
  format.type = type;
  if (Restarting([&] { return ioctl(fd, VIDIOC_G_FMT, &format); }) < 0) return Errno(env, errno);
  return PixFormat(env, format);
}

// setFormat(fd, command, type, width, height, pixelformat, field,
// bytesperline, sizeimage): command is VIDIOC_S_FMT or VIDIOC_TRY_FMT, the
// only two that take a struct v4l2_format this way.
static Napi::Value SetFormat(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  uint32_t command, type, width, height, pixelformat, field, bytesperline, sizeimage;
  if (!ArgInt32(info, 0, "fd", &fd) || !ArgUint32(info, 1, "command", &command) || !ArgBufferType(info, 2, &type) ||
      !ArgUint32(info, 3, "width", &width) || !ArgUint32(info, 4, "height", &height) || !ArgUint32(info, 5, "pixelformat", &pixelformat) ||
      !ArgUint32(info, 6, "field", &field) || !ArgUint32(info, 7, "bytesperline", &bytesperline) || !ArgUint32(info, 8, "sizeimage", &sizeimage)) {
    return env.Undefined();
  }
  if (command != static_cast<uint32_t>(VIDIOC_S_FMT) && command != static_cast<uint32_t>(VIDIOC_TRY_FMT)) {
    ThrowInvalidValue(env, "argument command must be VIDIOC_S_FMT or VIDIOC_TRY_FMT");
    return env.Undefined();
  }
  struct v4l2_format format = {};
  format.type = type;
  format.fmt.pix.width = width;
  format.fmt.pix.height = height;
  format.fmt.pix.pixelformat = pixelformat;
  format.fmt.pix.field = field;
  format.fmt.pix.bytesperline = bytesperline;
  format.fmt.pix.sizeimage = sizeimage;
  if (Restarting([&] { return ioctl(fd, command, &format); }) < 0) return Errno(env, errno);
  return PixFormat(env, format);
}

// enumIo(fd, output, index): VIDIOC_ENUMINPUT or VIDIOC_ENUMOUTPUT.
static Napi::Value EnumIo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  uint32_t index;
  bool output;
  if (!ArgInt32(info, 0, "fd", &fd) || !ArgBool(info, 1, "output", &output) || !ArgUint32(info, 2, "index", &index)) return env.Undefined();
  Napi::Object result = Napi::Object::New(env);
  if (output) {
    struct v4l2_output output = {};
    output.index = index;
    if (Restarting([&] { return ioctl(fd, VIDIOC_ENUMOUTPUT, &output); }) < 0) return Errno(env, errno);
    result.Set("index", Napi::Number::New(env, output.index));
    result.Set("name", FixedString(env, output.name, sizeof(output.name)));
    result.Set("type", Napi::Number::New(env, output.type));
    result.Set("capabilities", Napi::Number::New(env, output.capabilities));
    result.Set("status", Napi::Number::New(env, 0));
  } else {
    struct v4l2_input input = {};
    input.index = index;
    if (Restarting([&] { return ioctl(fd, VIDIOC_ENUMINPUT, &input); }) < 0) return Errno(env, errno);
    result.Set("index", Napi::Number::New(env, input.index));
    result.Set("name", FixedString(env, input.name, sizeof(input.name)));
    result.Set("type", Napi::Number::New(env, input.type));
    result.Set("capabilities", Napi::Number::New(env, input.capabilities));
    result.Set("status", Napi::Number::New(env, input.status));
  }
  return result;
}

// getIo(fd, output): the current input or output index.
static Napi::Value GetIo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  bool output;
  if (!ArgInt32(info, 0, "fd", &fd) || !ArgBool(info, 1, "output", &output)) return env.Undefined();
  int index = 0;
  unsigned long command = output ? VIDIOC_G_OUTPUT : VIDIOC_G_INPUT;
  if (Restarting([&] { return ioctl(fd, command, &index); }) < 0) return Errno(env, errno);
  return Napi::Number::New(env, index);
}

static Napi::Value SetIo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  uint32_t index;
  bool output;
  if (!ArgInt32(info, 0, "fd", &fd) || !ArgBool(info, 1, "output", &output) || !ArgUint32(info, 2, "index", &index, INT32_MAX)) return env.Undefined();
  int value = static_cast<int>(index);
  unsigned long command = output ? VIDIOC_S_OUTPUT : VIDIOC_S_INPUT;
  return Result(env, Restarting([&] { return ioctl(fd, command, &value); }));
}

// frameInterval(fd, type, numerator, denominator): VIDIOC_G_PARM when
// denominator is 0, else VIDIOC_S_PARM with that time per frame. Gives the
// interval the driver now uses and whether it takes one (TIMEPERFRAME).
static Napi::Value FrameInterval(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  uint32_t type, numerator, denominator;
  if (!ArgInt32(info, 0, "fd", &fd) || !ArgBufferType(info, 1, &type) || !ArgUint32(info, 2, "numerator", &numerator) ||
      !ArgUint32(info, 3, "denominator", &denominator)) {
    return env.Undefined();
  }
  struct v4l2_streamparm parm = {};
  parm.type = type;
  bool capture = type == V4L2_BUF_TYPE_VIDEO_CAPTURE;
  struct v4l2_fract* interval = capture ? &parm.parm.capture.timeperframe : &parm.parm.output.timeperframe;
  unsigned long command = VIDIOC_G_PARM;
  if (denominator != 0) {
    command = VIDIOC_S_PARM;
    interval->numerator = numerator;
    interval->denominator = denominator;
  }
  if (Restarting([&] { return ioctl(fd, command, &parm); }) < 0) return Errno(env, errno);
  __u32 capability = capture ? parm.parm.capture.capability : parm.parm.output.capability;
  Napi::Object result = Napi::Object::New(env);
  result.Set("numerator", Napi::Number::New(env, interval->numerator));
  result.Set("denominator", Napi::Number::New(env, interval->denominator));
  result.Set("settable", Napi::Boolean::New(env, (capability & V4L2_CAP_TIMEPERFRAME) != 0));
  return result;
}

static Napi::Value RequestBuffers(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  uint32_t type, memory, count;
  if (!ArgInt32(info, 0, "fd", &fd) || !ArgBufferType(info, 1, &type) || !ArgUint32(info, 2, "memory", &memory) || !ArgUint32(info, 3, "count", &count)) return env.Undefined();
  struct v4l2_requestbuffers request = {};
  request.type = type;
  request.memory = memory;
  request.count = count;
  if (Restarting([&] { return ioctl(fd, VIDIOC_REQBUFS, &request); }) < 0) return Errno(env, errno);
  Napi::Object result = Napi::Object::New(env);
  result.Set("count", Napi::Number::New(env, request.count));
  result.Set("capabilities", Napi::Number::New(env, request.capabilities));
  return result;
}

static Napi::Value BufferObject(Napi::Env env, const struct v4l2_buffer& buffer) {
  Napi::Object result = Napi::Object::New(env);
  result.Set("index", Napi::Number::New(env, buffer.index));
  result.Set("type", Napi::Number::New(env, buffer.type));
  result.Set("bytesused", Napi::Number::New(env, buffer.bytesused));
  result.Set("flags", Napi::Number::New(env, buffer.flags));
  result.Set("field", Napi::Number::New(env, buffer.field));
  result.Set("timestampSec", Napi::Number::New(env, static_cast<double>(buffer.timestamp.tv_sec)));
  result.Set("timestampUsec", Napi::Number::New(env, static_cast<double>(buffer.timestamp.tv_usec)));
  result.Set("sequence", Napi::Number::New(env, buffer.sequence));
  result.Set("memory", Napi::Number::New(env, buffer.memory));
  if (buffer.memory == V4L2_MEMORY_MMAP) result.Set("offset", Napi::Number::New(env, buffer.m.offset));
  if (buffer.memory == V4L2_MEMORY_DMABUF) result.Set("fd", Napi::Number::New(env, buffer.m.fd));
  result.Set("length", Napi::Number::New(env, buffer.length));
  return result;
}

static Napi::Value QueryBuffer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  uint32_t type, memory, index;
  if (!ArgInt32(info, 0, "fd", &fd) || !ArgBufferType(info, 1, &type) || !ArgUint32(info, 2, "memory", &memory) || !ArgUint32(info, 3, "index", &index)) return env.Undefined();
  struct v4l2_buffer buffer = {};
  buffer.type = type;
  buffer.memory = memory;
  buffer.index = index;
  if (Restarting([&] { return ioctl(fd, VIDIOC_QUERYBUF, &buffer); }) < 0) return Errno(env, errno);
  return BufferObject(env, buffer);
}

// queueBuffer(fd, type, memory, index, dmaBufFd, length, bytesused, field):
// dmaBufFd and length are read for V4L2_MEMORY_DMABUF only.
static Napi::Value QueueBuffer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd, dmaBufFd;
  uint32_t type, memory, index, length, bytesused, field;
  if (!ArgInt32(info, 0, "fd", &fd) || !ArgBufferType(info, 1, &type) || !ArgUint32(info, 2, "memory", &memory) || !ArgUint32(info, 3, "index", &index) ||
      !ArgInt32(info, 4, "dmaBufFd", &dmaBufFd) || !ArgUint32(info, 5, "length", &length) || !ArgUint32(info, 6, "bytesused", &bytesused) || !ArgUint32(info, 7, "field", &field)) {
    return env.Undefined();
  }
  struct v4l2_buffer buffer = {};
  buffer.type = type;
  buffer.memory = memory;
  buffer.index = index;
  buffer.bytesused = bytesused;
  buffer.field = field;
  if (memory == V4L2_MEMORY_DMABUF) {
    buffer.m.fd = dmaBufFd;
    buffer.length = length;
  }
  if (Restarting([&] { return ioctl(fd, VIDIOC_QBUF, &buffer); }) < 0) return Errno(env, errno);
  return BufferObject(env, buffer);
}

// On the O_NONBLOCK fd: -EAGAIN when no buffer is done yet (never waits).
static Napi::Value DequeueBuffer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  uint32_t type, memory;
  if (!ArgInt32(info, 0, "fd", &fd) || !ArgBufferType(info, 1, &type) || !ArgUint32(info, 2, "memory", &memory)) return env.Undefined();
  struct v4l2_buffer buffer = {};
  buffer.type = type;
  buffer.memory = memory;
  if (Restarting([&] { return ioctl(fd, VIDIOC_DQBUF, &buffer); }) < 0) return Errno(env, errno);
  return BufferObject(env, buffer);
}

static Napi::Value ExportBuffer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  uint32_t type, index, flags;
  if (!ArgInt32(info, 0, "fd", &fd) || !ArgBufferType(info, 1, &type) || !ArgUint32(info, 2, "index", &index) || !ArgUint32(info, 3, "flags", &flags)) return env.Undefined();
  struct v4l2_exportbuffer request = {};
  request.type = type;
  request.index = index;
  request.flags = flags;
  request.fd = -1;
  if (Restarting([&] { return ioctl(fd, VIDIOC_EXPBUF, &request); }) < 0) return Errno(env, errno);
  return Napi::Number::New(env, request.fd);
}

// stream(fd, on, type): VIDIOC_STREAMON or VIDIOC_STREAMOFF.
static Napi::Value Stream(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  uint32_t type;
  bool on;
  if (!ArgInt32(info, 0, "fd", &fd) || !ArgBool(info, 1, "on", &on) || !ArgBufferType(info, 2, &type)) return env.Undefined();
  int value = static_cast<int>(type);
  unsigned long command = on ? VIDIOC_STREAMON : VIDIOC_STREAMOFF;
  return Result(env, Restarting([&] { return ioctl(fd, command, &value); }));
}

// 64-bit control values and limits travel as bigints: an INTEGER64
// control's range is the whole of int64.
static Napi::Value QueryControl(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  uint32_t id;
  if (!ArgInt32(info, 0, "fd", &fd) || !ArgUint32(info, 1, "id", &id)) return env.Undefined();
  struct v4l2_query_ext_ctrl query = {};
  query.id = id;
  if (Restarting([&] { return ioctl(fd, VIDIOC_QUERY_EXT_CTRL, &query); }) < 0) return Errno(env, errno);
  Napi::Object result = Napi::Object::New(env);
  result.Set("id", Napi::Number::New(env, query.id));
  result.Set("type", Napi::Number::New(env, query.type));
  result.Set("name", Napi::String::New(env, query.name, strnlen(query.name, sizeof(query.name))));
  result.Set("minimum", Napi::BigInt::New(env, static_cast<int64_t>(query.minimum)));
  result.Set("maximum", Napi::BigInt::New(env, static_cast<int64_t>(query.maximum)));
  result.Set("step", Napi::BigInt::New(env, static_cast<uint64_t>(query.step)));
  result.Set("defaultValue", Napi::BigInt::New(env, static_cast<int64_t>(query.default_value)));
  result.Set("flags", Napi::Number::New(env, query.flags));
  result.Set("elemSize", Napi::Number::New(env, query.elem_size));
  result.Set("elems", Napi::Number::New(env, query.elems));
  result.Set("nrOfDims", Napi::Number::New(env, query.nr_of_dims));
  return result;
}

static Napi::Value QueryMenu(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  uint32_t id, index;
  if (!ArgInt32(info, 0, "fd", &fd) || !ArgUint32(info, 1, "id", &id) || !ArgUint32(info, 2, "index", &index)) return env.Undefined();
  struct v4l2_querymenu menu = {};
  menu.id = id;
  menu.index = index;
  if (Restarting([&] { return ioctl(fd, VIDIOC_QUERYMENU, &menu); }) < 0) return Errno(env, errno);
  Napi::Object result = Napi::Object::New(env);
  result.Set("index", Napi::Number::New(env, menu.index));
  result.Set("name", FixedString(env, menu.name, sizeof(menu.name)));
  result.Set("value", Napi::BigInt::New(env, static_cast<int64_t>(menu.value)));
  return result;
}

static bool ArgInt64(const Napi::CallbackInfo& info, size_t index, const char* name, int64_t* out) {
  if (!info[index].IsBigInt()) return ThrowTypeError(info.Env(), std::string("argument ") + name + " must be a bigint");
  bool lossless = false;
  *out = info[index].As<Napi::BigInt>().Int64Value(&lossless);
  if (!lossless) return ThrowRangeError(info.Env(), std::string("argument ") + name + " must be a bigint from -(2n ** 63n) to 2n ** 63n - 1n");
  return true;
}

// One control of the current values, through the extended controls (a
// control of any class): value64 for INTEGER64, value otherwise. A bigint,
// or -errno as a number.
static Napi::Value GetControl(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  uint32_t id;
  bool is64;
  if (!ArgInt32(info, 0, "fd", &fd) || !ArgUint32(info, 1, "id", &id) || !ArgBool(info, 2, "is64", &is64)) return env.Undefined();
  struct v4l2_ext_control control = {};
  control.id = id;
  struct v4l2_ext_controls controls = {};
  controls.which = V4L2_CTRL_WHICH_CUR_VAL;
  controls.count = 1;
  controls.controls = &control;
  if (Restarting([&] { return ioctl(fd, VIDIOC_G_EXT_CTRLS, &controls); }) < 0) return Errno(env, errno);
  return Napi::BigInt::New(env, is64 ? static_cast<int64_t>(control.value64) : static_cast<int64_t>(control.value));
}

static Napi::Value SetControl(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  uint32_t id;
  int64_t value = 0;
  bool is64;
  if (!ArgInt32(info, 0, "fd", &fd) || !ArgUint32(info, 1, "id", &id) || !ArgInt64(info, 2, "value", &value) || !ArgBool(info, 3, "is64", &is64)) return env.Undefined();
  if (!is64 && (value < INT32_MIN || value > INT32_MAX)) {
    ThrowRangeError(env, "argument value must be a bigint from -(2n ** 31n) to 2n ** 31n - 1n for a 32-bit control");
    return env.Undefined();
  }
  struct v4l2_ext_control control = {};
  control.id = id;
  if (is64) {
    control.value64 = value;
  } else {
    control.value = static_cast<__s32>(value);
  }
  struct v4l2_ext_controls controls = {};
  controls.which = V4L2_CTRL_WHICH_CUR_VAL;
  controls.count = 1;
  controls.controls = &control;
  return Result(env, Restarting([&] { return ioctl(fd, VIDIOC_S_EXT_CTRLS, &controls); }));
}

void InitV4l2(Napi::Env env, Napi::Object exports) {
  Napi::Object v4l2 = Napi::Object::New(env);
  v4l2.Set("queryCapabilities", Napi::Function::New(env, QueryCapabilities));
  v4l2.Set("enumFormat", Napi::Function::New(env, EnumFormat));
  v4l2.Set("getFormat", Napi::Function::New(env, GetFormat));
  v4l2.Set("setFormat", Napi::Function::New(env, SetFormat));
  v4l2.Set("enumIo", Napi::Function::New(env, EnumIo));
  v4l2.Set("getIo", Napi::Function::New(env, GetIo));
  v4l2.Set("setIo", Napi::Function::New(env, SetIo));
  v4l2.Set("frameInterval", Napi::Function::New(env, FrameInterval));
  v4l2.Set("requestBuffers", Napi::Function::New(env, RequestBuffers));
  v4l2.Set("queryBuffer", Napi::Function::New(env, QueryBuffer));
  v4l2.Set("queueBuffer", Napi::Function::New(env, QueueBuffer));
  v4l2.Set("dequeueBuffer", Napi::Function::New(env, DequeueBuffer));
  v4l2.Set("exportBuffer", Napi::Function::New(env, ExportBuffer));
  v4l2.Set("stream", Napi::Function::New(env, Stream));
  v4l2.Set("queryControl", Napi::Function::New(env, QueryControl));
  v4l2.Set("queryMenu", Napi::Function::New(env, QueryMenu));
  v4l2.Set("getControl", Napi::Function::New(env, GetControl));
  v4l2.Set("setControl", Napi::Function::New(env, SetControl));
  v4l2.Freeze();
  exports.Set("v4l2", v4l2);

  Napi::Object constants = Constants(exports);
  DMABUF_CONSTANT(constants, VIDIOC_S_FMT);
  DMABUF_CONSTANT(constants, VIDIOC_TRY_FMT);
  DMABUF_CONSTANT(constants, V4L2_BUF_TYPE_VIDEO_CAPTURE);
  DMABUF_CONSTANT(constants, V4L2_BUF_TYPE_VIDEO_OUTPUT);
  DMABUF_CONSTANT(constants, V4L2_MEMORY_MMAP);
  DMABUF_CONSTANT(constants, V4L2_MEMORY_DMABUF);
  DMABUF_CONSTANT(constants, V4L2_FIELD_ANY);
  DMABUF_CONSTANT(constants, V4L2_FIELD_NONE);
  DMABUF_CONSTANT(constants, V4L2_FIELD_INTERLACED);
  DMABUF_CONSTANT(constants, V4L2_FIELD_TOP);
  DMABUF_CONSTANT(constants, V4L2_FIELD_BOTTOM);
  DMABUF_CONSTANT(constants, V4L2_FIELD_SEQ_TB);
  DMABUF_CONSTANT(constants, V4L2_FIELD_SEQ_BT);
  DMABUF_CONSTANT(constants, V4L2_FIELD_ALTERNATE);
  DMABUF_CONSTANT(constants, V4L2_FIELD_INTERLACED_TB);
  DMABUF_CONSTANT(constants, V4L2_FIELD_INTERLACED_BT);
  DMABUF_CONSTANT(constants, V4L2_CAP_VIDEO_CAPTURE);
  DMABUF_CONSTANT(constants, V4L2_CAP_VIDEO_OUTPUT);
  DMABUF_CONSTANT(constants, V4L2_CAP_VIDEO_OVERLAY);
  DMABUF_CONSTANT(constants, V4L2_CAP_VBI_CAPTURE);
  DMABUF_CONSTANT(constants, V4L2_CAP_VBI_OUTPUT);
  DMABUF_CONSTANT(constants, V4L2_CAP_SLICED_VBI_CAPTURE);
  DMABUF_CONSTANT(constants, V4L2_CAP_SLICED_VBI_OUTPUT);
  DMABUF_CONSTANT(constants, V4L2_CAP_RDS_CAPTURE);
  DMABUF_CONSTANT(constants, V4L2_CAP_VIDEO_OUTPUT_OVERLAY);
  DMABUF_CONSTANT(constants, V4L2_CAP_HW_FREQ_SEEK);
  DMABUF_CONSTANT(constants, V4L2_CAP_RDS_OUTPUT);
  DMABUF_CONSTANT(constants, V4L2_CAP_VIDEO_CAPTURE_MPLANE);
  DMABUF_CONSTANT(constants, V4L2_CAP_VIDEO_OUTPUT_MPLANE);
  DMABUF_CONSTANT(constants, V4L2_CAP_VIDEO_M2M_MPLANE);
  DMABUF_CONSTANT(constants, V4L2_CAP_VIDEO_M2M);
  DMABUF_CONSTANT(constants, V4L2_CAP_TUNER);
  DMABUF_CONSTANT(constants, V4L2_CAP_AUDIO);
  DMABUF_CONSTANT(constants, V4L2_CAP_RADIO);
  DMABUF_CONSTANT(constants, V4L2_CAP_MODULATOR);
  DMABUF_CONSTANT(constants, V4L2_CAP_SDR_CAPTURE);
  DMABUF_CONSTANT(constants, V4L2_CAP_EXT_PIX_FORMAT);
  DMABUF_CONSTANT(constants, V4L2_CAP_SDR_OUTPUT);
  DMABUF_CONSTANT(constants, V4L2_CAP_META_CAPTURE);
  DMABUF_CONSTANT(constants, V4L2_CAP_READWRITE);
  DMABUF_CONSTANT(constants, V4L2_CAP_STREAMING);
  DMABUF_CONSTANT(constants, V4L2_CAP_META_OUTPUT);
  DMABUF_CONSTANT(constants, V4L2_CAP_TOUCH);
  DMABUF_CONSTANT(constants, V4L2_CAP_IO_MC);
  DMABUF_CONSTANT(constants, V4L2_CAP_DEVICE_CAPS);
  DMABUF_CONSTANT(constants, V4L2_BUF_FLAG_MAPPED);
  DMABUF_CONSTANT(constants, V4L2_BUF_FLAG_QUEUED);
  DMABUF_CONSTANT(constants, V4L2_BUF_FLAG_DONE);
  DMABUF_CONSTANT(constants, V4L2_BUF_FLAG_KEYFRAME);
  DMABUF_CONSTANT(constants, V4L2_BUF_FLAG_PFRAME);
  DMABUF_CONSTANT(constants, V4L2_BUF_FLAG_BFRAME);
  DMABUF_CONSTANT(constants, V4L2_BUF_FLAG_ERROR);
  DMABUF_CONSTANT(constants, V4L2_BUF_FLAG_IN_REQUEST);
  DMABUF_CONSTANT(constants, V4L2_BUF_FLAG_TIMECODE);
  DMABUF_CONSTANT(constants, V4L2_BUF_FLAG_M2M_HOLD_CAPTURE_BUF);
  DMABUF_CONSTANT(constants, V4L2_BUF_FLAG_PREPARED);
  DMABUF_CONSTANT(constants, V4L2_BUF_FLAG_NO_CACHE_INVALIDATE);
  DMABUF_CONSTANT(constants, V4L2_BUF_FLAG_NO_CACHE_CLEAN);
  DMABUF_CONSTANT(constants, V4L2_BUF_FLAG_TIMESTAMP_MASK);
  DMABUF_CONSTANT(constants, V4L2_BUF_FLAG_TIMESTAMP_UNKNOWN);
  DMABUF_CONSTANT(constants, V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC);
  DMABUF_CONSTANT(constants, V4L2_BUF_FLAG_TIMESTAMP_COPY);
  DMABUF_CONSTANT(constants, V4L2_BUF_FLAG_TSTAMP_SRC_MASK);
  DMABUF_CONSTANT(constants, V4L2_BUF_FLAG_TSTAMP_SRC_EOF);
  DMABUF_CONSTANT(constants, V4L2_BUF_FLAG_TSTAMP_SRC_SOE);
  DMABUF_CONSTANT(constants, V4L2_BUF_FLAG_LAST);
  DMABUF_CONSTANT(constants, V4L2_BUF_FLAG_REQUEST_FD);
  DMABUF_CONSTANT(constants, V4L2_BUF_CAP_SUPPORTS_MMAP);
  DMABUF_CONSTANT(constants, V4L2_BUF_CAP_SUPPORTS_USERPTR);
  DMABUF_CONSTANT(constants, V4L2_BUF_CAP_SUPPORTS_DMABUF);
  DMABUF_CONSTANT(constants, V4L2_BUF_CAP_SUPPORTS_REQUESTS);
  DMABUF_CONSTANT(constants, V4L2_BUF_CAP_SUPPORTS_ORPHANED_BUFS);
  DMABUF_CONSTANT(constants, V4L2_BUF_CAP_SUPPORTS_M2M_HOLD_CAPTURE_BUF);
  DMABUF_CONSTANT(constants, V4L2_BUF_CAP_SUPPORTS_MMAP_CACHE_HINTS);
  DMABUF_CONSTANT(constants, V4L2_FMT_FLAG_COMPRESSED);
  DMABUF_CONSTANT(constants, V4L2_FMT_FLAG_EMULATED);
  DMABUF_CONSTANT(constants, V4L2_INPUT_TYPE_TUNER);
  DMABUF_CONSTANT(constants, V4L2_INPUT_TYPE_CAMERA);
  DMABUF_CONSTANT(constants, V4L2_INPUT_TYPE_TOUCH);
  DMABUF_CONSTANT(constants, V4L2_OUTPUT_TYPE_MODULATOR);
  DMABUF_CONSTANT(constants, V4L2_OUTPUT_TYPE_ANALOG);
  DMABUF_CONSTANT(constants, V4L2_OUTPUT_TYPE_ANALOGVGAOVERLAY);
  DMABUF_CONSTANT(constants, V4L2_CTRL_FLAG_NEXT_CTRL);
  DMABUF_CONSTANT(constants, V4L2_CTRL_FLAG_NEXT_COMPOUND);
  DMABUF_CONSTANT(constants, V4L2_CTRL_FLAG_DISABLED);
  DMABUF_CONSTANT(constants, V4L2_CTRL_FLAG_GRABBED);
  DMABUF_CONSTANT(constants, V4L2_CTRL_FLAG_READ_ONLY);
  DMABUF_CONSTANT(constants, V4L2_CTRL_FLAG_UPDATE);
  DMABUF_CONSTANT(constants, V4L2_CTRL_FLAG_INACTIVE);
  DMABUF_CONSTANT(constants, V4L2_CTRL_FLAG_SLIDER);
  DMABUF_CONSTANT(constants, V4L2_CTRL_FLAG_WRITE_ONLY);
  DMABUF_CONSTANT(constants, V4L2_CTRL_FLAG_VOLATILE);
  DMABUF_CONSTANT(constants, V4L2_CTRL_FLAG_HAS_PAYLOAD);
  DMABUF_CONSTANT(constants, V4L2_CTRL_FLAG_EXECUTE_ON_WRITE);
  DMABUF_CONSTANT(constants, V4L2_CTRL_FLAG_MODIFY_LAYOUT);
  DMABUF_CONSTANT(constants, V4L2_CTRL_TYPE_INTEGER);
  DMABUF_CONSTANT(constants, V4L2_CTRL_TYPE_BOOLEAN);
  DMABUF_CONSTANT(constants, V4L2_CTRL_TYPE_MENU);
  DMABUF_CONSTANT(constants, V4L2_CTRL_TYPE_BUTTON);
  DMABUF_CONSTANT(constants, V4L2_CTRL_TYPE_INTEGER64);
  DMABUF_CONSTANT(constants, V4L2_CTRL_TYPE_CTRL_CLASS);
  DMABUF_CONSTANT(constants, V4L2_CTRL_TYPE_STRING);
  DMABUF_CONSTANT(constants, V4L2_CTRL_TYPE_BITMASK);
  DMABUF_CONSTANT(constants, V4L2_CTRL_TYPE_INTEGER_MENU);
}

}  // namespace dmabuf
