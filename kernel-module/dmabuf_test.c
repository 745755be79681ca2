// SPDX-License-Identifier: GPL-2.0
/*
 * dmabuf_test: gives userspace the parts of dma-buf that only drivers reach,
 * so that tests can drive them: a dynamic (pin/unpin, movable) or static
 * exporter, a dynamic, revocable or static importer that attaches to any
 * dma-buf, and fences added to reservation objects. The uapi header
 * documents each ioctl and its errors; dbt_compat.h holds what differs
 * between kernels.
 *
 * Locking: an open file's objects are serialised by its mutex (fence
 * signalling excepted, so that a map waiting for a fence can be released by
 * another thread). The reservation lock nests inside it and a buffer's
 * pages_lock inside that; pages_lock is also taken under mmap_lock by the
 * fault handler, which is why no user copy happens under either.
 */
#include <linux/anon_inodes.h>
#include <linux/delay.h>
#include <linux/dma-buf.h>
#include <linux/dma-fence.h>
#include <linux/dma-mapping.h>
#include <linux/dma-resv.h>
#include <linux/file.h>
#include <linux/highmem.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/platform_device.h>
#include <linux/poll.h>
#include <linux/scatterlist.h>
#include <linux/slab.h>
#include <linux/sync_file.h>
#include <linux/uaccess.h>
#include <linux/xarray.h>

#include "dbt_compat.h"
#include "uapi/dmabuf_test.h"

#define DBT_EVENT_RING 256

/* The importer: a device with a DMA mask, so that exporters can map for it. */
static struct platform_device *dbt_pdev;

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
	struct mutex lock;
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
	spinlock_t lock;
	struct file *owner;	/* holds the module: see dbt_fence_release() */
	/* A fenced move keeps the old pages, and the buffer, until it signals. */
	struct dbt_pages old;
	struct dbt_buffer *moved;
};

static void dbt_pages_free(struct dbt_pages *p)
{
	unsigned int i;

	for (i = 0; i < p->count; i++)
		put_page(p->pages[i]);
	kvfree(p->pages);
	p->pages = NULL;
	p->count = 0;
}

static int dbt_pages_alloc(struct dbt_pages *p, unsigned int count)
{
	unsigned int i;

	p->pages = kvcalloc(count, sizeof(*p->pages), GFP_KERNEL);
	if (!p->pages)
		return -ENOMEM;
	for (i = 0; i < count; i++) {
		p->pages[i] = alloc_page(GFP_HIGHUSER | __GFP_ZERO);
		if (!p->pages[i]) {
			p->count = i;
			dbt_pages_free(p);
			return -ENOMEM;
		}
	}
	p->count = count;
	return 0;
}

/* Events */

static void dbt_queue_event(struct dbt_file *f, u32 type, u32 id)
{
	struct dbt_event *event;

	spin_lock(&f->events_lock);
	f->events_sequence++;
	if (f->events_count == DBT_EVENT_RING) {
		f->events_dropped++;
	} else {
		event = &f->events[(f->events_head + f->events_count) % DBT_EVENT_RING];
		event->type = type;
		event->id = id;
		event->sequence = f->events_sequence;
		f->events_count++;
	}
	spin_unlock(&f->events_lock);
	wake_up_interruptible(&f->events_wait);
}

static bool dbt_events_ready(struct dbt_file *f)
{
	bool ready;

	spin_lock(&f->events_lock);
	ready = f->events_count || f->events_dropped;
	spin_unlock(&f->events_lock);
	return ready;
}

/* The next event without consuming it; false when there is none. */
static bool dbt_peek_event(struct dbt_file *f, struct dbt_event *event)
{
	bool found = true;

	spin_lock(&f->events_lock);
	if (f->events_count) {
		*event = f->events[f->events_head];
	} else if (f->events_dropped) {
		event->type = DBT_EVENT_OVERFLOW;
		event->id = f->events_dropped;
		event->sequence = f->events_sequence;
	} else {
		found = false;
	}
	spin_unlock(&f->events_lock);
	return found;
}

static void dbt_consume_event(struct dbt_file *f, const struct dbt_event *event)
{
	spin_lock(&f->events_lock);
	if (event->type == DBT_EVENT_OVERFLOW) {
		f->events_dropped -= event->id;
	} else {
		f->events_head = (f->events_head + 1) % DBT_EVENT_RING;
		f->events_count--;
	}
	spin_unlock(&f->events_lock);
}

static ssize_t dbt_read(struct file *file, char __user *ubuf, size_t count,
			loff_t *ppos)
{
	struct dbt_file *f = file->private_data;
	struct dbt_event event;
	size_t done = 0;
	ssize_t ret;

	if (count < sizeof(event))
		return -EINVAL;
	if (mutex_lock_interruptible(&f->read_lock))
		return -ERESTARTSYS;
	while (!dbt_events_ready(f)) {
		if (file->f_flags & O_NONBLOCK) {
			ret = -EAGAIN;
			goto out_unlock;
		}
		ret = wait_event_interruptible(f->events_wait, dbt_events_ready(f));
		if (ret)
			goto out_unlock;
	}
	/* Readers are serialised, so the peeked event is still the head. */
	while (done + sizeof(event) <= count && dbt_peek_event(f, &event)) {
		if (copy_to_user(ubuf + done, &event, sizeof(event)))
			break;
		dbt_consume_event(f, &event);
		done += sizeof(event);
	}
	ret = done ? done : -EFAULT;
out_unlock:
	mutex_unlock(&f->read_lock);
	return ret;
}

