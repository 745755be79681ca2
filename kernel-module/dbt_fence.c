// SPDX-License-Identifier: GPL-2.0
/*
 * Fences signalled on command, alone, in a sync_file or in a reservation
 * object; a fenced move's fence also holds the pages the move left behind.
 */
#include <linux/anon_inodes.h>
#include <linux/dma-buf.h>
#include <linux/dma-fence.h>
#include <linux/dma-resv.h>
#include <linux/err.h>
#include <linux/file.h>
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/sync_file.h>
#include <linux/uaccess.h>
#include <linux/xarray.h>

#include "dbt.h"

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

struct dbt_fence *dbt_fence_alloc(struct dbt_file *f)
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
void dbt_fence_signal(struct dbt_fence *fence, int error)
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

int dbt_ioctl_fence_create(struct dbt_file *f, void __user *uarg)
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

int dbt_ioctl_fence_signal(struct dbt_file *f, void __user *uarg)
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

