// SPDX-License-Identifier: MIT
/*
 * The C baseline for fd passing: two processes (socketpair + fork) send a
 * FRAME_BYTES message carrying one udmabuf (a dma-buf) back and forth; each
 * side closes the dma-buf it received and sends its own. The pair lives for the whole session, as the
 * JavaScript peers do: every line of stdin is a number of round trips, run
 * and answered with one JSON line {"workload","ops","seconds","cpuSeconds"}, the
 * last being the CPU time both processes took, as the JavaScript sides report it.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/udmabuf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The bytes of the JavaScript row's frame: a 12-byte header and {"message":"ping","kinds":["dmabuf"]}. */
#define FRAME_BYTES 50

static void die(const char *what)
{
	perror(what);
	exit(1);
}

/* A 4 KiB dma-buf of each side's own, as the JavaScript peers hold one. */
static int make_udmabuf(void)
{
	struct udmabuf_create create = { 0 };
	int dev, memfd, buf;

	dev = open("/dev/udmabuf", O_RDWR | O_CLOEXEC);
	memfd = memfd_create("pingpong", MFD_ALLOW_SEALING | MFD_CLOEXEC);
	if (dev < 0 || memfd < 0 || ftruncate(memfd, 4096) < 0 || fcntl(memfd, F_ADD_SEALS, F_SEAL_SHRINK) < 0)
		die("udmabuf setup");
	create.memfd = memfd;
	create.flags = UDMABUF_FLAGS_CLOEXEC;
	create.size = 4096;
	buf = ioctl(dev, UDMABUF_CREATE, &create);
	if (buf < 0)
		die("UDMABUF_CREATE");
	close(memfd);
	close(dev);
	return buf;
}

static void send_fd(int sock, int fd)
{
	char data[FRAME_BYTES] = "ping";
	char control[CMSG_SPACE(sizeof(int))] = { 0 };
	struct iovec vector = { data, sizeof(data) };
	struct msghdr message = { .msg_iov = &vector, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof(control) };
	struct cmsghdr *header = CMSG_FIRSTHDR(&message);

	header->cmsg_level = SOL_SOCKET;
	header->cmsg_type = SCM_RIGHTS;
	header->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(header), &fd, sizeof(int));
	if (sendmsg(sock, &message, MSG_NOSIGNAL) != sizeof(data))
		die("sendmsg");
}

/* User + system CPU seconds of this process and of the child: the child's from /proc, in USER_HZ (100 per second). */
static double cpu_seconds(pid_t child)
{
	unsigned long long utime, stime;
	struct rusage usage;
	char path[64], stat[1024];
	const char *fields;
	ssize_t got;
	int fd;

	if (getrusage(RUSAGE_SELF, &usage) < 0)
		die("getrusage");
	snprintf(path, sizeof(path), "/proc/%d/stat", child);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	got = fd < 0 ? -1 : read(fd, stat, sizeof(stat) - 1);
	if (got <= 0)
		die("reading the peer's /proc stat");
	close(fd);
	stat[got] = '\0';
	/* The fields after the command name, which may hold spaces, start at its last ')'. */
	fields = strrchr(stat, ')');
	if (!fields || sscanf(fields + 2, "%*c %*d %*d %*d %*d %*d %*u %*lu %*lu %*lu %*lu %llu %llu", &utime, &stime) != 2)
		die("parsing the peer's /proc stat");
	return usage.ru_utime.tv_sec + usage.ru_utime.tv_usec / 1e6 + usage.ru_stime.tv_sec + usage.ru_stime.tv_usec / 1e6 +
	       (utime + stime) / 100.0;
}

/* Returns 0 at end of stream: the other side has finished the session. */
static int receive_fd(int sock)
{
	char data[FRAME_BYTES];
	char control[CMSG_SPACE(sizeof(int))];
	struct iovec vector = { data, sizeof(data) };
	struct msghdr message = { .msg_iov = &vector, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof(control) };
	struct cmsghdr *header;
	ssize_t got;
	int fd;

	got = recvmsg(sock, &message, MSG_CMSG_CLOEXEC);
	if (got == 0)
		return 0;
	if (got != sizeof(data))
		die("recvmsg");
	header = CMSG_FIRSTHDR(&message);
	if (!header || header->cmsg_type != SCM_RIGHTS)
		die("no fd received");
	memcpy(&fd, CMSG_DATA(header), sizeof(int));
	close(fd);
	return 1;
}

int main(void)
{
	int pair[2], buf;
	struct timespec start, end;
	long iterations, i;
	double cpu_start;
	pid_t child;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) < 0)
		die("socketpair");
	child = fork();
	if (child < 0)
		die("fork");
	if (child == 0) {
		close(pair[0]);
		buf = make_udmabuf();
		while (receive_fd(pair[1]))
			send_fd(pair[1], buf);
		_exit(0);
	}
	close(pair[1]);
	buf = make_udmabuf();
	while (scanf("%ld", &iterations) == 1) {
		cpu_start = cpu_seconds(child);
		clock_gettime(CLOCK_MONOTONIC, &start);
		for (i = 0; i < iterations; i++) {
			send_fd(pair[0], buf);
			if (!receive_fd(pair[0]))
				die("peer ended");
		}
		clock_gettime(CLOCK_MONOTONIC, &end);
		printf("{\"workload\":\"fdpass\",\"ops\":%ld,\"seconds\":%.6f,\"cpuSeconds\":%.6f}\n", iterations,
		       (end.tv_sec - start.tv_sec) + (end.tv_nsec - start.tv_nsec) / 1e9, cpu_seconds(child) - cpu_start);
		fflush(stdout);
	}
	close(pair[0]);
	wait(NULL);
	return 0;
}
