// SPDX-License-Identifier: GPL-2.0
/*
 * Pieces the out-of-tree sw_sync module needs that the kernel does not
 * export. The name is the one sync_debug.c prints for a sync_file in
 * /sys/kernel/debug/sync/info: the user's name if one was given, else
 * "<driver>-<timeline><context>-<seqno>" of its fence.
 */
#include <linux/dma-fence.h>
#include <linux/module.h>
#include <linux/sync_file.h>

char *bufsync_sync_file_get_name(struct sync_file *file, char *buf, int len)
{
	struct dma_fence *f = file->fence;

	if (file->user_name[0])
		strscpy(buf, file->user_name, len);
	else
		snprintf(buf, len, "%s-%s%llu-%lld", f->ops->get_driver_name(f),
			 f->ops->get_timeline_name(f), f->context, f->seqno);
	return buf;
}

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("sw_sync built out of tree for the bufsync test VM");
