/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * dmabuf_test: a user interface to the kernel's dynamic dma-buf machinery,
 * for tests. /dev/dmabuf_test exports buffers (as a dynamic or a static
 * exporter), attaches to any dma-buf as a dynamic or static importer, and
 * makes fences. Everything an open file creates belongs to it and is undone
 * when it closes.
 *
 * Common errors of every ioctl:
 *   ENOTTY  unknown command (or a known number with the wrong size)
 *   EFAULT  the argument could not be read or written
 *   EINVAL  unknown flags, or a padding field that is not zero
 *   ENOENT  an id that names nothing of that kind in this file
 *   EINTR   interrupted while waiting for a reservation lock
 * A call that fails leaves nothing behind: no object, fd, mapping, pin,
 * move or fence.
 *
 * Events: read(2) returns whole struct dbt_event records (EINVAL for a
 * buffer smaller than one, EAGAIN when none is queued and the file is
 * non-blocking); poll(2) reports EPOLLIN while one is queued.
 *
 * /sys/class/misc/dmabuf_test/features names, one a line, what the running
 * kernel's dma-buf core does that changes what the counters show:
 *   core_sgt_cache       the core caches mappings: a static exporter's
 *                        first mapping (cache_sgt_mapping), and a dynamic
 *                        importer of a static exporter or a static importer
 *                        of a dynamic one is mapped at attach (the latter
 *                        also pinned) until detach. Without it every map
 *                        reaches the exporter, and a static importer of a
 *                        dynamic exporter pins it for each mapping.
 *   dynamic_map_pins     a dynamic importer's mapping pins a dynamic
 *                        exporter (CONFIG_DMABUF_MOVE_NOTIFY=n)
 *   invalidate_mappings  the importer callback is invalidate_mappings (it
 *                        was move_notify); same meaning
 *   revocable            DBT_ATTACH_REVOCABLE is available
 */
#ifndef _UAPI_DMABUF_TEST_H
#define _UAPI_DMABUF_TEST_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define DBT_MAX_PAGES 16384

/*
 * Exporter with pin/unpin ops that may move; without it, a static exporter
 * (with cache_sgt_mapping where the core has it).
 */
#define DBT_EXPORT_DYNAMIC (1 << 0)

/*
 * DBT_IOCTL_EXPORT: a buffer of @pages zeroed pages, as a dma-buf fd
 * (O_RDWR, close-on-exec) that supports mmap(MAP_SHARED).
 * EINVAL: @pages is 0 or above DBT_MAX_PAGES. ENOMEM.
 */
struct dbt_export {
	__u32 pages;
	__u32 flags;
	__s32 fd;	/* out */
	__u32 id;	/* out: names the exporter in this file */
};

/* The old pages stay allocated until the returned move fence is signalled. */
#define DBT_MOVE_FENCED (1 << 0)
/*
 * No move: only invalidate every attachment, as an exporter revoking
 * access does, even while pinned. Not counted in @moves.
 */
#define DBT_MOVE_REVOKE (1 << 1)

/*
 * DBT_IOCTL_MOVE: migrate a dynamic exporter's contents to new pages under
 * the reservation lock, zap CPU mappings, and invalidate every dynamic
 * attachment (dma_buf_move_notify() or dma_buf_invalidate_mappings()).
 * With DBT_MOVE_FENCED a fence is added with DMA_RESV_USAGE_KERNEL.
 * EBUSY: the buffer is pinned (not for DBT_MOVE_REVOKE). EINVAL: a static
 * exporter cannot move, or both flags.
 */
struct dbt_move {
	__u32 id;
	__u32 flags;
	__u32 fence_id;	/* out: with DBT_MOVE_FENCED, for DBT_IOCTL_FENCE_SIGNAL; else 0 */
	__u32 pad;
};

