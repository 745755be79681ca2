{
  "variables": {
    "has_drm_headers": "<!(test -f /usr/include/libdrm/drm_mode.h && echo 1 || echo 0)"
  },
  "targets": [
    {
      "target_name": "dmabuf_native",
      "sources": [
        "native/addon.cc",
        "native/system.cc",
        "native/fd.cc",
        "native/memfd.cc",
        "native/udmabuf.cc",
        "native/dma_heap.cc",
        "native/dma_buf.cc",
        "native/sync_file.cc",
        "native/mapping.cc",
        "native/poller.cc",
        "native/fd_pass.cc",
        "native/dmabuf_test.cc",
        "native/drm.cc",
        "native/v4l2.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=9", "NODE_ADDON_API_DISABLE_CPP_EXCEPTIONS", "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS"],
      "cflags_cc": ["-std=c++17", "-fno-exceptions", "-Wall", "-Wextra", "-Werror=return-type"],
      "conditions": [
        ["has_drm_headers==1", {
          "defines": ["DMABUF_HAVE_DRM_HEADERS"],
          "include_dirs": ["/usr/include/libdrm"]
        }]
      ]
    }
  ]
}
