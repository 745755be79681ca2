// SPDX-License-Identifier: GPL-2.0
/*
 * The event ring of an open file: invalidations queue here, under a
 * spinlock of their own since they come under other locks, and userspace
 * reads them with read(2) and poll(2).
 */
#include <linux/fs.h>
#include <linux/poll.h>
#include <linux/spinlock.h>
#include <linux/uaccess.h>
#include <linux/wait.h>

#include "dbt.h"

void dbt_queue_event(struct dbt_file *f, u32 type, u32 id)
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

ssize_t dbt_read(struct file *file, char __user *ubuf, size_t count,
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

__poll_t dbt_poll(struct file *file, poll_table *wait)
{
	struct dbt_file *f = file->private_data;

	poll_wait(file, &f->events_wait, wait);
	return dbt_events_ready(f) ? EPOLLIN | EPOLLRDNORM : 0;
}