static __poll_t dbt_poll(struct file *file, poll_table *wait)
{
	struct dbt_file *f = file->private_data;

	poll_wait(file, &f->events_wait, wait);
	return dbt_events_ready(f) ? EPOLLIN | EPOLLRDNORM : 0;
}

/* Fences */

static const char *dbt_fence_driver_name(struct dma_fence *fence)
{
	return KBUILD_MODNAME;
}

static const char *dbt_fence_timeline_name(struct dma_fence *fence)
{
	return "dmabuf_test";
}

/*
 * A fence can outlive every file of the module (in a sync_file, in another
 * buffer's reservation object), and its ops live here: each fence holds the
 * module, so that rmmod fails with EBUSY rather than leave its ops dangling.
 * The reference is an anonymous file's, whose f_op owner is this module:
 * module_put() in this release op would be followed by the rest of the op,
 * module code run with nothing holding the module, whereas the VFS drops a
 * file's owner in its own code, after fput() has deferred the final put to
 * task work or a workqueue and this op has returned.
 */
static const struct file_operations dbt_fence_owner_fops = {
	.owner = THIS_MODULE,
};

static void dbt_fence_release(struct dma_fence *fence)
{
	struct file *owner = container_of(fence, struct dbt_fence, base)->owner;

	dma_fence_free(fence);
	fput(owner);
}

static const struct dma_fence_ops dbt_fence_ops = {
	.get_driver_name = dbt_fence_driver_name,
	.get_timeline_name = dbt_fence_timeline_name,
	.release = dbt_fence_release,
};

static struct dbt_fence *dbt_fence_alloc(struct dbt_file *f)
{
	struct dbt_fence *fence;

	fence = kzalloc_obj(*fence);
	if (!fence)
		return NULL;
	fence->owner = anon_inode_getfile("[dmabuf_test_fence]",
					  &dbt_fence_owner_fops, NULL, O_RDONLY);
	if (IS_ERR(fence->owner)) {
		kfree(fence);
		return NULL;
	}
	spin_lock_init(&fence->lock);
	dma_fence_init(&fence->base, &dbt_fence_ops, &fence->lock,
		       f->fence_context, atomic64_inc_return(&f->fence_seqno));
	return fence;
}

/* The caller took the fence out of its file's table (or never put it in). */
static void dbt_fence_signal(struct dbt_fence *fence, int error)
{
	if (error)
		dma_fence_set_error(&fence->base, error);
	dma_fence_signal(&fence->base);
	if (fence->moved) {
		dbt_pages_free(&fence->old);
		atomic_dec(&fence->moved->held_moves);
		dma_buf_put(fence->moved->dmabuf);
		fence->moved = NULL;
	}
	dma_fence_put(&fence->base);
}

/* Exporter */

static int dbt_attach_op(struct dma_buf *dmabuf,
			 struct dma_buf_attachment *attach)
{
	struct dbt_buffer *buf = dmabuf->priv;

	atomic64_inc(&buf->attach_calls);
	atomic_inc(&buf->attachments);
	return 0;
}

static void dbt_detach_op(struct dma_buf *dmabuf,
			  struct dma_buf_attachment *attach)
{
	struct dbt_buffer *buf = dmabuf->priv;

	atomic64_inc(&buf->detach_calls);
	atomic_dec(&buf->attachments);
}

static int dbt_pin_op(struct dma_buf_attachment *attach)
{
	struct dbt_buffer *buf = attach->dmabuf->priv;

	dma_resv_assert_held(attach->dmabuf->resv);
	buf->pin_count++;
	atomic64_inc(&buf->pin_calls);
	return 0;
}

static void dbt_unpin_op(struct dma_buf_attachment *attach)
{
	struct dbt_buffer *buf = attach->dmabuf->priv;

	dma_resv_assert_held(attach->dmabuf->resv);
	/* The core pairs unpins with pins: an underflow is a core bug. */
	if (!WARN_ON_ONCE(!buf->pin_count))
		buf->pin_count--;
	atomic64_inc(&buf->unpin_calls);
}

/* A mapping holds its pages, so a move can drop the buffer's references. */
static void dbt_put_sgt_pages(struct sg_table *sgt)
{
	struct sg_page_iter iter;

	for_each_sgtable_page(sgt, &iter, 0)
		put_page(sg_page_iter_page(&iter));
}

static struct sg_table *dbt_map_op(struct dma_buf_attachment *attach,
				   enum dma_data_direction dir)
{
	struct dbt_buffer *buf = attach->dmabuf->priv;
	struct sg_table *sgt;
	unsigned int i;
	int ret;

	sgt = kzalloc_obj(*sgt);
	if (!sgt)
		return ERR_PTR(-ENOMEM);
	mutex_lock(&buf->pages_lock);
	ret = sg_alloc_table_from_pages(sgt, buf->backing.pages,
					buf->backing.count, 0,
					(unsigned long)buf->backing.count << PAGE_SHIFT,
					GFP_KERNEL);
	if (!ret) {
		for (i = 0; i < buf->backing.count; i++)
			get_page(buf->backing.pages[i]);
	}
	mutex_unlock(&buf->pages_lock);
	if (ret)
		goto out_free_sgt;
	/*
	 * Two attachments on one device may map the same pages at once, which
	 * DMA-API debugging reports as overlapping mappings unless the map
	 * skips CPU cache maintenance. It does, as drm_gem_map_dma_buf() does:
	 * the importer device never really does DMA, so there is no cache
	 * state to hand over.
	 */
	ret = dma_map_sgtable(attach->dev, sgt, dir, DMA_ATTR_SKIP_CPU_SYNC);
	if (ret)
		goto out_put_pages;
	atomic64_inc(&buf->map_calls);
	return sgt;

out_put_pages:
	dbt_put_sgt_pages(sgt);
	sg_free_table(sgt);
out_free_sgt:
	kfree(sgt);
	return ERR_PTR(ret);
}

