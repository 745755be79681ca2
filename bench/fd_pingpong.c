// SPDX-License-Identifier: MIT
/*
 * The C baseline for fd passing: two processes (socketpair + fork) send a
 * 16-byte message carrying one fd back and forth; each side closes the fd it
 * received and sends its own. The pair lives for the whole session, as the
 * JavaScript peers do: every line of stdin is a number of round trips, run
 * and answered with one JSON line {"workload","ops","seconds"}.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static void send_fd(int sock, int fd)
{
	char data[16] = "ping";
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
	char data[16];
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
	int pair[2], memfd = memfd_create("pingpong", MFD_CLOEXEC);
	struct timespec start, end;
	long iterations, i;

	if (memfd < 0 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) < 0)
		die("setup");
	if (fork() == 0) {
		close(pair[0]);
		while (receive_fd(pair[1]))
			send_fd(pair[1], memfd);
		_exit(0);
	}
	close(pair[1]);
	while (scanf("%ld", &iterations) == 1) {
		clock_gettime(CLOCK_MONOTONIC, &start);
		for (i = 0; i < iterations; i++) {
			send_fd(pair[0], memfd);
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
