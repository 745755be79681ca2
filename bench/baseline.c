// SPDX-License-Identifier: MIT
/*
 * The C baseline for bench/: each workload makes the syscalls a careful C
 * program would. One process is one session, as on the JavaScript side: the
 * workload is set up once (argv[1]), then every line of stdin is an
 * iteration count, run and answered with one JSON line
 * {"workload", "ops", "seconds"}. bench/guest.ts gives both sides the same
 * warm-up and rounds through that session, in the same VM boot.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/dma-buf.h>
#include <linux/udmabuf.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

struct sw_sync_create_fence_data {
	__u32 value;
	char name[32];
	__s32 fence;
};
#define SW_SYNC_IOC_CREATE_FENCE _IOWR('W', 0, struct sw_sync_create_fence_data)
#define SW_SYNC_IOC_INC _IOW('W', 1, __u32)

#define MEMCPY_SIZE (16 << 20)

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static int make_udmabuf(int dev, size_t size)
{
	struct udmabuf_create create = { 0 };
	int memfd, buf;

	memfd = memfd_create("bench", MFD_ALLOW_SEALING | MFD_CLOEXEC);
	if (memfd < 0)
		die("memfd_create");
	if (ftruncate(memfd, size) < 0)
		die("ftruncate");
	if (fcntl(memfd, F_ADD_SEALS, F_SEAL_SHRINK) < 0)
		die("F_ADD_SEALS");
	create.memfd = memfd;
	create.flags = UDMABUF_FLAGS_CLOEXEC;
	create.size = size;
	buf = ioctl(dev, UDMABUF_CREATE, &create);
	if (buf < 0)
		die("UDMABUF_CREATE");
	close(memfd);
	return buf;
}

/* What a session keeps across its runs, as the JavaScript session does. */
static int dev, buf, timeline;
static char *source, *map;
static __u32 fence_value;

static void sync_run(long iterations, int checked)
{
	struct dma_buf_sync begin = { DMA_BUF_SYNC_START | DMA_BUF_SYNC_RW };
	struct dma_buf_sync end = { DMA_BUF_SYNC_END | DMA_BUF_SYNC_RW };
	long i;

	for (i = 0; i < iterations; i++) {
		/* "checked": what a program that must not block does first */
		if (checked) {
			struct pollfd idle = { buf, POLLOUT, 0 };

			if (poll(&idle, 1, 0) != 1)
				die("poll: fences pending");
		}
		if (ioctl(buf, DMA_BUF_IOCTL_SYNC, &begin) < 0 ||
		    ioctl(buf, DMA_BUF_IOCTL_SYNC, &end) < 0)
			die("DMA_BUF_IOCTL_SYNC");
	}
}

static void fence_run(long iterations)
{
	__u32 one = 1;
	long i;

	for (i = 0; i < iterations; i++) {
		struct sw_sync_create_fence_data data = { .value = ++fence_value, .name = "bench" };
		struct dma_buf_import_sync_file import = { .flags = DMA_BUF_SYNC_WRITE };
		struct dma_buf_export_sync_file export = { .flags = DMA_BUF_SYNC_READ, .fd = -1 };
		struct pollfd wait;

		if (ioctl(timeline, SW_SYNC_IOC_CREATE_FENCE, &data) < 0)
			die("SW_SYNC_IOC_CREATE_FENCE");
		import.fd = data.fence;
		if (ioctl(buf, DMA_BUF_IOCTL_IMPORT_SYNC_FILE, &import) < 0)
			die("IMPORT_SYNC_FILE");
		if (ioctl(buf, DMA_BUF_IOCTL_EXPORT_SYNC_FILE, &export) < 0)
			die("EXPORT_SYNC_FILE");
		if (ioctl(timeline, SW_SYNC_IOC_INC, &one) < 0)
			die("SW_SYNC_IOC_INC");
		wait.fd = export.fd;
		wait.events = POLLIN;
		if (poll(&wait, 1, -1) != 1)
			die("poll");
		close(export.fd);
		close(data.fence);
	}
}

int main(int argc, char **argv)
{
	const char *workload = argc > 1 ? argv[1] : "";
	long iterations;
	double start, ops;
	long i;

	dev = open("/dev/udmabuf", O_RDWR | O_CLOEXEC);
	if (dev < 0)
		die("/dev/udmabuf");

	if (!strcmp(workload, "sync") || !strcmp(workload, "sync-checked")) {
		buf = make_udmabuf(dev, 1 << 20);
	} else if (!strcmp(workload, "memcpy")) {
		buf = make_udmabuf(dev, MEMCPY_SIZE);
		source = malloc(MEMCPY_SIZE);
		map = mmap(NULL, MEMCPY_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, buf, 0);
		if (!source || map == MAP_FAILED)
			die("mmap");
		memset(source, 0x5a, MEMCPY_SIZE);
		memset(map, 0, MEMCPY_SIZE);
	} else if (!strcmp(workload, "fence")) {
		timeline = open("/sys/kernel/debug/sync/sw_sync", O_RDWR | O_CLOEXEC);
		if (timeline < 0)
			die("sw_sync");
		buf = make_udmabuf(dev, 4096);
	} else if (strcmp(workload, "create")) {
		fprintf(stderr, "usage: %s sync|sync-checked|create|memcpy|fence < iteration counts\n", argv[0]);
		return 2;
	}

	while (scanf("%ld", &iterations) == 1) {
		ops = iterations;
		start = now();
		if (!strcmp(workload, "sync")) {
			sync_run(iterations, 0);
		} else if (!strcmp(workload, "sync-checked")) {
			sync_run(iterations, 1);
		} else if (!strcmp(workload, "create")) {
			for (i = 0; i < iterations; i++)
				close(make_udmabuf(dev, 16 * 4096));
		} else if (!strcmp(workload, "memcpy")) {
			for (i = 0; i < iterations; i++) {
				source[i % MEMCPY_SIZE] = (char)i;
				memcpy(map, source, MEMCPY_SIZE);
			}
			/* ops are bytes here: the report is a bandwidth */
			ops = (double)iterations * MEMCPY_SIZE;
		} else {
			fence_run(iterations);
		}
		printf("{\"workload\":\"%s\",\"ops\":%.0f,\"seconds\":%.6f}\n", workload, ops, now() - start);
		fflush(stdout);
	}
	return 0;
}