static void dbt_unmap_op(struct dma_buf_attachment *attach,
			 struct sg_table *sgt, enum dma_data_direction dir)
{
	struct dbt_buffer *buf = attach->dmabuf->priv;

	dma_unmap_sgtable(attach->dev, sgt, dir, DMA_ATTR_SKIP_CPU_SYNC);
	dbt_put_sgt_pages(sgt);
	sg_free_table(sgt);
	kfree(sgt);
	atomic64_inc(&buf->unmap_calls);
}

static void dbt_release_op(struct dma_buf *dmabuf)
{
	struct dbt_buffer *buf = dmabuf->priv;

	dbt_pages_free(&buf->backing);
	mutex_destroy(&buf->pages_lock);
	kfree(buf);
}

/*
 * Test only: a fault sleeps this long between choosing its page and mapping
 * it, to widen the window in which a concurrent move could land, so that the
 * suite can show the ordering below holds (move-race.test.ts sets it).
 */
static unsigned int fault_delay_us;
module_param(fault_delay_us, uint, 0644);
MODULE_PARM_DESC(fault_delay_us,
		 "test only: microseconds a CPU fault waits between choosing and mapping its page (default 0)");

/*
 * Faulting (not inserting at mmap) lets a move zap CPU mappings. The PTE is
 * installed here, under pages_lock: a page handed back for the core to map
 * after the lock is dropped could be copied away by a move in between, and
 * the stale PTE would then take the writes that follow.
 */
static vm_fault_t dbt_fault(struct vm_fault *vmf)
{
	struct dbt_buffer *buf = vmf->vma->vm_private_data;
	vm_fault_t ret = VM_FAULT_SIGBUS;
	unsigned int delay_us = READ_ONCE(fault_delay_us);
	int err;

	mutex_lock(&buf->pages_lock);
	if (vmf->pgoff < buf->backing.count) {
		/* pages_lock is a mutex: sleeping here only holds off a move. */
		if (delay_us)
			fsleep(delay_us);
		err = vm_insert_page(vmf->vma, vmf->address,
				     buf->backing.pages[vmf->pgoff]);
		/* EBUSY: another thread's fault mapped the page first. */
		ret = !err || err == -EBUSY ? VM_FAULT_NOPAGE : vmf_error(err);
	}
	mutex_unlock(&buf->pages_lock);
	return ret;
}

static const struct vm_operations_struct dbt_vm_ops = {
	.fault = dbt_fault,
};

static int dbt_mmap_op(struct dma_buf *dmabuf, struct vm_area_struct *vma)
{
	if (!(vma->vm_flags & VM_SHARED))
		return -EINVAL;
	/* VM_MIXEDMAP: vm_insert_page() from the fault handler needs it set here. */
	dbt_vm_flags_set(vma, VM_MIXEDMAP | VM_DONTEXPAND | VM_DONTDUMP);
	vma->vm_ops = &dbt_vm_ops;
	vma->vm_private_data = dmabuf->priv;
	return 0;
}

static const struct dma_buf_ops dbt_dynamic_ops = {
	.attach = dbt_attach_op,
	.detach = dbt_detach_op,
	.pin = dbt_pin_op,
	.unpin = dbt_unpin_op,
	.map_dma_buf = dbt_map_op,
	.unmap_dma_buf = dbt_unmap_op,
	.release = dbt_release_op,
	.mmap = dbt_mmap_op,
};

/* Where the core can cache a mapping, asks it to, as udmabuf did. */
static const struct dma_buf_ops dbt_static_ops = {
	.attach = dbt_attach_op,
	.detach = dbt_detach_op,
	.map_dma_buf = dbt_map_op,
	.unmap_dma_buf = dbt_unmap_op,
	.release = dbt_release_op,
	.mmap = dbt_mmap_op,
	DBT_CACHE_SGT_MAPPING
};

