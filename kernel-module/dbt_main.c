// SPDX-License-Identifier: GPL-2.0
/*
 * dmabuf_test: gives userspace the parts of dma-buf that only drivers reach,
 * so that tests can drive them: a dynamic (pin/unpin, movable) or static
 * exporter, a dynamic, revocable or static importer that attaches to any
 * dma-buf, and fences added to reservation objects. The uapi header
 * documents each ioctl and its errors; dbt_compat.h holds what differs
 * between kernels, dbt.h what the parts share.
 *
 * This part is the misc device: its files, the ioctl dispatch, the features
 * attribute and the module's init and exit.
 */
#include <linux/device.h>
#include <linux/dma-fence.h>
#include <linux/dma-mapping.h>
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/platform_device.h>
#include <linux/slab.h>
#include <linux/sysfs.h>
#include <linux/xarray.h>

#include "dbt.h"

struct platform_device *dbt_pdev;

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