/* DBT_IOCTL_EXPORTER_INFO: what the exporter's ops were asked to do. */
struct dbt_exporter_info {
	__u32 id;
	__u32 flags;		/* out: DBT_EXPORT_* */
	__u32 pages;		/* out */
	__u32 pin_count;	/* out: pins not yet unpinned */
	__u32 attachments;	/* out: attached now */
	__u32 held_moves;	/* out: fenced moves whose old pages are still held */
	__u64 attach_calls;	/* out: counters since export */
	__u64 detach_calls;
	__u64 pin_calls;
	__u64 unpin_calls;
	__u64 map_calls;
	__u64 unmap_calls;
	__u64 moves;
};

/* Attach with importer ops that have move_notify (invalidate_mappings). */
#define DBT_ATTACH_DYNAMIC (1 << 0)
/*
 * With DBT_ATTACH_DYNAMIC only: an importer that honours a revoke, as
 * dma_buf_attach_revocable() asks of it. When invalidated it unmaps and
 * drops its pins at once, inside the callback, and stays revoked: MAP and
 * PIN are then ENODEV until it is detached.
 */
#define DBT_ATTACH_REVOCABLE (1 << 1)

/*
 * DBT_IOCTL_ATTACH: attach the test device to any dma-buf fd.
 * EBADF: @fd is not open. EINVAL: @fd is not a dma-buf, or
 * DBT_ATTACH_REVOCABLE without DBT_ATTACH_DYNAMIC. EOPNOTSUPP:
 * DBT_ATTACH_REVOCABLE on a kernel without dma_buf_attach_revocable()
 * (no "revocable" feature). Errors of the exporter's attach op and of the
 * core's mapping of mismatched importers (for example EINTR) are returned
 * as they are.
 */
struct dbt_attach {
	__s32 fd;
	__u32 flags;
	__u32 id;	/* out: names the attachment in this file */
	__u32 pad;
};

/* DBT_IOCTL_DETACH, _UNMAP, _PIN, _UNPIN: an attachment by id. */
struct dbt_attachment_id {
	__u32 id;
	__u32 pad;
};

/* Directions, as enum dma_data_direction. */
#define DBT_DIR_BIDIRECTIONAL 0
#define DBT_DIR_TO_DEVICE 1
#define DBT_DIR_FROM_DEVICE 2

/*
 * DBT_IOCTL_MAP: map the attachment for the device, with the reservation
 * lock a dynamic importer must hold, or through the _unlocked calls for a
 * static one (which also wait for DMA_RESV_USAGE_KERNEL fences).
 * EBUSY: already mapped, or (from the core) a cached mapping has another
 * direction. ENODEV: the attachment was revoked. ENOMEM. Errors of the
 * exporter's map op as they are.
 * DBT_IOCTL_UNMAP: EINVAL when nothing is mapped (a revoke unmaps).
 * DBT_IOCTL_DETACH unmaps and unpins first, as a driver tearing down would.
 * DBT_IOCTL_PIN: EINVAL for a static importer (the core allows dynamic ones
 * only). ENODEV: the attachment was revoked. EOVERFLOW: too many pins.
 * DBT_IOCTL_UNPIN: EINVAL when the attachment holds no pin.
 */
struct dbt_map {
	__u32 id;
	__u32 direction;
	__u32 nents;	/* out: DMA segments */
	__u32 pad;
	__u64 bytes;	/* out: their total length */
};

#define DBT_STATE_MAPPED (1 << 0)
/* Invalidated while mapped: the importer must remap. */
#define DBT_STATE_INVALIDATED (1 << 1)
/* The core holds a cached mapping (attach->sgt; never without core_sgt_cache). */
#define DBT_STATE_CORE_CACHED (1 << 2)
/* A DBT_ATTACH_REVOCABLE attachment was invalidated and gave the buffer up. */
#define DBT_STATE_REVOKED (1 << 3)
/* dma_buf_attach_revocable() is true for it (never without "revocable"). */
#define DBT_STATE_CORE_REVOCABLE (1 << 4)
/*
 * The buffer's exporter is dynamic (it has a pin op), whoever exported it:
 * how the core treats an attachment depends on it, and userspace cannot
 * otherwise tell a GPU's or camera's exporter from a static one.
 */
#define DBT_STATE_EXPORTER_DYNAMIC (1 << 5)