static int dbt_ioctl_export(struct dbt_file *f, void __user *uarg)
{
	DEFINE_DMA_BUF_EXPORT_INFO(info);
	struct dbt_export arg;
	struct dbt_buffer *buf;
	struct dma_buf *dmabuf;
	int fd, ret;

	if (copy_from_user(&arg, uarg, sizeof(arg)))
		return -EFAULT;
	if (arg.flags & ~DBT_EXPORT_DYNAMIC)
		return -EINVAL;
	if (!arg.pages || arg.pages > DBT_MAX_PAGES)
		return -EINVAL;

	buf = kzalloc_obj(*buf);
	if (!buf)
		return -ENOMEM;
	mutex_init(&buf->pages_lock);
	buf->dynamic = arg.flags & DBT_EXPORT_DYNAMIC;
	ret = dbt_pages_alloc(&buf->backing, arg.pages);
	if (ret)
		goto out_free_buf;

	info.ops = buf->dynamic ? &dbt_dynamic_ops : &dbt_static_ops;
	info.size = (size_t)arg.pages << PAGE_SHIFT;
	info.flags = O_RDWR;
	info.priv = buf;
	dmabuf = dma_buf_export(&info);
	if (IS_ERR(dmabuf)) {
		ret = PTR_ERR(dmabuf);
		goto out_free_pages;
	}
	buf->dmabuf = dmabuf;
	/* From here the buffer is freed by the dma-buf's release. */

	ret = xa_alloc(&f->exporters, &arg.id, NULL, xa_limit_32b, GFP_KERNEL);
	if (ret)
		goto out_put_dmabuf;
	fd = get_unused_fd_flags(O_CLOEXEC);
	if (fd < 0) {
		ret = fd;
		goto out_release_id;
	}
	arg.fd = fd;
	if (copy_to_user(uarg, &arg, sizeof(arg))) {
		ret = -EFAULT;
		goto out_put_fd;
	}
	get_dma_buf(dmabuf);
	xa_store(&f->exporters, arg.id, buf, GFP_KERNEL);
	fd_install(fd, dmabuf->file);
	return 0;

out_put_fd:
	put_unused_fd(fd);
out_release_id:
	xa_release(&f->exporters, arg.id);
out_put_dmabuf:
	dma_buf_put(dmabuf);
	return ret;

out_free_pages:
	dbt_pages_free(&buf->backing);
out_free_buf:
	mutex_destroy(&buf->pages_lock);
	kfree(buf);
	return ret;
}

/* Invalidates every attachment without moving: pins do not stop it. */
static int dbt_revoke(struct dbt_buffer *buf, void __user *uarg,
		      struct dbt_move *arg)
{
	int ret;

	arg->fence_id = 0;
	/* Before the invalidation, which cannot be taken back. */
	if (copy_to_user(uarg, arg, sizeof(*arg)))
		return -EFAULT;
	ret = dma_resv_lock_interruptible(buf->dmabuf->resv, NULL);
	if (ret)
		return ret;
	dbt_invalidate_mappings(buf->dmabuf);
	dma_resv_unlock(buf->dmabuf->resv);
	return 0;
}

static int dbt_ioctl_move(struct dbt_file *f, void __user *uarg)
{
	struct dbt_pages fresh, old;
	struct dbt_fence *fence = NULL;
	struct dbt_buffer *buf;
	struct dma_resv *resv;
	struct dbt_move arg;
	unsigned int i;
	int ret;

	if (copy_from_user(&arg, uarg, sizeof(arg)))
		return -EFAULT;
	if (arg.flags & ~(DBT_MOVE_FENCED | DBT_MOVE_REVOKE) || arg.pad ||
	    arg.flags == (DBT_MOVE_FENCED | DBT_MOVE_REVOKE))
		return -EINVAL;
	buf = xa_load(&f->exporters, arg.id);
	if (!buf)
		return -ENOENT;
	if (!buf->dynamic)
		return -EINVAL;
	if (arg.flags & DBT_MOVE_REVOKE)
		return dbt_revoke(buf, uarg, &arg);
	resv = buf->dmabuf->resv;

	ret = dbt_pages_alloc(&fresh, buf->backing.count);
	if (ret)
		return ret;
	if (arg.flags & DBT_MOVE_FENCED) {
		fence = dbt_fence_alloc(f);
		if (!fence) {
			ret = -ENOMEM;
			goto out_free_fresh;
		}
		ret = xa_alloc(&f->fences, &arg.fence_id, NULL, xa_limit_32b,
			       GFP_KERNEL);
		if (ret)
			goto out_put_fence;
	} else {
		arg.fence_id = 0;
	}
	/* Before the move, which cannot be taken back once it has happened. */
	if (copy_to_user(uarg, &arg, sizeof(arg))) {
		ret = -EFAULT;
		goto out_release_id;
	}

	ret = dma_resv_lock_interruptible(resv, NULL);
	if (ret)
		goto out_release_id;
	if (buf->pin_count) {
		ret = -EBUSY;
		goto out_unlock;
	}
	if (fence) {
		ret = dma_resv_reserve_fences(resv, 1);
		if (ret)
			goto out_unlock;
	}

	mutex_lock(&buf->pages_lock);
	/* CPU mappings go first, so that no write lands in the old pages after the copy. */
	unmap_mapping_range(buf->dmabuf->file->f_mapping, 0, 0, 1);
	for (i = 0; i < fresh.count; i++)
		copy_highpage(fresh.pages[i], buf->backing.pages[i]);
	old = buf->backing;
	buf->backing = fresh;
	mutex_unlock(&buf->pages_lock);
	atomic64_inc(&buf->moves);
	dbt_invalidate_mappings(buf->dmabuf);

	if (fence) {
		fence->old = old;
		fence->moved = buf;
		get_dma_buf(buf->dmabuf);
		atomic_inc(&buf->held_moves);
		dma_resv_add_fence(resv, &fence->base, DMA_RESV_USAGE_KERNEL);
		xa_store(&f->fences, arg.fence_id, fence, GFP_KERNEL);
	} else {
		dbt_pages_free(&old);
	}
	dma_resv_unlock(resv);
	return 0;

out_unlock:
	dma_resv_unlock(resv);
out_release_id:
	if (fence)
		xa_release(&f->fences, arg.fence_id);
out_put_fence:
	if (fence)
		dbt_fence_signal(fence, -ECANCELED);
out_free_fresh:
	dbt_pages_free(&fresh);
	return ret;
}

