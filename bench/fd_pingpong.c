// SPDX-License-Identifier: MIT
/*
 * The C baseline for fd passing: two processes (socketpair + fork) send a
 * 16-byte message carrying one fd back and forth; each side closes the fd it
 * received and sends its own. Prints {"workload","ops","seconds"}, ops being
 * round trips.
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

static void receive_fd(int sock)
{
	char data[16];
	char control[CMSG_SPACE(sizeof(int))];
	struct iovec vector = { data, sizeof(data) };
	struct msghdr message = { .msg_iov = &vector, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof(control) };
	struct cmsghdr *header;
	int fd;

	if (recvmsg(sock, &message, MSG_CMSG_CLOEXEC) != sizeof(data))
		die("recvmsg");
	header = CMSG_FIRSTHDR(&message);
	if (!header || header->cmsg_type != SCM_RIGHTS)
		die("no fd received");
	memcpy(&fd, CMSG_DATA(header), sizeof(int));
	close(fd);
}

int main(int argc, char **argv)
{
	long iterations = argc > 1 ? atol(argv[1]) : 1000;
	int pair[2], memfd = memfd_create("pingpong", MFD_CLOEXEC);
	struct timespec start, end;
	long i;

	if (memfd < 0 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) < 0)
		die("setup");
	if (fork() == 0) {
		for (i = 0; i < iterations; i++) {
			receive_fd(pair[1]);
			send_fd(pair[1], memfd);
		}
		_exit(0);
	}
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (i = 0; i < iterations; i++) {
		send_fd(pair[0], memfd);
		receive_fd(pair[0]);
	}
	clock_gettime(CLOCK_MONOTONIC, &end);
	wait(NULL);
	printf("{\"workload\":\"fdpass\",\"ops\":%ld,\"seconds\":%.6f}\n", iterations,
	       (end.tv_sec - start.tv_sec) + (end.tv_nsec - start.tv_nsec) / 1e9);
	return 0;
}