/* DBT_IOCTL_ATTACHMENT_INFO */
struct dbt_attachment_info {
	__u32 id;
	__u32 flags;	/* out: DBT_ATTACH_* */
	__u32 state;	/* out: DBT_STATE_* */
	__u32 pins;	/* out: pins this attachment holds */
	__u32 nents;	/* out: of the current mapping */
	__u32 pad;
	__u64 bytes;	/* out: of the current mapping */
	__u64 move_notifies;	/* out: invalidations, revokes included */
	__u64 size;	/* out: the dma-buf's size */
};

/* Usages, as enum dma_resv_usage. */
#define DBT_USAGE_KERNEL 0
#define DBT_USAGE_WRITE 1
#define DBT_USAGE_READ 2
#define DBT_USAGE_BOOKKEEP 3

/* Add the fence to @dmabuf_fd's reservation object with @usage. */
#define DBT_FENCE_ADD (1 << 0)
/* Return a sync_file fd for the fence. */
#define DBT_FENCE_SYNC_FILE (1 << 1)

/*
 * DBT_IOCTL_FENCE_CREATE: an unsignalled fence, signalled by
 * DBT_IOCTL_FENCE_SIGNAL or, with ECANCELED, when this file closes.
 * EBADF / EINVAL: @dmabuf_fd is not open / not a dma-buf (with DBT_FENCE_ADD).
 * EINVAL: @usage unknown, or set without DBT_FENCE_ADD.
 */
struct dbt_fence_create {
	__s32 dmabuf_fd;
	__u32 usage;
	__u32 flags;
	__u32 id;		/* out */
	__s32 sync_file_fd;	/* out: -1 without DBT_FENCE_SYNC_FILE */
	__u32 pad;
};

/*
 * DBT_IOCTL_FENCE_SIGNAL: signal with @error 0, or a negative errno the
 * fence then carries. The id is gone afterwards. EINVAL: @error out of
 * range. ENOENT: no such fence (or already signalled).
 */
struct dbt_fence_signal {
	__u32 id;
	__s32 error;
};

/* An attachment was invalidated (move_notify or invalidate_mappings). */
#define DBT_EVENT_MOVE_NOTIFY 1
/* Events were dropped because the queue was full: @id says how many. */
#define DBT_EVENT_OVERFLOW 2

struct dbt_event {
	__u32 type;
	__u32 id;	/* the attachment */
	__u64 sequence;	/* counts every event of the file, dropped ones too */
};

#define DBT_IOC_MAGIC 0xDB

#define DBT_IOCTL_EXPORT _IOWR(DBT_IOC_MAGIC, 0x00, struct dbt_export)
#define DBT_IOCTL_MOVE _IOWR(DBT_IOC_MAGIC, 0x01, struct dbt_move)
#define DBT_IOCTL_EXPORTER_INFO _IOWR(DBT_IOC_MAGIC, 0x02, struct dbt_exporter_info)
#define DBT_IOCTL_ATTACH _IOWR(DBT_IOC_MAGIC, 0x03, struct dbt_attach)
#define DBT_IOCTL_DETACH _IOW(DBT_IOC_MAGIC, 0x04, struct dbt_attachment_id)
#define DBT_IOCTL_MAP _IOWR(DBT_IOC_MAGIC, 0x05, struct dbt_map)
#define DBT_IOCTL_UNMAP _IOW(DBT_IOC_MAGIC, 0x06, struct dbt_attachment_id)
#define DBT_IOCTL_PIN _IOW(DBT_IOC_MAGIC, 0x07, struct dbt_attachment_id)
#define DBT_IOCTL_UNPIN _IOW(DBT_IOC_MAGIC, 0x08, struct dbt_attachment_id)
#define DBT_IOCTL_ATTACHMENT_INFO _IOWR(DBT_IOC_MAGIC, 0x09, struct dbt_attachment_info)
#define DBT_IOCTL_FENCE_CREATE _IOWR(DBT_IOC_MAGIC, 0x0a, struct dbt_fence_create)
#define DBT_IOCTL_FENCE_SIGNAL _IOW(DBT_IOC_MAGIC, 0x0b, struct dbt_fence_signal)

#endif /* _UAPI_DMABUF_TEST_H */