static int dbt_ioctl_exporter_info(struct dbt_file *f, void __user *uarg)
{
	struct dbt_exporter_info arg;
	struct dbt_buffer *buf;

	if (copy_from_user(&arg, uarg, sizeof(arg)))
		return -EFAULT;
	buf = xa_load(&f->exporters, arg.id);
	if (!buf)
		return -ENOENT;
	arg.flags = buf->dynamic ? DBT_EXPORT_DYNAMIC : 0;
	arg.pages = buf->backing.count;
	arg.pin_count = READ_ONCE(buf->pin_count);
	arg.attachments = atomic_read(&buf->attachments);
	arg.held_moves = atomic_read(&buf->held_moves);
	arg.attach_calls = atomic64_read(&buf->attach_calls);
	arg.detach_calls = atomic64_read(&buf->detach_calls);
	arg.pin_calls = atomic64_read(&buf->pin_calls);
	arg.unpin_calls = atomic64_read(&buf->unpin_calls);
	arg.map_calls = atomic64_read(&buf->map_calls);
	arg.unmap_calls = atomic64_read(&buf->unmap_calls);
	arg.moves = atomic64_read(&buf->moves);
	if (copy_to_user(uarg, &arg, sizeof(arg)))
		return -EFAULT;
	return 0;
}

/* Importer */

/* Called with the reservation lock held, for every dynamic attachment. */
static void dbt_invalidate(struct dma_buf_attachment *attach)
{
	struct dbt_attachment *a = attach->importer_priv;

	a->move_notifies++;
	if (a->revocable) {
		/*
		 * A revocable importer must unmap within bounded time of the
		 * call (dma_buf_invalidate_mappings()): at once, and it gives up
		 * its pins, so that the exporter may take the memory away.
		 */
		if (a->sgt)
			dma_buf_unmap_attachment(attach, a->sgt, a->dir);
		a->sgt = NULL;
		for (; a->pins; a->pins--)
			dma_buf_unpin(attach);
		a->revoked = true;
	} else if (a->sgt) {
		a->invalidated = true;
	}
	dbt_queue_event(a->file, DBT_EVENT_MOVE_NOTIFY, a->id);
}

static const struct dma_buf_attach_ops dbt_importer_ops = {
	DBT_INVALIDATE_OP(dbt_invalidate),
};

/* EINVAL when nothing is mapped: never mapped, or revoked since. */
static int dbt_unmap(struct dbt_attachment *a)
{
	struct sg_table *sgt;

	if (!a->dynamic) {
		sgt = a->sgt;
		if (sgt)
			dma_buf_unmap_attachment_unlocked(a->attach, sgt, a->dir);
		a->sgt = NULL;
		return sgt ? 0 : -EINVAL;
	}
	dma_resv_lock(a->dmabuf->resv, NULL);
	sgt = a->sgt;
	if (sgt)
		dma_buf_unmap_attachment(a->attach, sgt, a->dir);
	a->sgt = NULL;
	a->invalidated = false;
	dma_resv_unlock(a->dmabuf->resv);
	return sgt ? 0 : -EINVAL;
}

/*
 * Undoes what the importer did, as a driver tearing down would: unmapped
 * first, since not every core unmaps at detach.
 */
static void dbt_detach(struct dbt_file *f, struct dbt_attachment *a)
{
	xa_erase(&f->attachments, a->id);
	dbt_unmap(a);
	if (a->dynamic) {
		dma_resv_lock(a->dmabuf->resv, NULL);
		for (; a->pins; a->pins--)
			dma_buf_unpin(a->attach);
		dma_resv_unlock(a->dmabuf->resv);
	}
	dma_buf_detach(a->dmabuf, a->attach);
	dma_buf_put(a->dmabuf);
	kfree(a);
}

static int dbt_ioctl_attach(struct dbt_file *f, void __user *uarg)
{
	struct dbt_attachment *a;
	struct dbt_attach arg;
	int ret;

	if (copy_from_user(&arg, uarg, sizeof(arg)))
		return -EFAULT;
	if (arg.flags & ~(DBT_ATTACH_DYNAMIC | DBT_ATTACH_REVOCABLE) || arg.pad)
		return -EINVAL;
	if (arg.flags == DBT_ATTACH_REVOCABLE)
		return -EINVAL;
	if (arg.flags & DBT_ATTACH_REVOCABLE && !DBT_CAN_REVOKE)
		return -EOPNOTSUPP;

	a = kzalloc_obj(*a);
	if (!a)
		return -ENOMEM;
	a->file = f;
	a->dynamic = arg.flags & DBT_ATTACH_DYNAMIC;
	a->revocable = arg.flags & DBT_ATTACH_REVOCABLE;
	a->dmabuf = dma_buf_get(arg.fd);
	if (IS_ERR(a->dmabuf)) {
		ret = PTR_ERR(a->dmabuf);
		goto out_free;
	}
	/* The id exists before attaching: an invalidation may come at once. */
	ret = xa_alloc(&f->attachments, &a->id, NULL, xa_limit_32b, GFP_KERNEL);
	if (ret)
		goto out_put_dmabuf;
	/*
	 * Before attaching, which the exporter sees: its attach op, and the
	 * core's pin and map for a static importer of a dynamic exporter.
	 */
	arg.id = a->id;
	if (copy_to_user(uarg, &arg, sizeof(arg))) {
		ret = -EFAULT;
		goto out_release_id;
	}
	a->attach = dma_buf_dynamic_attach(a->dmabuf, &dbt_pdev->dev,
					   a->dynamic ? &dbt_importer_ops : NULL,
					   a);
	if (IS_ERR(a->attach)) {
		ret = PTR_ERR(a->attach);
		goto out_release_id;
	}
	xa_store(&f->attachments, a->id, a, GFP_KERNEL);
	return 0;

out_release_id:
	xa_release(&f->attachments, a->id);
out_put_dmabuf:
	dma_buf_put(a->dmabuf);
out_free:
	kfree(a);
	return ret;
}

