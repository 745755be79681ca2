/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What differs between the kernels dmabuf_test builds for, in one place.
 * Kbuild defines DBT_HAVE_* from the kernel's own headers and Kconfig, so
 * that the module follows what the core offers rather than a version
 * number (stable backports move features between versions).
 */
#ifndef _DBT_COMPAT_H
#define _DBT_COMPAT_H

#include <linux/dma-buf.h>
#include <linux/mm.h>
#include <linux/slab.h>

/* Newer checkpatch asks for it; older kernels lack it: its GFP_KERNEL form. */
#ifndef kzalloc_obj
#define kzalloc_obj(P) kzalloc(sizeof(P), GFP_KERNEL)
#endif

/*
 * The importer callback for a buffer about to move: renamed
 * invalidate_mappings when the core stopped caching mappings.
 */
#ifdef DBT_HAVE_INVALIDATE_MAPPINGS
#define DBT_NAMES_INVALIDATE_MAPPINGS true
#define DBT_INVALIDATE_OP(fn) .invalidate_mappings = (fn)

static inline void dbt_invalidate_mappings(struct dma_buf *dmabuf)
{
	dma_buf_invalidate_mappings(dmabuf);
}
#else
#define DBT_NAMES_INVALIDATE_MAPPINGS false
#define DBT_INVALIDATE_OP(fn) .move_notify = (fn)

static inline void dbt_invalidate_mappings(struct dma_buf *dmabuf)
{
	dma_buf_move_notify(dmabuf);
}
#endif

/*
 * Where the core caches an attachment's mapping, a static exporter asks for
 * it (the shape udmabuf had) and the core maps a mismatched importer and
 * exporter at attach; without the cache every map reaches the exporter and
 * a static importer of a dynamic exporter is pinned for each mapping.
 */
#ifdef DBT_HAVE_SGT_CACHE
#define DBT_CORE_SGT_CACHE true
#define DBT_CACHE_SGT_MAPPING .cache_sgt_mapping = true

static inline bool dbt_core_cached(struct dma_buf_attachment *attach)
{
	return attach->sgt;
}
#else
#define DBT_CORE_SGT_CACHE false
#define DBT_CACHE_SGT_MAPPING

static inline bool dbt_core_cached(struct dma_buf_attachment *attach)
{
	return false;
}
#endif

/*
 * Kernels with the CONFIG_DMABUF_MOVE_NOTIFY option pin a dynamic exporter
 * for each mapping of a dynamic importer when it is off; later kernels
 * never do.
 */
#if defined(DBT_HAVE_MOVE_NOTIFY_OPTION) && !IS_ENABLED(CONFIG_DMABUF_MOVE_NOTIFY)
#define DBT_DYNAMIC_MAP_PINS true
#else
#define DBT_DYNAMIC_MAP_PINS false
#endif

/* Whether the core lets an exporter tell importers that honour a revoke. */
#ifdef DBT_HAVE_ATTACH_REVOCABLE
#define DBT_CAN_REVOKE true

static inline bool dbt_attach_revocable(struct dma_buf_attachment *attach)
{
	return dma_buf_attach_revocable(attach);
}
#else
#define DBT_CAN_REVOKE false

static inline bool dbt_attach_revocable(struct dma_buf_attachment *attach)
{
	return false;
}
#endif

/* vm_flags became read-only outside these helpers. */
static inline void dbt_vm_flags_set(struct vm_area_struct *vma,
				    vm_flags_t flags)
{
#ifdef DBT_HAVE_VM_FLAGS_SET
	vm_flags_set(vma, flags);
#else
	vma->vm_flags |= flags;
#endif
}

#endif /* _DBT_COMPAT_H */
