// /dev/dma_heap/<name>: DMA_HEAP_IOCTL_ALLOC.
#include <fcntl.h>
#include <linux/dma-heap.h>
#include <sys/ioctl.h>

#include "addon.h"

namespace dmabuf {

static Napi::Value HeapAllocate(const Napi::CallbackInfo& info) {
  int32_t heap;
  uint64_t length;
  uint32_t fdFlags, heapFlags;
  if (!ArgInt32(info, 0, "heap", &heap) || !ArgSize(info, 1, "length", &length) ||
      !ArgUint32(info, 2, "fdFlags", &fdFlags) || !ArgUint32(info, 3, "heapFlags", &heapFlags)) {
    return info.Env().Undefined();
  }
  struct dma_heap_allocation_data data = {};
  data.len = length;
  data.fd_flags = fdFlags;
  data.heap_flags = heapFlags;
  if (ioctl(heap, DMA_HEAP_IOCTL_ALLOC, &data) < 0) return Errno(info.Env(), errno);
  return Napi::Number::New(info.Env(), data.fd);
}

void InitDmaHeap(Napi::Env env, Napi::Object exports) {
  exports.Set("heapAllocate", Napi::Function::New(env, HeapAllocate));
}

}  // namespace dmabuf