static struct dbt_attachment *dbt_attachment_arg(struct dbt_file *f,
						 void __user *uarg)
{
	struct dbt_attachment_id arg;
	struct dbt_attachment *a;

	if (copy_from_user(&arg, uarg, sizeof(arg)))
		return ERR_PTR(-EFAULT);
	if (arg.pad)
		return ERR_PTR(-EINVAL);
	a = xa_load(&f->attachments, arg.id);
	return a ? a : ERR_PTR(-ENOENT);
}

static void dbt_record_mapping(struct dbt_attachment *a, struct sg_table *sgt,
			       enum dma_data_direction dir)
{
	struct scatterlist *sg;
	unsigned int i;

	a->sgt = sgt;
	a->dir = dir;
	a->invalidated = false;
	a->nents = sgt->nents;
	a->bytes = 0;
	/* Only DMA fields: DMABUF_DEBUG scrambles the page links importers get. */
	for_each_sgtable_dma_sg(sgt, sg, i)
		a->bytes += sg_dma_len(sg);
}

static int dbt_ioctl_map(struct dbt_file *f, void __user *uarg)
{
	struct dbt_attachment *a;
	struct sg_table *sgt;
	struct dbt_map arg;
	int ret;

	if (copy_from_user(&arg, uarg, sizeof(arg)))
		return -EFAULT;
	if (arg.pad || arg.direction > DBT_DIR_FROM_DEVICE)
		return -EINVAL;
	a = xa_load(&f->attachments, arg.id);
	if (!a)
		return -ENOENT;
	/* Checked again under the lock, for an invalidation in between. */
	if (a->revoked)
		return -ENODEV;
	if (a->sgt)
		return -EBUSY;
	/*
	 * The results are known only after mapping, and an exporter sees a
	 * map and unmap (a core-cached mapping stays until detach): a
	 * read-only argument is found out before that.
	 */
	if (copy_to_user(uarg, &arg, sizeof(arg)))
		return -EFAULT;

	if (a->dynamic) {
		ret = dma_resv_lock_interruptible(a->dmabuf->resv, NULL);
		if (ret)
			return ret;
		if (a->revoked)
			sgt = ERR_PTR(-ENODEV);
		else
			sgt = dma_buf_map_attachment(a->attach, arg.direction);
		if (!IS_ERR(sgt))
			dbt_record_mapping(a, sgt, arg.direction);
		dma_resv_unlock(a->dmabuf->resv);
	} else {
		sgt = dma_buf_map_attachment_unlocked(a->attach, arg.direction);
		if (!IS_ERR(sgt))
			dbt_record_mapping(a, sgt, arg.direction);
	}
	if (IS_ERR(sgt))
		return PTR_ERR(sgt);

	arg.nents = a->nents;
	arg.bytes = a->bytes;
	if (copy_to_user(uarg, &arg, sizeof(arg))) {
		/* Another thread took the page since the first copy. */
		dbt_unmap(a);
		return -EFAULT;
	}
	return 0;
}

static int dbt_ioctl_unmap(struct dbt_file *f, void __user *uarg)
{
	struct dbt_attachment *a = dbt_attachment_arg(f, uarg);

	if (IS_ERR(a))
		return PTR_ERR(a);
	return dbt_unmap(a);
}

static int dbt_ioctl_detach(struct dbt_file *f, void __user *uarg)
{
	struct dbt_attachment *a = dbt_attachment_arg(f, uarg);

	if (IS_ERR(a))
		return PTR_ERR(a);
	dbt_detach(f, a);
	return 0;
}

static int dbt_ioctl_pin(struct dbt_file *f, void __user *uarg, bool pin)
{
	struct dbt_attachment *a = dbt_attachment_arg(f, uarg);
	int ret;

	if (IS_ERR(a))
		return PTR_ERR(a);
	/* The core WARNs on pins from static importers: refuse them here. */
	if (!a->dynamic)
		return -EINVAL;
	/* Under the lock: a revocation drops the pins from another file. */
	ret = dma_resv_lock_interruptible(a->dmabuf->resv, NULL);
	if (ret)
		return ret;
	if (pin) {
		if (a->revoked)
			ret = -ENODEV;
		else if (a->pins == U32_MAX)
			ret = -EOVERFLOW;
		else
			ret = dma_buf_pin(a->attach);
		if (!ret)
			a->pins++;
	} else if (!a->pins) {
		ret = -EINVAL;
	} else {
		dma_buf_unpin(a->attach);
		a->pins--;
	}
	dma_resv_unlock(a->dmabuf->resv);
	return ret;
}

