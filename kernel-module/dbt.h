/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What the parts of dmabuf_test share: an open file's objects and the calls
 * one part makes into another.
 *
 * Locking: an open file's objects are serialised by its mutex (fence
 * signalling excepted, so that a map waiting for a fence can be released by
 * another thread). The reservation lock nests inside it and a buffer's
 * pages_lock inside that; pages_lock is also taken under mmap_lock by the
 * fault handler, which is why no user copy happens under either.
 */
#ifndef _DBT_H
#define _DBT_H

#include <linux/dma-buf.h>
#include <linux/dma-fence.h>
#include <linux/fs.h>
#include <linux/mutex.h>
#include <linux/poll.h>
#include <linux/spinlock.h>
#include <linux/types.h>
#include <linux/wait.h>
#include <linux/xarray.h>

#include "dbt_compat.h"
#include "uapi/dmabuf_test.h"

#define DBT_EVENT_RING 256

/* The importer: a device with a DMA mask, so that exporters can map for it. */
extern struct platform_device *dbt_pdev;

struct dbt_pages {
	struct page **pages;
	unsigned int count;
};

struct dbt_buffer {
	struct dma_buf *dmabuf;
	bool dynamic;
	/* Keeps a fault or a map from reading the page array mid-move. */
	struct mutex pages_lock;
	struct dbt_pages backing;
	/* Under the reservation lock. */
	unsigned int pin_count;
	atomic_t attachments;
	atomic_t held_moves;
	atomic64_t attach_calls;
	atomic64_t detach_calls;
	atomic64_t pin_calls;
	atomic64_t unpin_calls;
	atomic64_t map_calls;
	atomic64_t unmap_calls;
	atomic64_t moves;
};

struct dbt_file {
	struct mutex lock;		/* serialises the objects: see Locking */
	struct xarray exporters;	/* each holds a dma_buf reference */
	struct xarray attachments;
	struct xarray fences;		/* unsignalled, each holds a reference */
	u64 fence_context;
	atomic64_t fence_seqno;

	/* move_notify runs under other locks: the queue has its own. */
	spinlock_t events_lock;
	struct dbt_event events[DBT_EVENT_RING];
	unsigned int events_head;
	unsigned int events_count;
	u32 events_dropped;
	u64 events_sequence;
	wait_queue_head_t events_wait;
	/* Readers one at a time: what one peeks is still the head to consume. */
	struct mutex read_lock;
};

struct dbt_attachment {
	struct dbt_file *file;
	u32 id;
	bool dynamic;
	struct dma_buf *dmabuf;
	struct dma_buf_attachment *attach;
	bool revocable;
	/*
	 * Written under the reservation lock for dynamic importers: the
	 * invalidation callback of a revocable one unmaps and unpins.
	 */
	struct sg_table *sgt;
	enum dma_data_direction dir;
	u32 nents;
	u64 bytes;
	u32 pins;
	bool invalidated;
	bool revoked;
	u64 move_notifies;
};

struct dbt_fence {
	struct dma_fence base;
	spinlock_t lock;	/* the fence's own, for dma_fence_init() */
	struct file *owner;	/* holds the module: see dbt_fence_release() */
	/* A fenced move keeps the old pages, and the buffer, until it signals. */
	struct dbt_pages old;
	struct dbt_buffer *moved;
};

/* dbt_exporter.c */
int dbt_pages_alloc(struct dbt_pages *p, unsigned int count);
void dbt_pages_free(struct dbt_pages *p);
int dbt_ioctl_export(struct dbt_file *f, void __user *uarg);
int dbt_ioctl_move(struct dbt_file *f, void __user *uarg);
int dbt_ioctl_exporter_info(struct dbt_file *f, void __user *uarg);

/* dbt_importer.c */
void dbt_detach(struct dbt_file *f, struct dbt_attachment *a);
int dbt_ioctl_attach(struct dbt_file *f, void __user *uarg);
int dbt_ioctl_detach(struct dbt_file *f, void __user *uarg);
int dbt_ioctl_map(struct dbt_file *f, void __user *uarg);
int dbt_ioctl_unmap(struct dbt_file *f, void __user *uarg);
int dbt_ioctl_pin(struct dbt_file *f, void __user *uarg, bool pin);
int dbt_ioctl_attachment_info(struct dbt_file *f, void __user *uarg);

/* dbt_fence.c */
struct dbt_fence *dbt_fence_alloc(struct dbt_file *f);
void dbt_fence_signal(struct dbt_fence *fence, int error);
int dbt_ioctl_fence_create(struct dbt_file *f, void __user *uarg);
int dbt_ioctl_fence_signal(struct dbt_file *f, void __user *uarg);

/* dbt_events.c */
void dbt_queue_event(struct dbt_file *f, u32 type, u32 id);
ssize_t dbt_read(struct file *file, char __user *ubuf, size_t count,
		 loff_t *ppos);
__poll_t dbt_poll(struct file *file, poll_table *wait);

#endif /* _DBT_H */
