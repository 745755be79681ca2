// SPDX-License-Identifier: GPL-2.0
/*
 * The exporter: buffers of pages behind dma_buf_ops, dynamic (pin/unpin,
 * movable to new pages) or static, mapped for CPUs by faulting so that a
 * move can zap them.
 */
#include <linux/delay.h>
#include <linux/dma-buf.h>
#include <linux/dma-mapping.h>
#include <linux/dma-resv.h>
#include <linux/file.h>
#include <linux/highmem.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/scatterlist.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/xarray.h>

#include "dbt.h"

void dbt_pages_free(struct dbt_pages *p)
{
	unsigned int i;

	for (i = 0; i < p->count; i++)
		put_page(p->pages[i]);
	kvfree(p->pages);
	p->pages = NULL;
	p->count = 0;
}

int dbt_pages_alloc(struct dbt_pages *p, unsigned int count)
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

int dbt_ioctl_export(struct dbt_file *f, void __user *uarg)
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

int dbt_ioctl_move(struct dbt_file *f, void __user *uarg)
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

int dbt_ioctl_exporter_info(struct dbt_file *f, void __user *uarg)
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