static int dbt_ioctl_attachment_info(struct dbt_file *f, void __user *uarg)
{
	struct dbt_attachment_info arg;
	struct dbt_attachment *a;
	int ret;

	if (copy_from_user(&arg, uarg, sizeof(arg)))
		return -EFAULT;
	if (arg.pad)
		return -EINVAL;
	a = xa_load(&f->attachments, arg.id);
	if (!a)
		return -ENOENT;
	memset(&arg, 0, sizeof(arg));
	arg.id = a->id;
	arg.flags = a->dynamic ? DBT_ATTACH_DYNAMIC : 0;
	if (a->revocable)
		arg.flags |= DBT_ATTACH_REVOCABLE;
	ret = dma_resv_lock_interruptible(a->dmabuf->resv, NULL);
	if (ret)
		return ret;
	if (a->sgt)
		arg.state |= DBT_STATE_MAPPED;
	if (a->invalidated)
		arg.state |= DBT_STATE_INVALIDATED;
	if (dbt_core_cached(a->attach))
		arg.state |= DBT_STATE_CORE_CACHED;
	if (a->revoked)
		arg.state |= DBT_STATE_REVOKED;
	if (dbt_attach_revocable(a->attach))
		arg.state |= DBT_STATE_CORE_REVOCABLE;
	arg.move_notifies = a->move_notifies;
	arg.pins = a->pins;
	arg.nents = a->sgt ? a->nents : 0;
	arg.bytes = a->sgt ? a->bytes : 0;
	dma_resv_unlock(a->dmabuf->resv);
	arg.size = a->dmabuf->size;
	if (copy_to_user(uarg, &arg, sizeof(arg)))
		return -EFAULT;
	return 0;
}

static int dbt_add_fence(struct dbt_fence *fence, struct dma_buf *dmabuf,
			 u32 usage)
{
	int ret;

	ret = dma_resv_lock_interruptible(dmabuf->resv, NULL);
	if (ret)
		return ret;
	ret = dma_resv_reserve_fences(dmabuf->resv, 1);
	if (!ret)
		dma_resv_add_fence(dmabuf->resv, &fence->base, usage);
	dma_resv_unlock(dmabuf->resv);
	return ret;
}

static int dbt_ioctl_fence_create(struct dbt_file *f, void __user *uarg)
{
	struct dbt_fence_create arg;
	struct sync_file *sync_file = NULL;
	struct dma_buf *dmabuf = NULL;
	struct dbt_fence *fence;
	int fd = -1, ret;

	if (copy_from_user(&arg, uarg, sizeof(arg)))
		return -EFAULT;
	if (arg.flags & ~(DBT_FENCE_ADD | DBT_FENCE_SYNC_FILE) || arg.pad)
		return -EINVAL;
	if (arg.usage > DBT_USAGE_BOOKKEEP ||
	    (arg.usage && !(arg.flags & DBT_FENCE_ADD)))
		return -EINVAL;

	if (arg.flags & DBT_FENCE_ADD) {
		dmabuf = dma_buf_get(arg.dmabuf_fd);
		if (IS_ERR(dmabuf))
			return PTR_ERR(dmabuf);
	}
	fence = dbt_fence_alloc(f);
	if (!fence) {
		ret = -ENOMEM;
		goto out_put_dmabuf;
	}
	ret = xa_alloc(&f->fences, &arg.id, NULL, xa_limit_32b, GFP_KERNEL);
	if (ret)
		goto out_signal;
	if (arg.flags & DBT_FENCE_SYNC_FILE) {
		sync_file = sync_file_create(&fence->base);
		if (!sync_file) {
			ret = -ENOMEM;
			goto out_release_id;
		}
		fd = get_unused_fd_flags(O_CLOEXEC);
		if (fd < 0) {
			ret = fd;
			goto out_put_sync_file;
		}
	}
	arg.sync_file_fd = fd;
	/*
	 * Before the fence goes into a reservation object, where it cannot be
	 * taken back: it would stay there, and hold the module, until the
	 * object drops it.
	 */
	if (copy_to_user(uarg, &arg, sizeof(arg))) {
		ret = -EFAULT;
		goto out_put_fd;
	}
	if (dmabuf) {
		ret = dbt_add_fence(fence, dmabuf, arg.usage);
		if (ret)
			goto out_put_fd;
		dma_buf_put(dmabuf);
	}
	xa_store(&f->fences, arg.id, fence, GFP_KERNEL);
	if (sync_file)
		fd_install(fd, sync_file->file);
	return 0;

out_put_fd:
	if (fd >= 0)
		put_unused_fd(fd);
out_put_sync_file:
	if (sync_file)
		fput(sync_file->file);
out_release_id:
	xa_release(&f->fences, arg.id);
out_signal:
	dbt_fence_signal(fence, ret);
out_put_dmabuf:
	if (dmabuf)
		dma_buf_put(dmabuf);
	return ret;
}

static int dbt_ioctl_fence_signal(struct dbt_file *f, void __user *uarg)
{
	struct dbt_fence_signal arg;
	struct dbt_fence *fence;

	if (copy_from_user(&arg, uarg, sizeof(arg)))
		return -EFAULT;
	if (arg.error > 0 || arg.error < -MAX_ERRNO)
		return -EINVAL;
	/* Erasing is what makes one caller the signaller. */
	fence = xa_erase(&f->fences, arg.id);
	if (!fence)
		return -ENOENT;
	dbt_fence_signal(fence, arg.error);
	return 0;
}

/* The file */

