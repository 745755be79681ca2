// SPDX-License-Identifier: MIT
/*
 * The C baseline for fd passing: two processes (socketpair + fork) send a
 * FRAME_BYTES message carrying one udmabuf (a dma-buf) back and forth; each
 * side closes the dma-buf it received and sends its own. The pair lives for the whole session, as the
 * JavaScript peers do: every line of stdin is a number of round trips, run
 * and answered with one JSON line {"workload","ops","seconds"}.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/udmabuf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
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

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) < 0)
		die("socketpair");
	if (fork() == 0) {
		close(pair[0]);
		buf = make_udmabuf();
		while (receive_fd(pair[1]))
			send_fd(pair[1], buf);
		_exit(0);
	}
	close(pair[1]);
	buf = make_udmabuf();
	while (scanf("%ld", &iterations) == 1) {
		clock_gettime(CLOCK_MONOTONIC, &start);
		for (i = 0; i < iterations; i++) {
			send_fd(pair[0], buf);
			if (!receive_fd(pair[0]))
				die("peer ended");
		}
		clock_gettime(CLOCK_MONOTONIC, &end);
		printf("{\"workload\":\"fdpass\",\"ops\":%ld,\"seconds\":%.6f}\n", iterations,
		       (end.tv_sec - start.tv_sec) + (end.tv_nsec - start.tv_nsec) / 1e9);
		fflush(stdout);
	}
	close(pair[0]);
	wait(NULL);
	return 0;
}
