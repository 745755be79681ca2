// SPDX-License-Identifier: GPL-2.0
/*
 * The importer: the test device attached to any dma-buf as a static,
 * dynamic or revocable importer, mapped and pinned on command the way a
 * driver would.
 */
#include <linux/dma-buf.h>
#include <linux/dma-resv.h>
#include <linux/err.h>
#include <linux/platform_device.h>
#include <linux/scatterlist.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/xarray.h>

#include "dbt.h"

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
void dbt_detach(struct dbt_file *f, struct dbt_attachment *a)
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

int dbt_ioctl_attach(struct dbt_file *f, void __user *uarg)
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

int dbt_ioctl_map(struct dbt_file *f, void __user *uarg)
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

int dbt_ioctl_unmap(struct dbt_file *f, void __user *uarg)
{
	struct dbt_attachment *a = dbt_attachment_arg(f, uarg);

	if (IS_ERR(a))
		return PTR_ERR(a);
	return dbt_unmap(a);
}

int dbt_ioctl_detach(struct dbt_file *f, void __user *uarg)
{
	struct dbt_attachment *a = dbt_attachment_arg(f, uarg);

	if (IS_ERR(a))
		return PTR_ERR(a);
	dbt_detach(f, a);
	return 0;
}

int dbt_ioctl_pin(struct dbt_file *f, void __user *uarg, bool pin)
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

int dbt_ioctl_attachment_info(struct dbt_file *f, void __user *uarg)
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
	if (a->dmabuf->ops->pin)
		arg.state |= DBT_STATE_EXPORTER_DYNAMIC;
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