static long dbt_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct dbt_file *f = file->private_data;
	void __user *uarg = (void __user *)arg;
	long ret;

	if (cmd == DBT_IOCTL_FENCE_SIGNAL)
		return dbt_ioctl_fence_signal(f, uarg);

	if (mutex_lock_interruptible(&f->lock))
		return -ERESTARTSYS;
	switch (cmd) {
	case DBT_IOCTL_EXPORT:
		ret = dbt_ioctl_export(f, uarg);
		break;
	case DBT_IOCTL_MOVE:
		ret = dbt_ioctl_move(f, uarg);
		break;
	case DBT_IOCTL_EXPORTER_INFO:
		ret = dbt_ioctl_exporter_info(f, uarg);
		break;
	case DBT_IOCTL_ATTACH:
		ret = dbt_ioctl_attach(f, uarg);
		break;
	case DBT_IOCTL_DETACH:
		ret = dbt_ioctl_detach(f, uarg);
		break;
	case DBT_IOCTL_MAP:
		ret = dbt_ioctl_map(f, uarg);
		break;
	case DBT_IOCTL_UNMAP:
		ret = dbt_ioctl_unmap(f, uarg);
		break;
	case DBT_IOCTL_PIN:
		ret = dbt_ioctl_pin(f, uarg, true);
		break;
	case DBT_IOCTL_UNPIN:
		ret = dbt_ioctl_pin(f, uarg, false);
		break;
	case DBT_IOCTL_ATTACHMENT_INFO:
		ret = dbt_ioctl_attachment_info(f, uarg);
		break;
	case DBT_IOCTL_FENCE_CREATE:
		ret = dbt_ioctl_fence_create(f, uarg);
		break;
	default:
		ret = -ENOTTY;
		break;
	}
	mutex_unlock(&f->lock);
	return ret;
}

static int dbt_open(struct inode *inode, struct file *file)
{
	struct dbt_file *f;

	f = kzalloc_obj(*f);
	if (!f)
		return -ENOMEM;
	mutex_init(&f->lock);
	xa_init_flags(&f->exporters, XA_FLAGS_ALLOC1);
	xa_init_flags(&f->attachments, XA_FLAGS_ALLOC1);
	xa_init_flags(&f->fences, XA_FLAGS_ALLOC1);
	f->fence_context = dma_fence_context_alloc(1);
	spin_lock_init(&f->events_lock);
	init_waitqueue_head(&f->events_wait);
	mutex_init(&f->read_lock);
	file->private_data = f;
	return 0;
}

static int dbt_release_file(struct inode *inode, struct file *file)
{
	struct dbt_file *f = file->private_data;
	struct dbt_attachment *a;
	struct dbt_buffer *buf;
	struct dbt_fence *fence;
	unsigned long id;

	/* Attachments first: they may be on this file's own buffers. */
	xa_for_each(&f->attachments, id, a)
		dbt_detach(f, a);
	xa_for_each(&f->fences, id, fence) {
		xa_erase(&f->fences, id);
		dbt_fence_signal(fence, -ECANCELED);
	}
	xa_for_each(&f->exporters, id, buf) {
		xa_erase(&f->exporters, id);
		dma_buf_put(buf->dmabuf);
	}
	xa_destroy(&f->attachments);
	xa_destroy(&f->fences);
	xa_destroy(&f->exporters);
	mutex_destroy(&f->read_lock);
	mutex_destroy(&f->lock);
	kfree(f);
	return 0;
}

static const struct file_operations dbt_fops = {
	.owner = THIS_MODULE,
	.open = dbt_open,
	.release = dbt_release_file,
	.read = dbt_read,
	.poll = dbt_poll,
	.unlocked_ioctl = dbt_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.llseek = noop_llseek,
};

/* What the core does that tests must expect, one name a line (see the uapi header). */
static ssize_t features_show(struct device *dev, struct device_attribute *attr,
			     char *buf)
{
	int len = 0;

	if (DBT_CORE_SGT_CACHE)
		len += sysfs_emit_at(buf, len, "core_sgt_cache\n");
	if (DBT_DYNAMIC_MAP_PINS)
		len += sysfs_emit_at(buf, len, "dynamic_map_pins\n");
	if (DBT_NAMES_INVALIDATE_MAPPINGS)
		len += sysfs_emit_at(buf, len, "invalidate_mappings\n");
	if (DBT_CAN_REVOKE)
		len += sysfs_emit_at(buf, len, "revocable\n");
	return len;
}
static DEVICE_ATTR_RO(features);

static struct attribute *dbt_attrs[] = {
	&dev_attr_features.attr,
	NULL,
};
ATTRIBUTE_GROUPS(dbt);

static struct miscdevice dbt_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "dmabuf_test",
	.fops = &dbt_fops,
	.groups = dbt_groups,
};

static int __init dbt_init(void)
{
	int ret;

	dbt_pdev = platform_device_register_simple(KBUILD_MODNAME, -1, NULL, 0);
	if (IS_ERR(dbt_pdev))
		return PTR_ERR(dbt_pdev);
	ret = dma_coerce_mask_and_coherent(&dbt_pdev->dev, DMA_BIT_MASK(64));
	if (ret)
		goto out_unregister_pdev;
	ret = misc_register(&dbt_misc);
	if (ret)
		goto out_unregister_pdev;
	return 0;

out_unregister_pdev:
	platform_device_unregister(dbt_pdev);
	return ret;
}

static void __exit dbt_exit(void)
{
	misc_deregister(&dbt_misc);
	platform_device_unregister(dbt_pdev);
}

module_init(dbt_init);
module_exit(dbt_exit);

MODULE_DESCRIPTION("A user interface to dynamic dma-buf export, import and fences, for tests");
MODULE_LICENSE("GPL");
/* MODULE_IMPORT_NS() takes a bare word on some kernels, a string on others. */
MODULE_INFO(import_ns, "DMA_BUF");
