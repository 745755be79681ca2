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

#include <napi.h>

namespace dmabuf {

void InitSystem(Napi::Env env, Napi::Object exports);

}  // namespace dmabuf

#endif  // DMABUF_NATIVE_ADDON_H_
